"""A real OpenSSH on this machine, for the tests of hosts: ``sshd`` on a free port of 127.0.0.1
with a throwaway host key, a throwaway user key, and an ssh config whose aliases are the
"boards". Each alias gives the far side its own PQ_TUI_RUNTIME_DIR and PQ_TUI_STATE_DIR
(``SetEnv``, which sshd takes with ``AcceptEnv``), so that each is a server of its own."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from pq_tui.client.ssh import Host
from pq_tui.wire.paths import ServerPaths

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
needs_sshd = pytest.mark.skipif(SSHD is None or shutil.which("ssh") is None,
                                reason="OpenSSH (sshd and ssh) is not installed")
# The far side's pq-tui: this interpreter, which has this checkout installed.
PQ_TUI = f"{sys.executable} -m pq_tui"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sshd:
    """The daemon, its keys, and the aliases made so far (``board``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.config = root / "ssh_config"
        self.aliases: Dict[str, ServerPaths] = {}
        self._keys()
        self._write_sshd_config()
        self.config.write_text("")
        self.process: Optional[subprocess.Popen] = None

    def _keys(self) -> None:
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(self.root / name)], check=True, timeout=30)
        (self.root / "authorized_keys").write_text((self.root / "user_key.pub").read_text())
        for name in ("user_key", "authorized_keys"):
            os.chmod(self.root / name, 0o600)

    def _write_sshd_config(self) -> None:
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\n"
            f"HostKey {self.root / 'host_key'}\nPidFile {self.root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "AcceptEnv PQ_TUI_RUNTIME_DIR PQ_TUI_STATE_DIR\nLogLevel ERROR\n")

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation dir
        self.process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                        stderr=open(self.root / "sshd.log", "wb"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd ended: {(self.root / 'sshd.log').read_text()}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen")

    def board(self, alias: str, pq_tui: str = PQ_TUI) -> Host:
        """An alias of this machine with its own pq-tui server folders; the Host for it."""
        home = self.root / "boards" / alias
        paths = ServerPaths(str(home / "run"), str(home / "state"))
        self.aliases[alias] = paths
        with open(self.config, "a") as f:
            f.write(f"Host {alias}\n  HostName 127.0.0.1\n  Port {self.port}\n"
                    f"  User {getpass.getuser()}\n  IdentityFile {self.root / 'user_key'}\n"
                    "  IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n"
                    f"  UserKnownHostsFile {self.root / 'known_hosts'}\n"
                    f"  SetEnv PQ_TUI_RUNTIME_DIR={paths.runtime_dir} "
                    f"PQ_TUI_STATE_DIR={paths.state_dir}\n")
        return Host(alias, f"-F {self.config} {alias}", pq_tui)

    def ssh_args(self, alias: str) -> List[str]:
        return ["ssh", "-F", str(self.config), alias]

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
