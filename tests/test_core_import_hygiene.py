"""pq_tui.core is plain asyncio: it must never import Textual. And what a console attached to a
server loads stays clear of the engine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("no_leftover_processes")

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "pq_tui" / "core"

_TEXTUAL_IMPORT = re.compile(r"^\s*(import\s+textual\b|from\s+textual\b)", re.MULTILINE)


def test_core_sources_do_not_import_textual():
    sources = sorted(CORE.glob("*.py"))
    assert len(sources) >= 8
    offenders = [path.name for path in sources if _TEXTUAL_IMPORT.search(path.read_text("utf-8"))]
    assert offenders == []


def test_the_pattern_would_catch_an_import():
    assert _TEXTUAL_IMPORT.search("x = 1\nfrom textual.app import App\n")
    assert _TEXTUAL_IMPORT.search("    import textual\n")
    assert not _TEXTUAL_IMPORT.search("import textualize_not\n# textual is for the UI\n")


def loaded(imports: str, packages: tuple) -> list:
    """Which of ``packages`` (or modules of theirs) ``imports`` load in a fresh interpreter: not
    those its start-up loaded (an editable install's finder imports pathlib), nor a name kept
    out (None in sys.modules)."""
    code = (f"import sys\nbefore = set(sys.modules)\n{imports}\n"
            "print('\\n'.join(name for name, module in sys.modules.items()\n"
            "                 if module and name not in before))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    return sorted(module for module in result.stdout.split()
                  if module.partition(".")[0] in packages or module in packages)


def test_importing_core_loads_no_textual():
    code = ("import pq_tui.core, pq_tui.core.engine, pq_tui.core.runner\n"
            "import pq_tui.core.proctree, pq_tui.core.logfile, pq_tui.core.expand")
    assert loaded(code, ("textual",)) == []


def test_an_attached_console_loads_no_engine():
    # What its first frame waits for (issue 17): the engine, its process machinery and psutil
    # are the server's. The modules are those ``pq-tui`` loads to attach (pq_tui/cli/main.py).
    code = ("import pq_tui.cli.main, pq_tui.cli.batch, pq_tui.cli.output, pq_tui.cli.hosts\n"
            "import pq_tui.settings, pq_tui.client.remote, pq_tui.ui.app, pq_tui.ui.session\n"
            "import pq_tui.ui.notices\n"
            "from pq_tui.core import DEFAULT_LANE, JobExited, Status")
    heavy = ("pq_tui.core.engine", "pq_tui.core.runner", "pq_tui.core.hooks",
             "pq_tui.core.proctree", "pq_tui.core.spawn", "psutil")
    assert loaded(code, heavy) == []


def test_the_server_loads_what_it_uses_only():
    # Each module is memory the server keeps for good (issue 17, target 7): tomllib, difflib and
    # tempfile only for a config file, a misspelt name or a missing $XDG_RUNTIME_DIR; never ssl
    # or hashlib, which map OpenSSL's libcrypto. ``main`` keeps ssl out before anything else.
    code = ("import pq_tui.cli.main; pq_tui.cli.main.without_tls()\n"
            "import pq_tui.cli.server, pq_tui.server.daemon\n"
            "import pq_tui.server.server, pq_tui.wire.paths")
    unused = ("tomllib", "tomli", "difflib", "tempfile", "secrets", "shutil", "ssl", "_ssl",
              "hashlib", "_hashlib")
    assert loaded(code, unused) == []


def test_pq_tui_run_loads_no_more_than_it_uses():
    # Its start-up is part of what `pq-tui run` costs against a bash loop (issue 17, target 1):
    # a plain job file needs no tomllib, a pipe no shutil, a file name no pathlib.
    code = "import pq_tui.cli.main; pq_tui.cli.main.without_tls()\nimport pq_tui.cli.run"
    unused = ("tomllib", "tomli", "shutil", "pathlib", "ssl", "hashlib", "_hashlib")
    assert loaded(code, unused) == []


def test_asyncio_does_without_ssl():
    code = ("import pq_tui.cli.main; pq_tui.cli.main.without_tls()\nimport asyncio\n"
            "async def main():\n"
            "    await asyncio.sleep(0)\n"
            "    return await asyncio.get_running_loop().run_in_executor(None, int, '7')\n"
            "assert asyncio.run(main()) == 7")
    assert loaded(code, ("ssl",)) == []


def test_the_core_package_names_each_export_once():
    import pq_tui.core as core
    import pq_tui.core.engine as engine

    assert len(set(core.__all__)) == len(core.__all__)
    for name in core.__all__:
        assert getattr(core, name) is not None, name
    assert core.Engine is engine.Engine and core.Lane is engine.Lane
