#!/usr/bin/env python3
"""pq-tui's benchmark suite (issue 6): pq-tui and its peers measured in the same run.

    python bench/run.py [--setup] [--runs N] [--only NAME[,NAME...]] [--quick]

Prints a Markdown table (benchmark | pq-tui | peers | ratio | target | result) and the machine it
ran on, and writes it to bench/results.md. Not part of the test suite: see bench/README.md.

Every pq-tui server and console started here is isolated (its own PQ_TUI_RUNTIME_DIR and
PQ_TUI_STATE_DIR under a fresh temp dir); terminals are tmux sessions on a private tmux socket;
everything started carries PQ_BENCH_TAG in its environment, and whatever still carries it at the
end is killed by pid.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = os.path.join(HERE, "probes")
PYTHON = sys.executable
PQ_TUI = shutil.which("pq-tui", path=os.path.dirname(PYTHON) + os.pathsep + os.environ.get("PATH", ""))
TAG = uuid.uuid4().hex[:12]
TMUX_SOCKET = f"pqbench-{os.getpid()}-{TAG[:6]}"
COLS, ROWS = 100, 30

NAMES = ("overhead", "ingest", "responsive", "memory", "idle", "scale", "scripts", "startup",
         "schedule", "times", "pty", "link", "search", "fleet", "onecore", "fleet_table",
         "callbacks", "bytes", "console_memory")


# -- results --------------------------------------------------------------------------------------


@dataclass
class Stat:
    """Samples of one measurement; shown as median (min–max)."""

    samples: list
    unit: str = "s"  # "s", "ms", "MB", "%"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def fmt(self, value: float) -> str:
        if self.unit == "s":
            return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
        if self.unit == "ms":
            return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
        if self.unit == "MB":
            return f"{value:.0f} MB"
        if self.unit == "%":
            return f"{value:.2f} %"
        return f"{value:g} {self.unit}"

    def __str__(self) -> str:
        text = self.fmt(self.median)
        if len(self.samples) > 1:
            low, high = min(self.samples), max(self.samples)
            text += f" ({self.fmt(low).split()[0]}–{self.fmt(high)})"
        return text


PEERS = ("bash", "tsp", "nq", "mprocs")


@dataclass
class Row:
    name: str
    pq: object  # Stat, or a str such as "error: ..."
    peers: dict = field(default_factory=dict)  # peer -> Stat or str
    ratio: str = ""
    target: str = ""
    passed: Optional[bool] = None  # None: no target (shown for information)
    goal: str = ""  # the number of issue 17's target this row measures, if any

    @property
    def result(self) -> str:
        return "–" if self.passed is None else ("pass" if self.passed else "**FAIL**")


def cell(value) -> str:
    return "–" if value is None else str(value)


def markdown(rows: list, machine: str, note: str) -> str:
    out = [f"Machine: {machine}", ""]
    if note:
        out += [note, ""]
    head = ["benchmark", "pq-tui", *PEERS, "ratio", "target", "result"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for row in rows:
        cells = [row.name, cell(row.pq), *(cell(row.peers.get(p)) for p in PEERS), row.ratio or "–",
                 row.target or "–", row.result]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def goals_table(rows: list) -> str:
    """Issue 17's targets alone, in its order: the table its closing asks for."""
    chosen = sorted((r for r in rows if r.goal), key=lambda r: r.goal)
    if not chosen:
        return ""
    head = ["issue 17 target", "benchmark", "pq-tui", "ratio", "target", "result"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in chosen:
        cells = [row.goal, row.name, cell(row.pq), row.ratio or "–", row.target or "–",
                 row.result]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def machine_line() -> str:
    model = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{platform.uname().machine}, {model}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {datetime.datetime.now():%Y-%m-%d %H:%M}, "
            f"load average at start {load}")


# -- peers ----------------------------------------------------------------------------------------


def find_tsp() -> Optional[str]:
    for name in ("tsp", "ts"):
        path = shutil.which(name)
        if not path:
            continue
        try:  # moreutils' `ts` is a timestamper, not task-spooler
            text = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=5,
                                  env={**os.environ, "TS_SOCKET": "/nonexistent/x"})
            if "spooler" in (text.stdout + text.stderr).lower():
                return path
        except (OSError, subprocess.TimeoutExpired):
            continue
    return None


def find_mprocs() -> Optional[str]:
    found = sorted(glob.glob(os.path.join(HERE, ".peers/node_modules/mprocs/mprocs-*/mprocs")))
    machine = platform.machine().lower().replace("arm64", "aarch64").replace("amd64", "x86_64")
    for path in found:
        if f"linux-{machine}" in path and os.access(path, os.X_OK):
            return path  # the native binary, not the node wrapper around it
    return shutil.which("mprocs")


def setup() -> None:
    subprocess.run(["sh", os.path.join(HERE, "setup.sh")], check=False)


class Peers:
    def __init__(self) -> None:
        self.tsp = find_tsp()
        self.nq = shutil.which("nq")
        self.mprocs = find_mprocs()
        self.hyperfine = shutil.which("hyperfine")
        self.tmux = shutil.which("tmux")

    def missing(self, name: str) -> Optional[str]:
        path = getattr(self, name)
        return None if path else "missing"


# -- isolation and cleanup -------------------------------------------------------------------------

_TEMP_ROOT = tempfile.mkdtemp(prefix=f"pqbench-{TAG[:6]}-")
_counter = 0


def scratch(name: str) -> str:
    global _counter
    _counter += 1
    path = os.path.join(_TEMP_ROOT, f"{_counter:03d}-{name}")
    os.makedirs(path)
    return path


def base_env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PQ_BENCH_TAG"] = TAG
    env.pop("PQ_TUI_RUNTIME_DIR", None)
    env.pop("PQ_TUI_STATE_DIR", None)
    env.update(extra)
    return env


