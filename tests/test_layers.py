"""The layer rules of the README's layout, as import-linter contracts ([tool.importlinter] in
pyproject.toml), and what an attached console loads when it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=str(root), env=dict(os.environ, PYTHONPATH=str(root)),
                          capture_output=True, text=True, timeout=300)


def test_every_layer_contract_is_kept():
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contracts_catch_a_forbidden_import_even_a_late_one(tmp_path):
    shutil.copytree(REPO / "pq_tui", tmp_path / "pq_tui",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    events = tmp_path / "pq_tui" / "core" / "events.py"
    events.write_text(events.read_text() + "\nimport sqlite3  # noqa\n")
    fmt = tmp_path / "pq_tui" / "ui" / "format.py"
    fmt.write_text(fmt.read_text() + "\n\ndef _late():\n    from pq_tui.client import remote  # noqa\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert "pq_tui.core is not allowed to import sqlite3" in result.stdout
    assert "pq_tui.ui is not allowed to import pq_tui.client" in result.stdout


def test_an_attached_console_loads_no_store_and_no_server():
    code = ("import sys\n"
            "import pq_tui.cli.main, pq_tui.client.remote, pq_tui.ui.app\n"
            "print(sorted(m for m in sys.modules"
            " if m == 'sqlite3' or m.startswith('pq_tui.server')))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