class Isolated:
    """A private pq-tui world: runtime and state dirs of its own, so its server is its own."""

    def __init__(self, name: str) -> None:
        self.dir = scratch(name)
        self.runtime = os.path.join(self.dir, "rt")
        self.state = os.path.join(self.dir, "st")
        os.mkdir(self.runtime, 0o700)
        os.chmod(self.runtime, 0o700)
        os.mkdir(self.state)
        self.env = base_env(PQ_TUI_RUNTIME_DIR=self.runtime, PQ_TUI_STATE_DIR=self.state,
                            XDG_STATE_HOME=os.path.join(self.dir, "xdg-state"))
        _worlds.append(self)

    def pq(self, *args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
        result = subprocess.run([PQ_TUI, *args], env=self.env, cwd=self.dir, timeout=timeout,
                                stdout=kw.pop("stdout", subprocess.DEVNULL),
                                stderr=kw.pop("stderr", subprocess.PIPE), **kw)
        if check and result.returncode != 0:
            raise RuntimeError(f"pq-tui {' '.join(args)} exited {result.returncode}: "
                               f"{(result.stderr or b'').decode(errors='replace')[-500:]}")
        return result

    def server_pid(self) -> Optional[int]:
        try:
            with open(os.path.join(self.runtime, "server.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        pid = self.server_pid()
        if pid is not None and psutil.pid_exists(pid):
            try:
                subprocess.run([PQ_TUI, "shutdown", "--kill"], env=self.env, timeout=60,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except subprocess.TimeoutExpired:
                pass
            kill_pid(pid)


_worlds: list = []


def kill_pid(pid: int) -> None:
    try:
        proc = psutil.Process(pid)
        if TAG not in proc.environ().get("PQ_BENCH_TAG", ""):
            return  # not ours (a reused pid)
        proc.kill()
        proc.wait(5)
    except (psutil.Error, OSError):
        pass


def tagged_processes() -> list:
    mine = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("PQ_BENCH_TAG") == TAG:
                mine.append(proc)
        except (psutil.Error, OSError):
            continue
    return mine


def cleanup() -> None:
    for world in list(_worlds):
        try:
            world.close()
        except Exception as exc:  # noqa: BLE001 - cleanup goes on
            print(f"bench: cleanup of {world.dir}: {exc}", file=sys.stderr)
    _worlds.clear()
    Tmux.kill_server()
    for tsp_socket in list(_tsp_sockets):
        subprocess.run([_tsp_sockets[tsp_socket], "-K"], env=base_env(TS_SOCKET=tsp_socket),
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _tsp_sockets.clear()
    time.sleep(0.3)
    left = tagged_processes()
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    if left:
        psutil.wait_procs(left, timeout=5)
    shutil.rmtree(_TEMP_ROOT, ignore_errors=True)


_tsp_sockets: dict = {}


# -- terminals -------------------------------------------------------------------------------------


class Tmux:
    """Sessions on a private tmux server (its own socket): nothing here touches other sessions."""

    _started = False
    _n = 0

    @classmethod
    def _cmd(cls, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", TMUX_SOCKET, *args], capture_output=True, text=True,
                              check=check, env=base_env())

    @classmethod
    def ensure_server(cls) -> None:
        if not cls._started:
            # A session that keeps the server up, so that timing a launch does not time tmux's start.
            cls._cmd("new-session", "-d", "-s", "keep", "-x", str(COLS), "-y", str(ROWS), "sleep 86400")
            cls._started = True

    @classmethod
    def kill_server(cls) -> None:
        if cls._started:
            cls._cmd("kill-server", check=False)
            cls._started = False

    def __init__(self, command: list, env: dict, cwd: str) -> None:
        Tmux.ensure_server()
        Tmux._n += 1
        self.name = f"s{Tmux._n}"
        assignments = [f"{k}={shlex.quote(v)}" for k, v in env.items()
                       if k.startswith(("PQ_", "XDG_", "TS_", "NQDIR")) or k in ("PATH", "HOME")]
        line = f"cd {shlex.quote(cwd)} && exec env {' '.join(assignments)} " + " ".join(
            shlex.quote(c) for c in command)
        self.started = time.perf_counter()
        Tmux._cmd("new-session", "-d", "-s", self.name, "-x", str(COLS), "-y", str(ROWS), line)
        self.pid = int(Tmux._cmd("display-message", "-p", "-t", self.name, "#{pane_pid}").stdout)

    def capture(self) -> str:
        result = Tmux._cmd("capture-pane", "-p", "-t", self.name, check=False)
        return result.stdout if result.returncode == 0 else ""

    def send(self, *keys: str) -> None:
        Tmux._cmd("send-keys", "-t", self.name, *keys)

    def wait_for(self, pattern: str, timeout: float = 30, interval: float = 0.01) -> Optional[float]:
        """Seconds from launch until the screen matches ``pattern``; None on timeout."""
        regex = re.compile(pattern, re.M)
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if regex.search(self.capture()):
                return time.perf_counter() - self.started
            time.sleep(interval)
        return None

    def close(self) -> None:
        Tmux._cmd("kill-session", "-t", self.name, check=False)
        time.sleep(0.2)
        kill_pid(self.pid)


def app_args(mode: str, files: list, log_dir: Optional[str] = None) -> list:
    """pq-tui's console arguments for ``mode`` "embedded" (jobs in the console) or "attached"
    (the console on the server), for whichever of the two is the default in this version."""
    help_text = subprocess.run([PQ_TUI, "--help"], capture_output=True, text=True).stdout
    if mode == "embedded":
        flag = ["--embedded"] if "--embedded" in help_text else []
        return [*flag, *(["--log-dir", log_dir] if log_dir else []), *files]
    flag = ["--attach"] if "--attach" in help_text else []
    return [*flag, *files]


HEADER = r"\bID\b.*\bLANE\b.*\bSTATE\b"  # the job table's header: the first frame is up


def pane_title(job_id: str) -> str:
    """The log pane's title line of a job: shown once the cursor is on the job's row."""
    return rf"^\s*{re.escape(job_id)} · "


_DONE_NOTE = re.compile(rb"\n# [a-z-]+: exit -?\d+ after [0-9.]+s\n$")


def log_done(log_glob: str) -> bool:
    """Whether the job's log file ends with pq-tui's exit note (the job has finished)."""
    for path in glob.glob(log_glob):
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 200))
                if _DONE_NOTE.search(f.read()):
                    return True
        except OSError:
            pass
    return False


ANY_TITLE = r"^\s*(\S+) · \S+ · "  # a log pane's title: "ID · LANE · STATE ..."


def selected_job(screen: str) -> Optional[str]:
    """The job the log pane shows (the table's cursor row), from a captured screen."""
    match = re.search(ANY_TITLE, screen, re.M)
    return match.group(1) if match else None


def wait_log_done(log_glob: str, timeout: float, started: float) -> Optional[float]:
    """Seconds from ``started`` until the job's log file ends with pq-tui's exit note."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if log_done(log_glob):
            return time.perf_counter() - started
        time.sleep(0.02)
    return None


def count_stdout_lines(path: str) -> int:
    lines = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"O "):
                lines += 1
    return lines


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1e6


def timed(command, env: dict, cwd: str, timeout: float = 600, shell: bool = False) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=cwd, timeout=timeout, shell=shell,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command!r} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[-400:]}")
    return elapsed


def probe(name: str, *args: str, env: Optional[dict] = None, cwd: Optional[str] = None) -> list:
    out = subprocess.run([PYTHON, os.path.join(PROBES, name), *args], env=env or base_env(),
                         cwd=cwd or _TEMP_ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"probe {name} failed: {out.stderr[-800:]}")
    return out.stdout.split()


def write_toml(path: str, jobs: list, defaults: Optional[dict] = None) -> str:
    """jobs: (id, cmd, lane or None); cmd a list (argv) or a str (shell)."""
    parts = []
    if defaults:
        parts.append("[defaults]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in defaults.items()))
    for job_id, cmd, lane in jobs:
        text = f"[[job]]\nid = {json.dumps(job_id)}\ncmd = {json.dumps(cmd)}\n"
        if lane:
            text += f"queue = {json.dumps(lane)}\n"
        parts.append(text)
    with open(path, "w") as f:
        f.write("\n".join(parts))
    return path


def ratio_row(row: Row, value: float, base: float, limit: float, base_name: str,
              lower_is_better: bool = True) -> None:
    ratio = value / base if base else float("inf")
    row.ratio = f"{ratio:.2f}x {base_name}"
    row.passed = ratio <= limit if lower_is_better else ratio >= limit


def err(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return "error: " + (text[-1][:80] if text else type(exc).__name__)


# -- the benchmarks ---------------------------------------------------------------------------------


def _grep_timed(world: "Isolated", args: list) -> tuple:
    """(hits printed, seconds to the first, seconds to the exit) of `pq-tui grep ARGS`."""
    started = time.perf_counter()
    process = subprocess.Popen([PQ_TUI, "grep", "--max", "100000", *args], env=world.env,
                               cwd=world.dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None
    first_line = process.stdout.readline()
    to_first = time.perf_counter() - started
    rest = process.stdout.read()
    process.wait(timeout=600)
    total = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"pq-tui grep exited {process.returncode}: "
                           f"{process.stderr.read().decode(errors='replace')[-300:]}")
    process.stderr.close()
    process.stdout.close()
    return (first_line + rest).count(b"\n"), to_first, total


class Bench:
    def __init__(self, runs: int, quick: bool, peers: Peers) -> None:
        self.runs = runs
        self.quick = quick
        self.peers = peers
        self.notes: list = []

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    # 1 ------------------------------------------------------------------------------------------
    def overhead(self) -> list:
        count = 100 if self.quick else 1000
        work = scratch("overhead")
        toml = write_toml(os.path.join(work, "jobs.toml"),
                          [(f"t{i}", ["/bin/true"], None) for i in range(count)],
                          defaults={"queue": "one"})
        s = {k: [] for k in ("bash", "pq", "engine", "run", "tsp", "nq", "phases_pq",
                             "phases_bare")}
        errors = {}

        def attempt(key: str, fn: Callable[[], float]) -> None:
            try:
                s[key].append(fn())
            except Exception as exc:  # noqa: BLE001 - shown in the table
                errors[key] = err(exc)
                self.log(f"overhead {key}: {exc}")

        for run in range(self.runs):
            self.log(f"overhead run {run + 1}/{self.runs}")
            attempt("bash", lambda: timed(
                ["bash", "-c", f"for i in $(seq {count}); do /bin/true; done"], base_env(), work))
            attempt("pq", lambda: float(probe("lib_true.py", "pq", str(count), scratch("pq"))[0]))
            attempt("engine", lambda: float(probe("lib_true.py", "engine", str(count),
                                                  scratch("engine"))[0]))

            def via_run() -> float:
                world = Isolated("run")
                return timed([PQ_TUI, "run", "--log-dir", os.path.join(world.dir, "logs"), toml],
                             world.env, world.dir)

            attempt("run", via_run)
            for kind in ("phases_pq", "phases_bare") if run % 2 == 0 else ("phases_bare",
                                                                           "phases_pq"):
                try:
                    s[kind].append([float(x) for x in probe(
                        "job_phases.py", kind.split("_")[1], str(count), scratch(kind))])
                except Exception as exc:  # noqa: BLE001 - shown in the table
                    errors[kind] = err(exc)
                    self.log(f"overhead {kind}: {exc}")
            if self.peers.tsp:
                def via_tsp() -> float:
                    d = scratch("tsp")
                    sock = os.path.join(d, "ts.sock")
                    _tsp_sockets[sock] = self.peers.tsp
                    env = base_env(TS_SOCKET=sock, TMPDIR=d)
                    tsp = shlex.quote(self.peers.tsp)
                    t = timed(["bash", "-c", f"for i in $(seq {count}); do {tsp} /bin/true >/dev/null;"
                               f" done; {tsp} -w"], env, d)
                    subprocess.run([self.peers.tsp, "-K"], env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    _tsp_sockets.pop(sock, None)
                    return t

                attempt("tsp", via_tsp)
            if self.peers.nq:
                def via_nq() -> float:
                    d = scratch("nq")
                    env = base_env(NQDIR=d)
                    nq = shlex.quote(self.peers.nq)
                    return timed(["bash", "-c", f"for i in $(seq {count}); do {nq} /bin/true "
                                  f">/dev/null; done; {nq} -w"], env, d)

                attempt("nq", via_nq)

        def stat(key: str, unit: str = "s"):
            return Stat(s[key], unit) if s[key] else errors.get(key, "missing")

        peers = {"bash": stat("bash"),
                 "tsp": stat("tsp") if self.peers.tsp else "missing",
                 "nq": stat("nq") if self.peers.nq else "missing"}
        rows = []
        label = f"{count} × /bin/true, one lane"
        lib = Row(f"1. {label}: library (ProcessQueue, push→idle)", stat("pq"), peers,
                  target="≤ 1.1x bash", goal="1")
        if s["pq"] and s["bash"]:
            ratio_row(lib, Stat(s["pq"]).median, Stat(s["bash"]).median, 1.1, "bash")
        rows.append(lib)
        eng = Row(f"1. {label}: asyncio Engine (push→idle)", stat("engine"), {"bash": peers["bash"]})
        if s["engine"] and s["bash"]:
            ratio_row(eng, Stat(s["engine"]).median, Stat(s["bash"]).median, 1e9, "bash")
            eng.passed = None
        rows.append(eng)
        run_row = Row(f"1. {label}: `pq-tui run FILE` (whole command)", stat("run"), peers,
                      target="≤ 1.3x bash", goal="1")
        if s["run"] and s["bash"]:
            ratio_row(run_row, Stat(s["run"]).median, Stat(s["bash"]).median, 1.3, "bash")
        rows.append(run_row)
        versus = Row(f"1. {label}: pq-tui run and library vs tsp, nq", stat("run"),
                     {"tsp": peers["tsp"], "nq": peers["nq"]},
                     target="faster than tsp and nq", goal="1")
        if s["run"] and s["pq"]:
            parts, ok = [], True
            for peer in ("tsp", "nq"):
                if s[peer]:
                    r = Stat(s["run"]).median / Stat(s[peer]).median
                    parts.append(f"{r:.2f}x {peer}")
                    ok = ok and max(Stat(s["run"]).median, Stat(s["pq"]).median) < Stat(s[peer]).median
                else:
                    ok = False
                    parts.append(f"{peer} missing")
            versus.ratio = ", ".join(parts)
            versus.passed = ok
        rows.append(versus)
        rows.append(self._phases_row(label, s["phases_pq"], s["phases_bare"],
                                     errors.get("phases_pq") or errors.get("phases_bare")))
        return rows

    @staticmethod
    def _phases_row(label: str, ours: list, floor: list, problem: Optional[str]) -> Row:
        """Target 1's cause: each phase of a job, the library's beside a bare posix_spawn loop
        (bench/probes/job_phases.py), medians over the runs of each probe's medians."""
        title = (f"1. {label}, per job (µs): whole / spawn call / spawned→exit seen / exit→next "
                 "spawn, library vs a bare posix_spawn loop")
        if not ours or not floor:
            return Row(title, problem or "error")
        mid = [statistics.median(column) for column in zip(*ours)]
        base = [statistics.median(column) for column in zip(*floor)]
        row = Row(title, " / ".join(f"{value:.0f}" for value in mid))
        row.ratio = "bare " + " / ".join(f"{value:.0f}" for value in base)
        return row

    # issue 17, target 3 ---------------------------------------------------------------------------
    def callbacks(self) -> list:
        """The library's per-line callbacks against the floor, alternating run after run."""
        count = 200_000 if self.quick else 2_000_000
        s: dict = {"pq": [], "floor": []}
        cpu: list = []
        errors = {}
        for run in range(self.runs):
            self.log(f"callbacks run {run + 1}/{self.runs}")
            for key in ("pq", "floor") if run % 2 == 0 else ("floor", "pq"):
                try:
                    seconds, lines, used = probe("lib_lines.py", key, str(count),
                                                 scratch("callbacks"))
                    if int(lines) != count:
                        raise RuntimeError(f"{key}: {lines} lines seen, not {count}")
                    s[key].append(float(seconds))
                    if key == "pq":
                        cpu.append(float(used))
                except Exception as exc:  # noqa: BLE001 - shown in the table
                    errors[key] = err(exc)
                    self.log(f"callbacks {key}: {exc}")
        pq = Stat(s["pq"]) if s["pq"] else errors.get("pq", "error")
        floor = Stat(s["floor"]) if s["floor"] else errors.get("floor", "error")
        row = Row(f"1c. `seq 1 {count}`, each line to ProcessHandler.on_stdout (library, "
                  "push→empty)", pq, {"bash": floor}, target="≤ 8x `seq > file`",
                  goal="3")
        if s["pq"] and s["floor"]:
            ratio_row(row, Stat(s["pq"]).median, Stat(s["floor"]).median, 8, "seq>file")
            row.ratio += f" (probe CPU {Stat(cpu).median:.3f} s)"
        return [row]

    # 2 ------------------------------------------------------------------------------------------
    def ingest(self) -> list:
        count = 500_000 if self.quick else 5_000_000
        work = scratch("ingest")
        seqs, engine, lines_ok, app, mprocs = [], [], [], [], []
        errors = {}
        toml = write_toml(os.path.join(work, "flood.toml"), [("flood", f"seq 1 {count}", None)])
        for run in range(self.runs):
            self.log(f"ingest run {run + 1}/{self.runs}")
            seqs.append(timed(["bash", "-c", f"seq 1 {count} > {work}/seq.out"], base_env(), work))
            try:
                seconds, lines, _cpu = probe("ingest.py", str(count), scratch("ingest-engine"))
                engine.append(float(seconds))
                lines_ok.append(int(lines) == count)
                if int(lines) != count:
                    self.notes.append(f"ingest: the engine's log file held {lines} stdout lines, "
                                      f"not {count}")
            except Exception as exc:  # noqa: BLE001
                errors["engine"] = err(exc)
                self.log(f"ingest engine: {exc}")
            # The console, log pane showing the job (its row is the first, selected at start).
            world = Isolated("ingest-app")
            logs = os.path.join(world.dir, "logs")
            term = Tmux([PQ_TUI, *app_args("embedded", [toml], logs)], world.env, world.dir)
            try:
                took = wait_log_done(os.path.join(logs, "flood.*.log"), 300, term.started)
                visible = term.wait_for(pane_title("flood"), timeout=5)
                if took is None:
                    errors["app"] = "error: job did not finish in 300 s"
                else:
                    app.append(took)
                    if visible is None:
                        self.notes.append("ingest app: the flood job's log pane title was not seen")
                    (path,) = glob.glob(os.path.join(logs, "flood.*.log"))
                    lines = count_stdout_lines(path)
                    lines_ok.append(lines == count)
                    if lines != count:
                        self.notes.append(f"ingest app: log file held {lines} lines, not {count}")
            finally:
                term.close()
                world.close()
            if self.peers.mprocs:
                d = scratch("mprocs")
                marker = os.path.join(d, "done")
                term = Tmux([self.peers.mprocs, f"seq 1 {count}; touch {marker}"], base_env(), d)
                try:
                    deadline = time.perf_counter() + 300
                    while not os.path.exists(marker) and time.perf_counter() < deadline:
                        time.sleep(0.02)
                    if os.path.exists(marker):
                        mprocs.append(time.perf_counter() - term.started)
                    else:
                        errors["mprocs"] = "error: not done in 300 s"
                finally:
                    term.close()
        rows = []
        row = Row(f"2. `seq 1 {count}` through the engine (push→finished)",
                  Stat(engine) if engine else errors.get("engine", "error"),
                  {"bash": Stat(seqs)}, target="≤ 3x `seq > file`")
        if engine:
            ratio_row(row, Stat(engine).median, Stat(seqs).median, 3.0, "seq>file")
        rows.append(row)
        rows.append(Row(f"2. every line in the log file ({count:,} counted, engine and app)",
                        "all" if lines_ok and all(lines_ok) else
                        f"{lines_ok.count(False)} run(s) short", target="all lines",
                        passed=bool(lines_ok) and all(lines_ok)))
        row = Row("2. same job in the console (embedded, log pane visible; launch→job done)",
                  Stat(app) if app else errors.get("app", "error"),
                  {"mprocs": Stat(mprocs) if mprocs else errors.get("mprocs", "missing")},
                  target="≥ 10x sooner than mprocs")
        if app and mprocs:
            speedup = Stat(mprocs).median / Stat(app).median
            row.ratio = f"{speedup:.1f}x sooner than mprocs"
            row.passed = speedup >= 10
        rows.append(row)
        return rows

    def _flood_pair(self, name: str, flags: dict) -> tuple:
        """``ingest.py``'s flood, once per key of ``flags`` (its extra arguments; or a probe's
        name and its arguments after "probe:") in each run, alternating run after run; which goes
        first alternates too (the second pays for the first's 39 MB still being written back).
        (count, seconds by key, CPU by key, errors)."""
        count = 500_000 if self.quick else 5_000_000
        s: dict = {key: [] for key in flags}
        cpu: dict = {key: [] for key in flags}
        errors = {}
        for run in range(self.runs):
            self.log(f"{name} run {run + 1}/{self.runs}")
            for key in (list(flags) if run % 2 == 0 else list(flags)[::-1]):
                try:
                    args = flags[key]
                    if args[:1] == ["probe:"]:
                        seconds, lines, used = probe(args[1], str(count), *args[2:])
                    else:
                        seconds, lines, used = probe("ingest.py", str(count), scratch(name), *args)
                    s[key].append(float(seconds))
                    cpu[key].append(float(used))
                    if int(lines) != count:
                        self.notes.append(f"{name} ({key}): the log file held {lines} stdout "
                                          f"lines, not {count}")
                except Exception as exc:  # noqa: BLE001 - shown in the table
                    errors[key] = err(exc)
                    self.log(f"{name} {key}: {exc}")
        return count, s, cpu, errors

    def times(self) -> list:
        """Issue 14: the flood through the engine with the log's time records, against the same
        flood with the records left out (the probe's --untimed)."""
        count, s, cpu, errors = self._flood_pair("times", {"untimed": ["--untimed"], "timed": []})

        def stat(key: str):
            return Stat(s[key]) if s[key] else errors.get(key, "error")

        label = f"2. `seq 1 {count}` through the engine (push→finished)"
        timed = Row(f"{label}, with time records", stat("timed"), target="≤ 1.1x without")
        if s["timed"] and s["untimed"]:
            ratio_row(timed, Stat(s["timed"]).median, Stat(s["untimed"]).median, 1.1, "without")
            used = Stat(cpu["timed"]).median / Stat(cpu["untimed"]).median
            timed.ratio += f" (CPU {used:.2f}x)"
        return [Row(f"{label}, without time records", stat("untimed")), timed]

    def pty(self) -> list:
        """Issue 14: the flood through the engine from a pseudo-terminal, against the same flood
        through a pipe, and the floor: a bare Python loop reading the same `seq` from a pty with
        no pq-tui (probes/bare_pty.py). No target: the kernel's pty sets the pace."""
        count, s, _cpu, errors = self._flood_pair("pty", {
            "pipe": [], "pty": ["--pty"], "bare": ["probe:", "bare_pty.py", "pty"]})

        def stat(key: str):
            return Stat(s[key]) if s[key] else errors.get(key, "error")

        label = f"2. `seq 1 {count}` through the engine (push→finished)"
        on_pty = Row(f"{label}, on a pseudo-terminal", stat("pty"))
        if s["pty"] and s["pipe"]:
            on_pty.ratio = f"{Stat(s['pty']).median / Stat(s['pipe']).median:.2f}x the pipe"
        bare = Row(f"2. `seq 1 {count}` read from a pty by a bare Python loop, no pq-tui",
                   stat("bare"))
        if s["pty"] and s["bare"]:
            on_pty.ratio += f", {Stat(s['pty']).median / Stat(s['bare']).median:.2f}x the bare loop"
        return [Row(f"{label}, through a pipe", stat("pipe")), on_pty, bare]

    # 3 ------------------------------------------------------------------------------------------
    def responsive(self) -> list:
        count = 500_000 if self.quick else 5_000_000
        p99s, maxes, keys, key_timeouts, errors = self._flood_keys(count, [])
        rows = []
        row = Row(f"3. event-loop lag under the `seq 1 {count}` flood, p99 (in-app probe)",
                  Stat(p99s, "ms") if p99s else errors.get("app", "error"), target="< 100 ms")
        if p99s:
            row.passed = Stat(p99s).median < 100
            row.ratio = f"max {max(maxes):.0f} ms"
        rows.append(row)
        # Issue 17 target 8 asks for the p90 here too, where issue 6 asked for the median.
        keys_row = self._keys_row("3. key press (↓/↑) to screen under the flood (tmux; median "
                                  "of presses)", keys, key_timeouts, errors, by_p90=True)
        keys_row.goal = "8"
        rows.append(keys_row)
        return rows

    @staticmethod
    def _keys_row(title: str, keys: list, key_timeouts: int, errors: dict,
                  by_p90: bool = False) -> Row:
        """Passed by the median of the presses, or ``by_p90``."""
        row = Row(title, Stat(keys, "ms") if keys else errors.get("app", "error"),
                  target="≤ 150 ms p90" if by_p90 else "≤ 150 ms")
        if keys:
            keys_sorted = sorted(keys)
            p90 = keys_sorted[min(len(keys) - 1, int(0.9 * len(keys)))]
            row.ratio = f"{len(keys)} presses, p90 {p90:.0f} ms" + (
                f", {key_timeouts} timed out" if key_timeouts else "")
            row.passed = (p90 if by_p90 else Stat(keys).median) <= 150 and key_timeouts == 0
        return row

    def _flood_keys(self, count: int, prefix: list) -> tuple:
        """The embedded console (its command after ``prefix``) with a job flooding `seq 1
        COUNT` and another in a second lane: the loop's lag p99 and max of each run, and ↓/↑
        presses timed from send-keys to screen while the flood runs."""
        work = scratch("responsive")
        toml = write_toml(os.path.join(work, "flood.toml"),
                          [("flood", f"seq 1 {count}", None), ("other", ["echo", "other job"], "side")])
        p99s, maxes, keys, key_timeouts = [], [], [], 0
        errors = {}
        for run in range(self.runs):
            self.log(f"flood run {run + 1}/{self.runs}{' under ' + ' '.join(prefix) if prefix else ''}")
            world = Isolated("responsive")
            logs = os.path.join(world.dir, "logs")
            out = os.path.join(world.dir, "lag.json")
            command = [*prefix, PYTHON, os.path.join(PROBES, "app_lag.py"), out, "flood", "--",
                       *app_args("embedded", [toml], logs)]
            term = Tmux(command, world.env, world.dir)
            try:
                if term.wait_for(pane_title("flood"), timeout=30) is None:
                    errors["app"] = "error: no first frame"
                    continue
                log_glob = os.path.join(logs, "flood.*.log")
                # Key presses while the flood runs: Down to "other", Up back to "flood", each
                # timed from send-keys until the log pane's title names the new row's job.
                target = "other"
                while not log_done(log_glob):
                    sent = time.perf_counter()
                    term.send("Down" if target == "other" else "Up")
                    seen = None
                    regex = re.compile(pane_title(target), re.M)
                    while time.perf_counter() - sent < 3:
                        if regex.search(term.capture()):
                            seen = time.perf_counter() - sent
                            break
                        time.sleep(0.005)
                    if seen is None:
                        key_timeouts += 1
                        break
                    keys.append(seen * 1000)  # sent while the flood was running
                    if target == "flood":
                        time.sleep(0.3)  # the flood's pane stays on screen most of the time
                    target = "flood" if target == "other" else "other"
                deadline = time.perf_counter() + 300
                while not os.path.exists(out) and time.perf_counter() < deadline:
                    time.sleep(0.05)
                with open(out) as f:
                    samples = json.load(f)["samples_ms"]
                samples.sort()
                p99s.append(samples[min(len(samples) - 1, int(0.99 * len(samples)))])
                maxes.append(samples[-1])
            except Exception as exc:  # noqa: BLE001
                errors["app"] = err(exc)
                self.log(f"responsive: {exc}")
            finally:
                term.close()
                world.close()
        return p99s, maxes, keys, key_timeouts, errors

    def onecore(self) -> list:
        """Issue 17 target 5, a one-core board: everything under `taskset -c 0` (the console,
        its engine and the jobs, which inherit the mask): key presses under the flood, and the
        console's CPU while a job prints a line a second."""
        if not shutil.which("taskset"):
            return [Row("13. one core (taskset -c 0)", "skipped: no taskset")]
        one = ["taskset", "-c", "0"]
        count = 500_000 if self.quick else 5_000_000
        _, _, keys, key_timeouts, errors = self._flood_keys(count, one)
        rows = [self._keys_row(f"13. one core: key press (↓/↑) to screen under the `seq 1 {count}` "
                               "flood (median of presses)", keys, key_timeouts, errors,
                               by_p90=True)]
        rows[0].goal = "5"
        window = 5.0 if self.quick else 30.0
        cpu = []
        problem = "error"
        for run in range(self.runs):
            self.log(f"onecore idle run {run + 1}/{self.runs} ({window:.0f} s window)")
            world = Isolated("onecore")
            toml = write_toml(os.path.join(world.dir, "tick.toml"), [
                ("ticking", "while :; do date +%T; sleep 1; done", None)])
            term = Tmux([*one, PQ_TUI, *app_args("embedded", [toml],
                                                 os.path.join(world.dir, "logs"))],
                        world.env, world.dir)
            try:
                if term.wait_for(pane_title("ticking"), timeout=30) is None:
                    raise RuntimeError("the console showed no log pane")
                time.sleep(3.0)
                app = psutil.Process(term.pid)
                before = sum(app.cpu_times()[:2])
                t0 = time.perf_counter()
                time.sleep(window)
                cpu.append(100 * (sum(app.cpu_times()[:2]) - before) / (time.perf_counter() - t0))
            except Exception as exc:  # noqa: BLE001
                problem = err(exc)
                self.log(f"onecore: {exc}")
            finally:
                term.close()
                world.close()
        row = Row(f"13. one core: console CPU over {window:.0f} s, embedded, a job printing a "
                  "line a second", Stat(cpu, "%") if cpu else problem, target="≤ 1 % of a core",
                  goal="5")
        if cpu:
            row.passed = Stat(cpu).median <= 1.0
        rows.append(row)
        return rows

    # 4 ------------------------------------------------------------------------------------------
    def memory(self) -> list:
        big = 100 * 2**20 if self.quick else 2**30
        small = 10 * 2**20
        line = "0123456789abcdef" * 8  # 128 bytes a line, newline included
        line = line[:127]

        def job(size: int) -> str:
            return f"yes {line} | head -c {size}"

        app = {small: [], big: []}
        server = {small: [], big: []}
        mprocs_small = []
        errors = {}
        for run in range(self.runs if not self.quick else 1):
            for size in (small, big):
                label = f"{size // 2**20} MiB"
                self.log(f"memory run {run + 1}: app, {label}")
                world = Isolated("memory-app")
                logs = os.path.join(world.dir, "logs")
                toml = write_toml(os.path.join(world.dir, "job.toml"), [("big", job(size), None)])
                term = Tmux([PQ_TUI, *app_args("embedded", [toml], logs)], world.env, world.dir)
                try:
                    if wait_log_done(os.path.join(logs, "big.*.log"), 900, term.started) is None:
                        errors["app"] = "error: job not done in 900 s"
                    else:
                        time.sleep(1.5)  # the last batches drawn
                        app[size].append(rss_mb(term.pid))
                except Exception as exc:  # noqa: BLE001
                    errors["app"] = err(exc)
                finally:
                    term.close()
                    world.close()
                self.log(f"memory run {run + 1}: server, {label}")
                world = Isolated("memory-server")
                toml = write_toml(os.path.join(world.dir, "job.toml"), [("big", job(size), None)])
                try:
                    world.pq("push", toml)
                    world.pq("wait", timeout=900)
                    time.sleep(1.0)
                    server[size].append(rss_mb(world.server_pid()))
                except Exception as exc:  # noqa: BLE001
                    errors["server"] = err(exc)
                finally:
                    world.close()
            if self.peers.mprocs:
                d = scratch("mprocs-mem")
                marker = os.path.join(d, "done")
                term = Tmux([self.peers.mprocs, f"{job(small)}; touch {marker}"], base_env(), d)
                try:
                    deadline = time.perf_counter() + 300
                    while not os.path.exists(marker) and time.perf_counter() < deadline:
                        time.sleep(0.05)
                    time.sleep(1.0)
                    mprocs_small.append(rss_mb(term.pid))
                except Exception as exc:  # noqa: BLE001
                    errors["mprocs"] = err(exc)
                finally:
                    term.close()
        rows = []
        big_label = f"{big // 2**20} MiB" if big < 2**30 else "1 GiB"
        for who, data in (("app (embedded console, log pane on the job)", app),
                          ("server", server)):
            key = "app" if who.startswith("app") else "server"
            small_stat = Stat(data[small], "MB") if data[small] else errors.get(key, "error")
            big_stat = Stat(data[big], "MB") if data[big] else errors.get(key, "error")
            peers = {"mprocs": Stat(mprocs_small, "MB") if mprocs_small else
                     ("missing" if not self.peers.mprocs else errors.get("mprocs", "error"))} \
                if key == "app" else {}
            rows.append(Row(f"4. {who} RSS after a job printed 10 MiB", small_stat,
                            {k: v for k, v in peers.items()}))
            row = Row(f"4. {who} RSS after a job printed {big_label}", big_stat,
                      target="≤ 150 MB and ≤ 1.2x the 10 MiB RSS")
            if data[big] and data[small]:
                r = Stat(data[big]).median / Stat(data[small]).median
                row.ratio = f"{r:.2f}x 10 MiB"
                row.passed = Stat(data[big]).median <= 150 and r <= 1.2
            rows.append(row)
        return rows

    # 5 ------------------------------------------------------------------------------------------
    def idle(self) -> list:
        window = 5.0 if self.quick else 30.0
        count = 100 if self.quick else 1000
        app_cpu, server_cpu, mprocs_cpu = [], [], []
        errors = {}
        for run in range(self.runs):
            self.log(f"idle run {run + 1}/{self.runs} ({window:.0f} s window)")
            world = Isolated("idle")
            jobs = [(f"t{i:04d}", ["/bin/true"], "done") for i in range(count)]
            jobs.append(("sleeper", ["sleep", "600"], "idle"))
            toml = write_toml(os.path.join(world.dir, "jobs.toml"), jobs)
            term = mterm = None
            try:
                world.pq("push", toml)
                world.pq("wait", f"t{count - 1:04d}", timeout=600)
                term = Tmux([PQ_TUI, *app_args("attached", [])], world.env, world.dir)
                if term.wait_for(HEADER, timeout=30) is None:
                    raise RuntimeError("the attached console showed no table")
                if self.peers.mprocs:
                    d = scratch("mprocs-idle")
                    mterm = Tmux([self.peers.mprocs, "sleep 600"], base_env(), d)
                    mterm.wait_for("Processes", timeout=10)
                time.sleep(3.0)  # settle: the first syncs and ticks done
                procs = {"app": psutil.Process(term.pid),
                         "server": psutil.Process(world.server_pid())}
                if mterm is not None:
                    procs["mprocs"] = psutil.Process(mterm.pid)
                before = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
                t0 = time.perf_counter()
                time.sleep(window)
                elapsed = time.perf_counter() - t0
                after = {k: sum(p.cpu_times()[:2]) for k, p in procs.items()}
                use = {k: 100 * (after[k] - before[k]) / elapsed for k in procs}
                app_cpu.append(use["app"])
                server_cpu.append(use["server"])
                if "mprocs" in use:
                    mprocs_cpu.append(use["mprocs"])
                status = subprocess.run([PQ_TUI, "status", "--json"], env=world.env,
                                        capture_output=True, text=True).stdout
                if '"sleeper"' not in status:
                    self.notes.append("idle: the sleeper job was not on the server")
            except Exception as exc:  # noqa: BLE001
                errors["app"] = errors["server"] = err(exc)
                self.log(f"idle: {exc}")
            finally:
                for t in (term, mterm):
                    if t is not None:
                        t.close()
                world.close()
        mp = {"mprocs": Stat(mprocs_cpu, "%") if mprocs_cpu else
              ("missing" if not self.peers.mprocs else "error")}
        rows = []
        row = Row(f"5. idle CPU over {window:.0f} s: console attached, {count} done + 1 silent "
                  f"running job", Stat(app_cpu, "%") if app_cpu else errors.get("app", "error"),
                  mp, target="≤ 1 % of a core")
        if app_cpu:
            row.passed = Stat(app_cpu).median <= 1.0
        rows.append(row)
        row = Row(f"5. idle CPU over {window:.0f} s: server (same window, console attached)",
                  Stat(server_cpu, "%") if server_cpu else errors.get("server", "error"),
                  target="≤ 0.2 % of a core")
        if server_cpu:
            row.passed = Stat(server_cpu).median <= 0.2
        rows.append(row)
        return rows

    # 6 ------------------------------------------------------------------------------------------
    def scale(self) -> list:
        count = 1000 if self.quick else 10_000
        work = scratch("scale")
        jobs = [("j00000", ["sleep", "600"], None)]
        jobs += [(f"j{i:05d}", ["make", "-C", f"part{i}", "test"], None) for i in range(1, count)]
        toml = write_toml(os.path.join(work, "jobs.toml"), jobs, defaults={"queue": "scale"})
        load, check, push_warm, push_cold = [], [], [], []
        first = {"attached": [], "embedded": []}
        keys = {"attached": [], "embedded": []}
        rss = {"attached": [], "embedded": []}
        mprocs_keys = []
        key_timeouts = {"attached": 0, "embedded": 0}
        errors = {}
        for run in range(self.runs):
            self.log(f"scale run {run + 1}/{self.runs}")
            try:
                seconds, n = probe("load_jobfile.py", toml)
                assert int(n) == count, n
                load.append(float(seconds))
                check.append(timed([PQ_TUI, "check", toml], base_env(), work))
                # cold: the push starts the server
                world = Isolated("scale-cold")
                push_cold.append(timed([PQ_TUI, "push", toml], world.env, world.dir))
                world.close()
                # warm: the server is up (started by a push of one job to another lane)
                world = Isolated("scale-warm")
                tiny = write_toml(os.path.join(world.dir, "tiny.toml"), [("warmup", ["true"], "w")])
                world.pq("push", tiny)
                world.pq("wait", "warmup")
                push_warm.append(timed([PQ_TUI, "push", toml], world.env, world.dir))
            except Exception as exc:  # noqa: BLE001
                errors["push"] = err(exc)
                self.log(f"scale push: {exc}")
                continue
            for mode in ("attached", "embedded"):
                if mode == "embedded":
                    world.close()
                    world = Isolated("scale-embedded")
                    args = app_args("embedded", [toml], os.path.join(world.dir, "logs"))
                else:
                    args = app_args("attached", [])
                term = Tmux([PQ_TUI, *args], world.env, world.dir)
                try:
                    shown = term.wait_for(ANY_TITLE, timeout=60)
                    if shown is None:
                        raise RuntimeError(f"{mode}: no table with a selected job in 60 s")
                    first[mode].append(shown)
                    time.sleep(1.0)
                    for _ in range(10):
                        before = selected_job(term.capture())
                        sent = time.perf_counter()
                        term.send("Down")
                        while True:
                            now = selected_job(term.capture())
                            if now is not None and now != before:
                                keys[mode].append((time.perf_counter() - sent) * 1000)
                                break
                            if time.perf_counter() - sent > 10:
                                # Counted as 10 s (a fail), and the next press waits for it.
                                keys[mode].append(10_000.0)
                                key_timeouts[mode] += 1
                                break
                            time.sleep(0.005)
                        time.sleep(0.1)
                        if key_timeouts[mode] >= 2:
                            break
                    rss[mode].append(rss_mb(term.pid))
                except Exception as exc:  # noqa: BLE001
                    errors[mode] = err(exc)
                    self.log(f"scale {mode}: {exc}")
                finally:
                    term.close()
            world.close()
            if self.peers.mprocs:
                # The same key measurement on mprocs (2 processes): the method's own floor.
                term = Tmux([self.peers.mprocs, "--names", "one,two", "echo AAAA; sleep 600",
                             "echo BBBB; sleep 600"],
                            base_env(), scratch("mprocs-keys"))
                try:
                    if term.wait_for("AAAA", timeout=10) is not None:
                        time.sleep(0.5)
                        for i in range(10):
                            want = "BBBB" if i % 2 == 0 else "AAAA"
                            sent = time.perf_counter()
                            term.send("j" if want == "BBBB" else "k")
                            if term.wait_for(want, timeout=5, interval=0.005) is None:
                                break
                            mprocs_keys.append((time.perf_counter() - sent) * 1000)
                            time.sleep(0.1)
                finally:
                    term.close()
        rows = []
        rows.append(Row(f"6. {count:,}-job TOML loaded and validated (pq_tui.jobs.jobfile, in-process)",
                        Stat(load) if load else errors.get("push", "error")))
        rows.append(Row(f"6. `pq-tui check` of the {count:,}-job file (whole command)",
                        Stat(check) if check else errors.get("push", "error")))
        row = Row(f"6. `pq-tui push` of the {count:,}-job file, server running",
                  Stat(push_warm) if push_warm else errors.get("push", "error"), target="≤ 2 s")
        if push_warm:
            row.passed = Stat(push_warm).median <= 2.0
        rows.append(row)
        row = Row(f"6. `pq-tui push` of the {count:,}-job file, server started by it",
                  Stat(push_cold) if push_cold else errors.get("push", "error"), target="≤ 2 s")
        if push_cold:
            row.passed = Stat(push_cold).median <= 2.0
        rows.append(row)
        for mode in ("attached", "embedded"):
            rows.append(Row(f"6. console ({mode}) with {count:,} jobs: launch→first frame",
                            Stat(first[mode]) if first[mode] else errors.get(mode, "error")))
            row = Row(f"6. console ({mode}) with {count:,} jobs: cursor ↓ to screen (tmux)",
                      Stat(keys[mode], "ms") if keys[mode] else errors.get(mode, "error"),
                      {"mprocs": Stat(mprocs_keys, "ms") if mprocs_keys else
                       ("missing" if not self.peers.mprocs else "error")},
                      target="≤ 50 ms")
            if keys[mode]:
                row.passed = Stat(keys[mode]).median <= 50
                row.ratio = f"max {max(keys[mode]):.0f} ms" + (
                    f", {key_timeouts[mode]} press(es) not shown in 10 s" if key_timeouts[mode] else "")
            rows.append(row)
            row = Row(f"6. console ({mode}) with {count:,} jobs: RSS",
                      Stat(rss[mode], "MB") if rss[mode] else errors.get(mode, "error"),
                      target="< 250 MB")
            if rss[mode]:
                row.passed = Stat(rss[mode]).median < 250
            rows.append(row)
        return rows

    # issue 17: 2, 6, 7 (server) --------------------------------------------------------------
    def scripts(self) -> list:
        """The script commands at 10,000 jobs: push (server running, and started by it), the
        status table beside its JSON (10,000 queued, and 10,000 finished), the server's RSS."""
        count = 1000 if self.quick else 10_000
        work = scratch("scripts")
        jobs = [("j00000", ["sleep", "600"], None)]
        jobs += [(f"j{i:05d}", ["make", "-C", f"part{i}", "test"], None) for i in range(1, count)]
        toml = write_toml(os.path.join(work, "jobs.toml"), jobs, defaults={"queue": "scale"})
        history = write_toml(os.path.join(work, "history.toml"),
                             [(f"t{i:05d}", ["true"], "h") for i in range(count)])
        with open(history, "a") as f:
            f.write("\n[lanes.h]\nparallel = 4\n")
        samples: dict = {key: [] for key in ("warm", "cold", "table", "json", "table_done",
                                             "json_done", "rss")}
        errors: dict = {}

        def status_pair(world: Isolated, table: str, document: str, run: int) -> None:
            # Alternating which goes first, so that neither always has the warmer caches.
            order = [(table, []), (document, ["--json"])]
            for key, args in order if run % 2 == 0 else order[::-1]:
                samples[key].append(timed([PQ_TUI, "status", *args], world.env, world.dir))

        for run in range(self.runs):
            self.log(f"scripts run {run + 1}/{self.runs}")
            try:
                world = Isolated("scripts-cold")  # the push starts the server
                samples["cold"].append(timed([PQ_TUI, "push", toml], world.env, world.dir))
                status_pair(world, "table", "json", run)
                world.close()
                world = Isolated("scripts-warm")  # a one-job push to another lane started it
                tiny = write_toml(os.path.join(world.dir, "tiny.toml"), [("warmup", ["true"], "w")])
                world.pq("push", tiny)
                world.pq("wait", "warmup")
                samples["warm"].append(timed([PQ_TUI, "push", toml], world.env, world.dir))
                world.close()
                world = Isolated("scripts-history")
                world.env["PQ_TUI_KEEP_JOBS"] = str(count)  # else the server keeps 1000
                world.pq("push", history)
                world.pq("wait", timeout=1200)
                samples["rss"].append(rss_mb(world.server_pid()))
                status_pair(world, "table_done", "json_done", run)
                world.close()
            except Exception as exc:  # noqa: BLE001 - shown in the table
                errors["run"] = err(exc)
                self.log(f"scripts: {exc}")

        def stat(key: str, unit: str = "s") -> object:
            return Stat(samples[key], unit) if samples[key] else errors.get("run", "error")

        rows = []
        for key, how, limit in (("warm", "server running", 1.0),
                                ("cold", "server started by it", 1.4)):
            row = Row(f"2. `pq-tui push` of {count:,} jobs, {how}", stat(key),
                      target=f"≤ {limit} s", goal="2")
            if samples[key]:
                row.passed = Stat(samples[key]).median <= limit
            rows.append(row)
        for table, document, what in (("table", "json", "queued"),
                                      ("table_done", "json_done", "finished")):
            rows.append(Row(f"6. `pq-tui status --json`, {count:,} jobs {what}", stat(document)))
            row = Row(f"6. `pq-tui status` (the table), {count:,} jobs {what}", stat(table),
                      target="≤ 1.2x the JSON", goal="6")
            if samples[table] and samples[document]:
                ratio_row(row, Stat(samples[table]).median, Stat(samples[document]).median, 1.2,
                          "JSON")
            rows.append(row)
        row = Row(f"7. server RSS with {count:,} finished jobs", stat("rss", "MB"),
                  target="≤ 40 MB", goal="7")
        if samples["rss"]:
            row.passed = Stat(samples["rss"]).median <= 40
        rows.append(row)
        return rows

    def console_memory(self) -> list:
        """Issue 17 target 7, the console's part: its RSS attached to a server holding 1000 and
        10,000 finished jobs (``PQ_TUI_KEEP_JOBS``, else the server keeps 1000)."""
        counts = (100, 1000) if self.quick else (1000, 10_000)
        limits = {counts[0]: 60.0, counts[1]: 90.0}
        rss: dict = {n: [] for n in counts}
        errors: dict = {}
        for n in counts:
            world = Isolated(f"console-memory-{n}")
            world.env["PQ_TUI_KEEP_JOBS"] = str(n)
            toml = write_toml(os.path.join(world.dir, "jobs.toml"),
                              [(f"t{i:05d}", ["/bin/true"], "done") for i in range(n)],
                              defaults=None)
            try:
                world.pq("push", toml)
                world.pq("wait", timeout=900)
                for run in range(self.runs):
                    self.log(f"console_memory {n} run {run + 1}/{self.runs}")
                    term = Tmux([PQ_TUI, *app_args("attached", [])], world.env, world.dir)
                    try:
                        if term.wait_for(HEADER, timeout=60) is None:
                            raise RuntimeError("the attached console showed no table")
                        time.sleep(3.0)  # settled: the snapshot in, the first syncs done
                        rss[n].append(rss_mb(term.pid))
                    finally:
                        term.close()
            except Exception as exc:  # noqa: BLE001
                errors[n] = err(exc)
                self.log(f"console_memory {n}: {exc}")
            finally:
                world.close()
        rows = []
        for n in counts:
            row = Row(f"7. console RSS, attached, {n:,} finished jobs",
                      Stat(rss[n], "MB") if rss[n] else errors.get(n, "error"),
                      target=f"≤ {limits[n]:.0f} MB", goal="7")
            if rss[n]:
                row.passed = Stat(rss[n]).median <= limits[n]
            rows.append(row)
        return rows

    # 7 ------------------------------------------------------------------------------------------
    def startup(self) -> list:
        # As installed (pip writes every module's bytecode), not as a checkout run with
        # PYTHONDONTWRITEBYTECODE: compiling pq_tui's sources again at each launch cost about
        # 0.15 s of a first frame, while the bare app's Textual came compiled.
        import compileall

        import pq_tui
        compileall.compile_dir(os.path.dirname(pq_tui.__file__), quiet=1)
        rows = []
        versions = []
        if self.peers.hyperfine:
            out = os.path.join(scratch("hyperfine"), "hf.json")
            runs = 5 if self.quick else 20
            for _ in range(self.runs):
                subprocess.run([self.peers.hyperfine, "-N", "--warmup", "3", "--runs", str(runs),
                                "--export-json", out, f"{PQ_TUI} --version"], env=base_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                with open(out) as f:
                    versions.append(json.load(f)["results"][0]["median"])
            how = "hyperfine median of 20"
        else:
            for _ in range(self.runs):
                versions.append(statistics.median(
                    timed([PQ_TUI, "--version"], base_env(), _TEMP_ROOT) for _ in range(20)))
            how = "median of 20"
        row = Row(f"7. `pq-tui --version` ({how})", Stat(versions), target="≤ 0.15 s")
        row.passed = Stat(versions).median <= 0.15
        rows.append(row)

        work = scratch("startup")
        toml = write_toml(os.path.join(work, "one.toml"), [("hello", ["sleep", "600"], None)])
        first: dict = {"embedded": [], "attached": [], "bare": [], "mprocs": []}
        errors = {}
        for run in range(self.runs):
            self.log(f"startup run {run + 1}/{self.runs}")
            modes = ("embedded", "attached", "bare")
            for mode in modes[run % 3:] + modes[:run % 3]:  # who goes first, in turn
                world = Isolated(f"startup-{mode}")
                try:
                    if mode == "attached":  # the server is up already, as after a first push
                        world.pq("push", toml)
                        command = [PQ_TUI, *app_args("attached", [])]
                    elif mode == "embedded":
                        command = [PQ_TUI, *app_args("embedded", [toml],
                                                     os.path.join(world.dir, "logs"))]
                    else:
                        command = [PYTHON, os.path.join(PROBES, "bare_textual.py")]
                    term = Tmux(command, world.env, world.dir)
                    try:
                        shown = term.wait_for(HEADER, timeout=30, interval=0.005)
                        if shown is None:
                            raise RuntimeError("no first frame in 30 s")
                        first[mode].append(shown)
                    finally:
                        term.close()
                except Exception as exc:  # noqa: BLE001
                    errors[mode] = err(exc)
                finally:
                    world.close()
            if self.peers.mprocs:
                term = Tmux([self.peers.mprocs, "sleep 600"], base_env(), scratch("mprocs-start"))
                try:
                    shown = term.wait_for("Processes", timeout=30, interval=0.005)
                    if shown is not None:
                        first["mprocs"].append(shown)
                finally:
                    term.close()
        mp = {"mprocs": Stat(first["mprocs"]) if first["mprocs"] else
              ("missing" if not self.peers.mprocs else "error")}
        bare = Stat(first["bare"]) if first["bare"] else None
        for mode in ("embedded", "attached"):
            row = Row(f"7. console ({mode}) launch→first frame (tmux, table header shown)",
                      Stat(first[mode]) if first[mode] else errors.get(mode, "error"), mp,
                      target="≤ 1 s, ≤ 1.6x bare Textual", goal="4")
            if first[mode]:
                row.passed = Stat(first[mode]).median <= 1.0
                if bare is not None:
                    ratio = Stat(first[mode]).median / bare.median
                    row.ratio = f"{ratio:.2f}x bare Textual"
                    row.passed = row.passed and ratio <= 1.6
            rows.append(row)
        rows.append(Row("7. a bare Textual app (Static + Footer) launch→first frame, the same way",
                        bare if bare is not None else errors.get("bare", "error")))
        return rows

    # 8 ------------------------------------------------------------------------------------------
    def schedule(self) -> list:
        """Issue 13: what a lane's slots gain, and what dependencies cost, each against its own
        baseline taken in the same run (the four alternate, run after run). The ratio is of the
        wall times; the engine's own CPU time beside it swings less with the machine's load."""
        sleeps = 40 if self.quick else 200
        trues = 200 if self.quick else 1000
        cases = {"1 slot": ("slots", "1", str(sleeps)), "4 slots": ("slots", "4", str(sleeps)),
                 "plain": ("plain", str(trues)), "chain": ("chain", str(trues))}
        s: dict = {key: [] for key in cases}
        cpu: dict = {key: [] for key in cases}
        errors = {}
        for run in range(self.runs):
            self.log(f"schedule run {run + 1}/{self.runs}")
            for key, args in cases.items():
                try:
                    wall, used = probe("sched.py", *args, scratch("sched"))
                    s[key].append(float(wall))
                    cpu[key].append(float(used))
                except Exception as exc:  # noqa: BLE001 - shown in the table
                    errors[key] = err(exc)
                    self.log(f"schedule {key}: {exc}")

        def stat(key: str):
            return Stat(s[key]) if s[key] else errors.get(key, "error")

        def versus(row: Row, key: str, base: str, limit: float, base_name: str) -> Row:
            if s[key] and s[base]:
                ratio_row(row, Stat(s[key]).median, Stat(s[base]).median, limit, base_name)
                used = Stat(cpu[key]).median / Stat(cpu[base]).median
                row.ratio += f" (engine CPU {used:.2f}x)"
            return row

        label = f"{sleeps} × `sleep 0.05`, one lane (Engine, push→idle)"
        chain = f"{trues} × `true` (Engine, push→idle)"
        return [
            Row(f"8. {label}: 1 slot", stat("1 slot")),
            versus(Row(f"8. {label}: 4 slots", stat("4 slots"), target="≤ 0.3x 1 slot"),
                   "4 slots", "1 slot", 0.3, "1 slot"),
            Row(f"8. {chain}: one lane, no dependencies", stat("plain")),
            versus(Row(f"8. {chain}: a chain, job i after job i-1, lane i % 4", stat("chain"),
                       target="≤ 1.1x one lane"), "chain", "plain", 1.1, "one lane"),
        ]

    # 11 -----------------------------------------------------------------------------------------
    def search(self) -> list:
        """Issue 15: `pq-tui grep` over the logs of 1000 finished jobs of 10,000 lines each
        (real jobs, run by the server), one hit per job, so that the search reads every log to
        its end. Timed from the command's launch: the first hit on its stdout, and its exit."""
        jobs = 100 if self.quick else 1000
        lines = 10_000
        world = Isolated("search")
        work = scratch("search")
        # One line in each job's log says "warning", at a line that moves from job to job.
        script = os.path.join(work, "gen.awk")
        with open(script, "w") as f:
            f.write('BEGIN { for (i = 1; i <= lines; i++) if (i == at) print "src/module_" i '
                    '".c:42: warning: unused variable rc"; else print "[" i % 100 "%] Building '
                    'C object src/module_" i ".c.o" }\n')
        toml = write_toml(os.path.join(work, "logs.toml"),
                          [(f"gen{j}", ["awk", "-v", f"lines={lines}", "-v",
                                        f"at={1 + (j * 7919) % lines}", "-f", script], None)
                           for j in range(jobs)], defaults={"queue": "gen"})
        with open(toml, "a") as f:
            f.write("\n[lanes.gen]\nparallel = 2\n")
        cases = {"word": ["warning"], "ignore case": ["-i", "WARNING"],
                 "regex": [r"module_\d+\.c:42: warn"]}
        first: dict = {key: [] for key in cases}
        whole: dict = {key: [] for key in cases}
        op_first: list = []
        op_whole: list = []
        errors = {}
        try:
            world.pq("push", toml)
            world.pq("wait", timeout=1200)
            size = sum(os.path.getsize(os.path.join(root, name))
                       for root, _dirs, names in os.walk(os.path.join(world.state, "logs"))
                       for name in names)
            self.notes.append(f"search: {jobs} logs of {lines:,} lines, {size / 2**20:.0f} MiB "
                              f"in all, in the page cache (just written); one hit per log")
            for run in range(self.runs):
                self.log(f"search run {run + 1}/{self.runs}")
                try:
                    to_first, total, found = probe("grep_op.py", "warning", env=world.env)
                    if int(found) != jobs:
                        raise RuntimeError(f"{found} hits, expected {jobs}")
                    op_first.append(float(to_first))
                    op_whole.append(float(total))
                except Exception as exc:  # noqa: BLE001 - shown in the table
                    errors["op"] = err(exc)
                    self.log(f"search op: {exc}")
                for key, args in cases.items():
                    try:
                        found, to_first, total = _grep_timed(world, args)
                        if found != jobs:
                            raise RuntimeError(f"{found} hits, expected {jobs}")
                        first[key].append(to_first)
                        whole[key].append(total)
                    except Exception as exc:  # noqa: BLE001 - shown in the table
                        errors[key] = err(exc)
                        self.log(f"search {key}: {exc}")
        except Exception as exc:  # noqa: BLE001
            errors["push"] = err(exc)
            self.log(f"search push: {exc}")
        finally:
            world.close()

        def stat(samples: dict, key: str):
            return Stat(samples[key]) if samples[key] else errors.get(key, errors.get("push",
                                                                                      "error"))

        op = f"the `grep` op (a connected client) over {jobs} logs × {lines:,} lines, a word"
        rows = [Row(f"11. {op}: request→first hit", Stat(op_first) if op_first else
                    errors.get("op", "error"), target="≤ 0.5 s"),
                Row(f"11. {op}: whole search (reply)", Stat(op_whole) if op_whole else
                    errors.get("op", "error"), target="≤ 3 s")]
        if op_first:
            rows[0].passed = Stat(op_first).median <= 0.5
        if op_whole:
            rows[1].passed = Stat(op_whole).median <= 3.0
        label = f"`pq-tui grep` of {jobs} logs × {lines:,} lines through the server"
        for key in cases:
            targets = key == "word"
            head = Row(f"11. {label} ({key}): launch→first hit", stat(first, key),
                       target="≤ 0.5 s" if targets else "")
            end = Row(f"11. {label} ({key}): whole search (exit)", stat(whole, key),
                      target="≤ 3 s" if targets else "")
            if targets and first[key]:
                head.passed = Stat(first[key]).median <= 0.5
            if targets and whole[key]:
                end.passed = Stat(whole[key]).median <= 3.0
            rows += [head, end]
        return rows

    # 15 -----------------------------------------------------------------------------------------
    def bytes(self) -> list:
        """Issue 17 target 8: bytes written to an 80x24 terminal per second (tmux pipe-pane),
        with one job printing a line a second and under a flood, pq-tui beside mprocs and a
        plain shell running the same command. PQ_BENCH_BYTES_BASELINE=DIR (a tree holding
        another version's pq_tui package) adds that version, alternating with this one."""
        trickle = 'i=0; while :; do i=$((i+1)); echo "line $i: $(date +%T)"; sleep 1; done'
        flood = "while :; do seq 1 5000000; done"
        window = 5.0 if self.quick else 12.0
        baseline = os.environ.get("PQ_BENCH_BYTES_BASELINE")
        # Measured in the steady state: the trickle once the log pane's 12 rows are full.
        cases = {"trickle": (trickle, 14.0), "flood": (flood, 4.0)}
        versions = {"pq": ([], [PQ_TUI])}  # (environment, command)
        if baseline:
            versions["before"] = ([f"PYTHONPATH={shlex.quote(baseline)}"], [PYTHON, "-m", "pq_tui"])
        samples: dict = {}
        bands: dict = {}
        errors: dict = {}

        def measure(key: str, line: str, settle: float) -> None:
            out = os.path.join(scratch("bytes"), "bytes.json")
            try:
                probe("pane_bytes.py", TMUX_SOCKET, "80x24", str(settle), str(window), out, "--",
                      line)
                with open(out) as f:
                    result = json.load(f)
            except Exception as exc:  # noqa: BLE001 - shown in the table
                errors[key] = err(exc)
                self.log(f"bytes {key}: {exc}")
                return
            samples.setdefault(key, []).append(round(result["bytes_per_s"] / 1024, 3))
            bands.setdefault(key, []).append(result["bands"])

        Tmux.ensure_server()
        for run in range(self.runs):
            self.log(f"bytes run {run + 1}/{self.runs}")
            for case, (command, settle) in cases.items():
                for version, (extra, argv) in versions.items():
                    world = Isolated(f"bytes-{version}")
                    toml = write_toml(os.path.join(world.dir, "jobs.toml"), [(case, command, None)])
                    assignments = [f"{k}={shlex.quote(v)}" for k, v in world.env.items()
                                   if k.startswith(("PQ_", "XDG_")) or k in ("PATH", "HOME")]
                    # What an ssh session is given: TERM, no COLORTERM (ssh does not send it).
                    argv = [*argv, *app_args("embedded", [toml], os.path.join(world.dir, "logs"))]
                    line = (f"cd {shlex.quote(world.dir)} && exec env -u COLORTERM "
                            f"TERM=xterm-256color {' '.join(assignments + extra)} "
                            + " ".join(map(shlex.quote, argv)))
                    try:
                        measure(f"{version}-{case}", line, settle)
                    finally:
                        world.close()
                        shutil.rmtree(os.path.join(world.dir, "logs"), ignore_errors=True)
                if self.peers.mprocs:
                    measure(f"mprocs-{case}", "exec env -u COLORTERM TERM=xterm-256color "
                            + " ".join(map(shlex.quote, [self.peers.mprocs, command])), settle)
                if case == "trickle":
                    measure("shell-trickle", "exec env -u COLORTERM TERM=xterm-256color sh -c "
                            + shlex.quote(command), settle)

        def stat(key: str, missing: str = "error"):
            return Stat(samples[key], "KiB/s") if key in samples else errors.get(key, missing)

        rows = []
        for case, label, limit in (("trickle", "one job printing a line a second", 0.3),
                                   ("flood", "a flood (`seq 1 5000000` over and over)", 8.0)):
            peers = {"mprocs": stat(f"mprocs-{case}", "missing" if not self.peers.mprocs
                                    else "error")}
            if case == "trickle":
                peers["bash"] = stat("shell-trickle")
            row = Row(f"15. bytes to an 80x24 terminal, {label} (pipe-pane, {window:.0f} s)",
                      stat(f"pq-{case}"), peers, target=f"≤ {limit:g} KiB/s", goal="8")
            key = f"pq-{case}"
            if key in samples:
                row.passed = Stat(samples[key]).median <= limit
                if f"before-{case}" in samples:
                    before = Stat(samples[f"before-{case}"]).median
                    row.ratio = f"before: {Stat(samples[f'before-{case}'], 'KiB/s')}"
                    if before:
                        row.ratio += f" ({Stat(samples[key]).median / before:.2f}x)"
                parts = {name: statistics.median(b.get(name, 0) for b in bands[key])
                         for name in (bands[key][0] if bands[key] else {})}
                if parts:
                    self.notes.append(f"bytes, {case}, pq-tui by part (B/s, median): " + ", ".join(
                        f"{name} {value:.0f}" for name, value in parts.items()))
            rows.append(row)
        return rows

    def link(self) -> list:
        """Issue 16: from a dropped ssh link (its process killed) to a mirror caught up again (a
        new link, the snapshot and the tails in), with a real sshd on 127.0.0.1. No target: the
        issue sets none; the floor is ssh's own handshake and the bridge's start there."""
        drops = 3 if self.quick else 5 * self.runs
        if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
            return [Row("10. dropped link to a caught-up mirror", "skipped: no sshd")]
        samples, behind, floor = [], [], []
        try:
            out = subprocess.run([PYTHON, os.path.join(PROBES, "link_drop.py"), str(drops),
                                  scratch("link")], env=base_env(), capture_output=True,
                                 text=True, timeout=900)
            if out.returncode != 0:
                raise RuntimeError(f"probe link_drop.py failed: {out.stderr[-800:]}")
            for line in out.stdout.splitlines():
                seconds, lines, bare = line.split()
                samples.append(float(seconds))
                behind.append(int(lines))
                floor.append(float(bare))
        except Exception as exc:  # noqa: BLE001 - shown in the table
            return [Row("10. dropped link to a caught-up mirror", err(exc))]
        row = Row(f"10. dropped link to a caught-up mirror ({drops} drops, a job printing every "
                  "2 ms)", Stat(samples))
        bare = Row("10. a bare `ssh ALIAS true` to the same sshd (the floor)", Stat(floor))
        if samples and floor:
            row.ratio = (f"{Stat(samples).median / Stat(floor).median:.2f}x bare ssh; lines "
                         f"behind after: max {max(behind)}")
        return [row, bare]

    def fleet(self) -> list:
        """Issue 16: the console over two ssh hosts that flood at once (`seq 1 N` on each),
        against the same console over one such host, the two cases alternating in each run: the
        console's event-loop lag p99 (probes/app_lag.py), a real sshd on 127.0.0.1."""
        count = 500_000 if self.quick else 5_000_000
        title = f"12. event-loop lag, console over ssh hosts each flooding `seq 1 {count}`, p99"
        if not (shutil.which("sshd") or os.path.exists("/usr/sbin/sshd")):
            return [Row(title, "skipped: no sshd")]
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        from pathlib import Path

        from ssh_helpers import Sshd

        work = scratch("fleet")
        daemon = Sshd(Path(work))
        daemon.start()
        toml = write_toml(os.path.join(work, "flood.toml"), [("flood", f"seq 1 {count}", None)])
        p99s: dict = {1: [], 2: []}
        steps: list = []  # the event loop's steps over 30 ms in the two-host runs
        errors: dict = {}
        try:
            for run in range(self.runs):
                for hosts in ((1, 2) if run % 2 == 0 else (2, 1)):
                    self.log(f"fleet run {run + 1}/{self.runs}: {hosts} host(s)")
                    try:
                        p99, slow = self._fleet_flood(daemon, f"r{run}h{hosts}", hosts, toml)
                        p99s[hosts].append(p99)
                        if hosts == 2:
                            steps += slow
                    except Exception as exc:  # noqa: BLE001 - shown in the table
                        errors[hosts] = err(exc)
                        self.log(f"fleet: {exc}")
        finally:
            daemon.stop()
        if steps:
            by_what: dict = {}
            for ms, what in steps:
                by_what.setdefault(what, []).append(ms)
            worst = sorted(by_what.items(), key=lambda item: -max(item[1]))[:4]
            self.notes.append("fleet, two hosts: the event loop's steps over 30 ms (all runs): "
                              + "; ".join(f"{what}: {len(ms)}, max {max(ms):.0f} ms"
                                          for what, ms in worst))
        rows = []
        for hosts in (1, 2):
            row = Row(f"{title}: {hosts} host{'s' if hosts > 1 else ''}",
                      Stat(p99s[hosts], "ms") if p99s[hosts] else errors.get(hosts, "error"),
                      target="< 100 ms" if hosts == 2 else "")
            if hosts == 2 and p99s[2]:
                row.passed = Stat(p99s[2]).median < 100
                if p99s[1]:
                    row.ratio = f"{Stat(p99s[2]).median / Stat(p99s[1]).median:.2f}x one host"
            rows.append(row)
        return rows

    def _fleet_flood(self, daemon: Any, name: str, hosts: int, toml: str) -> tuple:
        """One console over ``hosts`` fresh boards, the flood pushed to each once it is up: the
        lag p99, and the loop's steps over 30 ms as [ms, what ran] (app_lag.py)."""
        boards = [daemon.board(f"{name}-{i}") for i in range(hosts)]
        world = Isolated(f"fleet-{name}")
        config = os.path.join(world.dir, "config.toml")
        with open(config, "w") as f:
            for board in boards:
                f.write(f'[hosts.{board.name}]\nssh = "{board.ssh}"\npq_tui = "{board.pq_tui}"\n')
        world.env.update(PQ_TUI_CONFIG=config, PQ_BENCH_JOBS=str(hosts), PQ_BENCH_STEPS="1")
        out = os.path.join(world.dir, "lag.json")
        command = [PYTHON, os.path.join(PROBES, "app_lag.py"), out, "flood", "--",
                   *(arg for board in boards for arg in ("--host", board.name))]
        term = Tmux(command, world.env, world.dir)
        try:
            if term.wait_for(HEADER, timeout=60) is None:
                raise RuntimeError("no first frame")
            pushes = [subprocess.Popen([PQ_TUI, "push", "--host", board.name, toml], env=world.env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                      for board in boards]  # one host per push: all at once
            for push in pushes:
                _, stderr = push.communicate(timeout=120)
                if push.returncode != 0:
                    raise RuntimeError(f"pq-tui push: {stderr.decode(errors='replace')[-300:]}")
            deadline = time.perf_counter() + 600
            while not os.path.exists(out):
                if time.perf_counter() > deadline:
                    raise RuntimeError("the floods did not end in 600 s")
                time.sleep(0.1)
            with open(out) as f:
                result = json.load(f)
            samples = sorted(result["samples_ms"])
            return (samples[min(len(samples) - 1, int(0.99 * len(samples)))],
                    result.get("slow_steps", []))
        finally:
            term.close()
            for board in boards:
                paths = daemon.aliases[board.name]
                subprocess.run([PQ_TUI, "shutdown", "--kill"], timeout=60,
                               env=base_env(PQ_TUI_RUNTIME_DIR=paths.runtime_dir,
                                            PQ_TUI_STATE_DIR=paths.state_dir),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            world.close()

    def fleet_table(self) -> list:
        """Issue 16: the job table over several hosts (a header row per host, one folded and
        unfolded) next to one host's, at 10,000 rows, in CPU ms of the console's thread."""
        count = 1000 if self.quick else 10_000
        try:
            lines = probe("fleet_table.py", str(count), str(5 * self.runs))
        except Exception as exc:  # noqa: BLE001 - shown in the table
            return [Row("14. job table over several hosts", err(exc))]
        cases = {}
        for case, sync, step, fold in zip(lines[0::5], lines[2::5], lines[3::5], lines[4::5]):
            cases[case] = (float(sync), float(step), None if fold == "-" else float(fold))
        rows = []
        for case, (sync, step, fold) in cases.items():
            name = "1 host" if case == "1" else f"{case} hosts, header rows"
            row = Row(f"14. table of {count:,} jobs, {name}: sync / cursor ↓ and repaint"
                      + (" / fold and unfold" if fold is not None else ""), Stat([sync], "ms"),
                      target="↓ ≤ 50 ms")
            row.ratio = f"↓ {step:.1f} ms" + (f"; fold {fold:.1f} ms" if fold is not None else "")
            row.passed = step <= 50
            rows.append(row)
        return rows


# -- main -----------------------------------------------------------------------------------------


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setup", action="store_true", help="install missing peers first")
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark (default 3)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(NAMES)}")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 run, smaller workloads (not the issue's numbers)")
    parser.add_argument("--output", default=os.path.join(HERE, "results.md"))
    options = parser.parse_args(argv)
    if options.setup:
        setup()
    if PQ_TUI is None:
        print("bench: pq-tui is not installed in this Python's environment", file=sys.stderr)
        return 2
    if not shutil.which("tmux"):
        print("bench: tmux is needed for the console benchmarks (bench/setup.sh)", file=sys.stderr)
        return 2
    names = [n.strip() for n in options.only.split(",") if n.strip()] or list(NAMES)
    unknown = set(names) - set(NAMES)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    runs = 1 if options.quick else max(1, options.runs)
    peers = Peers()
    bench = Bench(runs, options.quick, peers)
    machine = machine_line()
    rows: list = []

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    started = time.perf_counter()
    try:
        for name in NAMES:
            if name in names:
                try:
                    rows += getattr(bench, name)()
                except Exception as exc:  # noqa: BLE001 - one benchmark's failure is a row
                    rows.append(Row(f"{name}", err(exc), passed=False))
                    bench.log(f"{name} failed: {exc!r}")
    finally:
        cleanup()
    version = subprocess.run([PQ_TUI, "--version"], capture_output=True, text=True).stdout.strip()
    missing = [p for p in ("tsp", "nq", "mprocs") if not getattr(peers, p)]
    note = (f"{version}; {runs} run(s) each, median (min–max); "
            f"suite took {time.perf_counter() - started:.0f} s"
            + ("; QUICK smoke run: smaller workloads, not the issue's" if options.quick else "")
            + (f"; missing peers: {', '.join(missing)}" if missing else ""))
    table = markdown(rows, machine, note)
    goals = goals_table(rows)
    if goals:
        table += "\nIssue 17's targets, from the rows above:\n\n" + goals
    if bench.notes:
        table += "\nNotes:\n" + "".join(f"- {n}\n" for n in dict.fromkeys(bench.notes))
    print(table)
    with open(options.output, "w") as f:
        f.write(table)
    failed = [r for r in rows if r.passed is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
