"""The command line, end to end: real `python -m pq_tui` subprocesses running real jobs.

Nothing is mocked. Job files are written to tmp_path, logs go to tmp_path, and every job's cwd is
an absolute path under tmp_path, so that nothing lands in the repository. No test asserts on how
long anything took; the timeouts only keep a broken build from hanging the run.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

import pq_tui
from pq_tui.core.logfile import read_log

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # seconds; only against hangs

# A pq-tui process left running fails the test (see conftest.py).
pytestmark = pytest.mark.usefixtures("no_leftover_processes")

# "alpha      | text", "alpha      ! text" (stderr), "alpha      # started, pid 1" (pq-tui's notes)
STREAM_LINE = re.compile(r"^(?P<id>\S+) +(?P<mark>[|!#]) (?P<text>.*)$")


# -- helpers -------------------------------------------------------------------------------------


def _env() -> dict:
    env = dict(os.environ)
    env.pop("NO_COLOR", None)
    env.pop("PYTHONWARNINGS", None)
    return env


def pq(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pq_tui", *map(str, args)],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def job_file(tmp_path: Path, text: str, name: str = "jobs.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toml_str(value) -> str:
    """A TOML basic string (JSON's quoting is valid TOML for these)."""
    return json.dumps(str(value))


def stream(stdout: str) -> dict:
    """The streamed part of `run`'s output: {job id: [(mark, text), ...]} in output order."""
    jobs: dict = {}
    for line in stdout.splitlines():
        if line.startswith("ID ") and "STATE" in line:
            break  # the summary table
        match = STREAM_LINE.match(line)
        if match:
            jobs.setdefault(match["id"], []).append((match["mark"], match["text"]))
    return jobs


def summary(stdout: str) -> dict:
    """The summary table: {job id: {"lane", "state", "exit", "duration"}}."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.split()[:5] == ["ID", "LANE", "STATE", "EXIT", "DURATION"]]
    assert len(starts) == 1, f"no single summary header in:\n{stdout}"
    rows = {}
    for line in lines[starts[0] + 1 :]:
        if line.startswith("logs:") or ": skipped" in line:  # the end, or why jobs were skipped
            break
        cells = line.split()
        assert len(cells) == 5, f"summary row {line!r} does not have 5 columns"
        rows[cells[0]] = dict(zip(("lane", "state", "exit", "duration"), cells[1:]))
    return rows


def texts(entries: list, mark: str) -> list:
    return [text for m, text in entries if m == mark]


# -- --version and --help ------------------------------------------------------------------------


def test_version():
    result = pq("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"pq-tui {pq_tui.__version__}"
    assert result.stderr == ""


@pytest.mark.parametrize(
    "command, example",
    [
        ([], "pq-tui run examples/build-and-test.toml"),
        (["run"], "pq-tui run examples/build-and-test.toml"),
        (["check"], "pq-tui check examples/demo.toml"),
    ],
    ids=["main", "run", "check"],
)
def test_help_shows_examples(command, example):
    result = pq(*command, "--help")
    assert result.returncode == 0
    assert result.stderr == ""
    assert re.search(r"^examples?:$", result.stdout, re.MULTILINE), result.stdout
    assert example in result.stdout


def test_run_help_documents_exit_statuses():
    out = pq("run", "--help").stdout
    for word in ("0 when every job succeeded", "1 when any failed", "2 for bad input", "130"):
        assert word in " ".join(out.split()), word


# -- run -----------------------------------------------------------------------------------------


def test_run_two_lanes_streams_every_line_and_summarises(tmp_path):
    # alpha and beta are in different lanes and wait for each other: the run only gets through if
    # the lanes really run side by side (a bounded wait, so a bug fails instead of hanging).
    handshake = "n=0; while [ ! -e {flag} ]; do n=$((n+1)); [ $n -gt 300 ] && exit 9; sleep 0.05; done"
    a_flag, b_flag = tmp_path / "a-up", tmp_path / "b-up"
    alpha = (
        f"touch {a_flag}; " + handshake.format(flag=b_flag)
        + "; echo 'a one'; echo 'a warn' >&2; echo 'a two'; echo 'a three'; echo 'a err2' >&2"
    )
    beta = (
        f"touch {b_flag}; " + handshake.format(flag=a_flag)
        + "; for i in 1 2 3 4 5; do echo \"b line $i\"; sleep 0.02; done"
    )
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "alpha"
queue = "left"
cmd = ["sh", "-c", {toml_str(alpha)}]

[[job]]
id = "gamma"
queue = "left"
cmd = "printf 'g one\\ng two\\n'"

[[job]]
id = "beta"
queue = "right"
cmd = ["sh", "-c", {toml_str(beta)}]
""")
    result = pq("run", "--color", "never", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""

    jobs = stream(result.stdout)
    assert set(jobs) == {"alpha", "beta", "gamma"}
    # Every line of a job, behind its id, in the order the job wrote it (per stream: stdout and
    # stderr are two pipes, so only each one's own order is defined); stderr marked "!".
    assert texts(jobs["alpha"], "|") == ["a one", "a two", "a three"]
    assert texts(jobs["alpha"], "!") == ["a warn", "a err2"]
    assert texts(jobs["beta"], "|") == [f"b line {i}" for i in range(1, 6)]
    assert texts(jobs["beta"], "!") == []
    assert texts(jobs["gamma"], "|") == ["g one", "g two"]
    for _job_id, entries in jobs.items():
        notes = texts(entries, "#")
        assert notes[0].startswith("started, pid "), notes
        assert re.fullmatch(r"ok after \d+\.\ds", notes[-1]), notes
        # started comes before the job's output, the end after it
        assert entries[0][0] == "#" and entries[-1][0] == "#"

    # The ids are padded to one width so that the output reads as columns.
    prefixes = {line.index(" | ") for line in result.stdout.splitlines() if " | " in line}
    assert len(prefixes) == 1

    # In one lane the jobs run one at a time, in order: gamma starts after alpha has finished.
    notes = [(m["id"], m["text"].split()[0]) for m in map(STREAM_LINE.match, result.stdout.splitlines())
             if m and m["mark"] == "#"]
    assert notes.index(("alpha", "ok")) < notes.index(("gamma", "started,"))

    rows = summary(result.stdout)
    assert list(rows) == ["alpha", "gamma", "beta"]
    assert {job_id: (row["lane"], row["state"], row["exit"]) for job_id, row in rows.items()} == {
        "alpha": ("left", "ok", "0"),
        "gamma": ("left", "ok", "0"),
        "beta": ("right", "ok", "0"),
    }
    for row in rows.values():
        assert re.fullmatch(r"\d+\.\ds", row["duration"])
    assert f"logs: {tmp_path / 'logs'}" in result.stdout


def test_run_prints_the_same_to_a_file_as_to_a_pipe(tmp_path):
    # A file never blocks: the text is written on the event loop, not handed to a thread.
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "one"
cmd = ["sh", "-c", "for i in $(seq 1 200); do echo \\"out $i\\"; done; echo 'err 1' >&2"]

[[job]]
id = "two"
cmd = ["printf", "x\\ny\\n"]
""")
    piped = pq("run", "--color", "never", "--log-dir", tmp_path / "logs1", path)
    out = tmp_path / "out.txt"
    with open(out, "w") as stdout:
        filed = subprocess.run([sys.executable, "-m", "pq_tui", "run", "--color", "never",
                                "--log-dir", str(tmp_path / "logs2"), str(path)], cwd=REPO,
                               env=_env(), stdout=stdout, stderr=subprocess.PIPE, text=True,
                               timeout=TIMEOUT)
    assert (piped.returncode, filed.returncode) == (0, 0), filed.stderr
    printed = out.read_text()

    def lines(stdout: str) -> dict:  # pids and durations differ from run to run: no notes
        return {job: [line for line in got if line[0] != "#"] for job, got in stream(stdout).items()}

    assert lines(printed) == lines(piped.stdout)
    assert set(summary(printed)) == set(summary(piped.stdout)) == {"one", "two"}
    assert len(texts(stream(printed)["one"], "|")) == 200


def test_run_failing_job_exits_1_and_summary_says_failed(tmp_path):
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "fine"
cmd = ["echo", "all good"]

[[job]]
id = "broken"
queue = "other"
cmd = ["sh", "-c", "echo 'about to fail'; echo 'it broke' >&2; exit 3"]
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1, result.stdout + result.stderr
    jobs = stream(result.stdout)
    assert texts(jobs["broken"], "!") == ["it broke"]
    assert texts(jobs["broken"], "#")[-1].startswith("failed: exited with code 3 after ")
    rows = summary(result.stdout)
    assert (rows["broken"]["state"], rows["broken"]["exit"]) == ("failed", "3")
    assert (rows["fine"]["state"], rows["fine"]["exit"]) == ("ok", "0")


def test_run_logs_under_the_state_dir_it_is_given(tmp_path):
    path = job_file(tmp_path, '[[job]]\nid = "one"\ncmd = ["echo", "hi"]\n')
    state = tmp_path / "state"
    result = subprocess.run([sys.executable, "-m", "pq_tui", "run", str(path)], cwd=REPO,
                            env={**_env(), "PQ_TUI_STATE_DIR": str(state)},
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    [session] = (state / "runs").iterdir()
    assert f"logs: {session}" in result.stdout
    assert [text for stream, text in read_log(str(session / "one.1.log"))
            if stream == "out"] == ["hi"]


def test_run_writes_a_log_file_per_job_with_every_line(tmp_path):
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "writer"
cmd = ["sh", "-c", "for i in $(seq 1 50); do echo \\"out $i\\"; done; echo 'err 1' >&2"]

[[job]]
id = "other"
queue = "b"
cmd = ["printf", "x\\ny\\n"]
""")
    log_dir = tmp_path / "logs"
    result = pq("run", "--log-dir", log_dir, path)
    assert result.returncode == 0, result.stdout + result.stderr
    logs = sorted(p.name for p in log_dir.iterdir())
    assert logs == ["other.1.log", "writer.1.log"]

    writer = list(read_log(str(log_dir / "writer.1.log")))
    assert [text for stream_, text in writer if stream_ == "out"] == [f"out {i}" for i in range(1, 51)]
    assert [text for stream_, text in writer if stream_ == "err"] == ["err 1"]
    other = list(read_log(str(log_dir / "other.1.log")))
    assert [text for stream_, text in other if stream_ == "out"] == ["x", "y"]
    # ...and the same lines were streamed.
    assert len(texts(stream(result.stdout)["writer"], "|")) == 50


COLOURED_JOB = r"""
[[job]]
id = "painter"
cwd = {cwd}
cmd = ["printf", "\\033[32mgreen\\033[0m plain \\033]0;title\\007end\\n"]

[[job]]
id = "failer"
queue = "b"
cwd = {cwd}
cmd = ["sh", "-c", "echo oops >&2; exit 1"]
"""


def test_color_never_writes_no_escape_at_all(tmp_path):
    path = job_file(tmp_path, COLOURED_JOB.format(cwd=toml_str(tmp_path)))
    result = pq("run", "--color", "never", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1
    assert "\x1b" not in result.stdout + result.stderr
    # The job's own colour is taken out of the stream, not its text...
    assert texts(stream(result.stdout)["painter"], "|") == ["green plain end"]
    # ...and the log file keeps the output as the job wrote it.
    logged = [text for s, text in read_log(str(tmp_path / "logs" / "painter.1.log")) if s == "out"]
    assert logged == ["\x1b[32mgreen\x1b[0m plain \x1b]0;title\x07end"]


def test_color_always_paints_even_into_a_pipe(tmp_path):
    path = job_file(tmp_path, COLOURED_JOB.format(cwd=toml_str(tmp_path)))
    result = pq("run", "--color", "always", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1
    assert "\x1b[" in result.stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert re.search(r"^failer +! oops$", plain, re.MULTILINE), plain


def test_color_auto_into_a_pipe_is_plain(tmp_path):
    path = job_file(tmp_path, COLOURED_JOB.format(cwd=toml_str(tmp_path)))
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert "\x1b" not in result.stdout


# -- bad input -----------------------------------------------------------------------------------


def three_mistakes(tmp_path: Path) -> tuple[Path, Path, list]:
    """A file with three mistakes, and one good job that would create a marker file."""
    marker = tmp_path / "marker"
    path = job_file(tmp_path, f"""\
[[job]]
id = "one"
cmd = ["touch", {toml_str(marker)}]
timout = "5s"

[[job]]
id = "two"
cmd = 42

[[job]]
id = "three"
cmd = "echo hi"
on_failure = "stop"

[[job]]
id = "good"
cwd = {toml_str(tmp_path)}
cmd = ["touch", {toml_str(marker)}]
""", name="mistakes.toml")
    expected = [
        (4, 'job "one"', '"timout"'),
        (8, 'job "two"', '"cmd"'),
        (13, 'job "three"', '"on_failure"'),
    ]
    return path, marker, expected


@pytest.mark.parametrize("command", ["run", "check"])
def test_bad_input_reports_every_mistake_and_runs_nothing(tmp_path, command):
    path, marker, expected = three_mistakes(tmp_path)
    log_dir = tmp_path / "logs"
    extra = ["--log-dir", log_dir] if command == "run" else []
    result = pq(command, *extra, path)
    assert result.returncode == 2
    assert result.stdout == ""  # nothing about jobs, no summary
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    for line, (number, job, key) in zip(lines, expected):
        assert line.startswith(f"pq-tui: {path}:{number}: {job}: "), line
        assert key in line
    assert "Traceback" not in result.stderr
    assert not marker.exists()
    assert not log_dir.exists()


@pytest.mark.parametrize("command", ["run", "check"])
def test_missing_file_is_bad_input(tmp_path, command):
    missing = tmp_path / "nope.toml"
    result = pq(command, "--log-dir", tmp_path / "logs", missing) if command == "run" else pq(command, missing)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [f"pq-tui: {missing}: file not found"]


def test_invalid_toml_is_bad_input_with_position(tmp_path):
    path = job_file(tmp_path, '[[job]]\nid = "x"\ncmd = "echo\n')
    result = pq("check", path)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"pq-tui: {path}:3:") and "invalid TOML" in line


def test_bad_option_is_a_usage_error(tmp_path):
    path = job_file(tmp_path, '[[job]]\ncmd = "true"\n')
    result = pq("run", "--kill-grace", "soon", path)
    assert result.returncode == 2
    assert "--kill-grace" in result.stderr and "Traceback" not in result.stderr


def test_the_consoles_engine_options_need_embedded(tmp_path):
    path = job_file(tmp_path, '[[job]]\ncmd = "true"\n')
    for option in (["--log-dir", tmp_path / "logs"], ["--kill-grace", "1"]):
        result = pq(*option, path)
        assert result.returncode == 2
        assert result.stderr.startswith("pq-tui: --log-dir and --kill-grace are for --embedded;")
    assert not (tmp_path / "logs").exists()


# -- check ---------------------------------------------------------------------------------------


def test_check_prints_what_would_run_and_starts_nothing(tmp_path):
    marker = tmp_path / "marker"
    workdir = tmp_path / "not-made-yet"
    path = job_file(tmp_path, f"""
[defaults]
queue = "build"
cwd = {toml_str(workdir)}
create_cwd = true
timeout = "45m"

[[job]]
id = "make-marker"
cmd = ["touch", {toml_str(marker)}]

[[job]]
id = "shout"
queue = "talk"
env = {{ WHO = "world" }}
cmd = "echo hello {{WHO}} > {toml_str(marker)[1:-1]}"
cwd = {toml_str(tmp_path)}
""")
    result = pq("check", path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "[build] make-marker  (timeout 45m)"
    assert lines[1] == f"    cmd: touch {marker}"
    assert lines[2] == f"    cwd: {workdir}  (does not exist: made when the job starts, create_cwd = true)"
    assert lines[3] == "[talk] shout  (timeout 45m)"
    # the final command: {WHO} expanded, a string run through the shell
    assert re.fullmatch(rf"    cmd: /bin/\w+ -c: echo hello world > {re.escape(str(marker))}", lines[4])
    assert lines[5] == f"    cwd: {tmp_path}"
    assert "2 job(s) in 2 lane(s): build, talk; nothing was started" in result.stdout
    assert not marker.exists()
    assert not workdir.exists()


def test_check_for_another_host_says_where_its_cwds_are_and_looks_at_none_here(tmp_path):
    path = job_file(tmp_path, """
[[job]]
id = "here-missing"
cmd = "make {JOBS_THERE}"
cwd = "src/firmware"

[[job]]
id = "absolute"
cmd = ["ls", "-l", "a b"]
cwd = "/srv/nowhere-here"

[[job]]
id = "home"
cmd = "true"
""")
    result = pq("check", "--host", "pi4", path)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines()[:9] == [
        "[default] here-missing",
        "    cmd: shell: make {JOBS_THERE}",
        "    cwd: ~/src/firmware on pi4 (a relative cwd is the remote user's home's)",
        "[default] absolute",
        "    cmd: ls -l 'a b'",
        "    cwd: /srv/nowhere-here on pi4",
        "[default] home",
        "    cmd: shell: true",
        "    cwd: the home directory on pi4",
    ]
    several = pq("check", "--host", "pi4,jetson", path)
    assert (several.returncode, several.stderr) == (
        2, "pq-tui: --host pi4,jetson: check takes one host\n")


def test_check_says_how_a_job_is_retried(tmp_path):
    path = job_file(tmp_path, """
[defaults]
retries = 2
retry_delay = "10s"

[[job]]
id = "flaky"
cmd = "true"

[[job]]
id = "stubborn"
cmd = "true"
retries = 5
retry_delay = "3m"
on_failure = "pause"

[[job]]
id = "once"
cmd = "true"
retries = 0
""")
    result = pq("check", path)
    assert result.returncode == 0, result.stderr
    headers = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert headers == [
        "[default] flaky  (retries 2 after 10s, 20s)",
        "[default] stubborn  (retries 5 after 3m, 5m, 5m, ..., pauses the lane on failure)",
        "[default] once",
    ]


def test_check_unknown_variable_names_the_job_and_the_variable(tmp_path):
    path = job_file(tmp_path, f"""\
[[job]]
id = "fine"
cmd = "echo ok"
cwd = {toml_str(tmp_path)}

[[job]]
id = "typo"
cmd = "echo {{NO_SUCH_VARIABLE_PQ}}"
cwd = {toml_str(tmp_path)}
""")
    result = pq("check", path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f'pq-tui: {path}:6: job "typo": ')
    assert "{NO_SUCH_VARIABLE_PQ}" in line


def test_run_refuses_an_unknown_variable_before_starting_anything(tmp_path):
    # `run` is all or nothing too: the good job in another lane must not run.
    marker = tmp_path / "marker"
    path = job_file(tmp_path, f"""\
[[job]]
id = "good"
queue = "a"
cmd = ["touch", {toml_str(marker)}]
cwd = {toml_str(tmp_path)}

[[job]]
id = "typo"
queue = "b"
cmd = ["echo", "{{NO_SUCH_VARIABLE_PQ}}"]
cwd = {toml_str(tmp_path)}
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f'pq-tui: {path}:7: job "typo": ') and "{NO_SUCH_VARIABLE_PQ}" in line
    assert not marker.exists()
    assert not (tmp_path / "logs").exists()


# -- Ctrl-C --------------------------------------------------------------------------------------


class Running:
    """`pq-tui run` in the background, with its stdout read line by line."""

    def __init__(self, *args) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pq_tui", "run", "--color", "never", *map(str, args)],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list = []
        self._queue: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.tree: list = []

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for_line(self, pattern: str) -> str:
        while True:
            try:
                line = self._queue.get(timeout=TIMEOUT)
            except queue.Empty:
                pytest.fail(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines))
            if line is None:
                pytest.fail(f"output ended before {pattern!r}:\n" + "\n".join(self.lines)
                            + self.proc.stderr.read())
            self.lines.append(line)
            if re.search(pattern, line):
                return line

    def collect_tree(self, at_least: int) -> list:
        """The job processes: children of pq-tui and their descendants."""
        me = psutil.Process(self.proc.pid)
        # The sleeps are forked before the job says "up", but give exec a moment to show.
        for _ in range(200):
            self.tree = [p for child in me.children() for p in (child, *child.children(recursive=True))]
            if len(self.tree) >= at_least:
                return self.tree
            time.sleep(0.05)
        pytest.fail(f"expected {at_least} job processes, found {self.tree}")

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=TIMEOUT)
        while True:
            line = self._queue.get(timeout=TIMEOUT)
            if line is None:
                break
            self.lines.append(line)
        return code, "\n".join(self.lines) + "\n", self.proc.stderr.read()

    def survivors(self) -> list:
        alive = []
        for proc in self.tree:
            try:
                # is_running() also compares creation times: a reused pid is not a survivor.
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    def cleanup(self) -> None:
        """Whatever the test's outcome, leave nothing running behind."""
        if self.proc.poll() is None:
            self.proc.kill()
        for proc in self.survivors():
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)
        self.proc.stdout.close()
        self.proc.stderr.close()


def interrupt_file(tmp_path: Path, script: str) -> tuple[Path, Path]:
    marker = tmp_path / "queued-ran"
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "sleeper"
cmd = ["sh", "-c", {toml_str(script)}]

[[job]]
id = "queued"
cmd = ["touch", {toml_str(marker)}]
""")
    return path, marker


def assert_interrupted(code: int, out: str, err: str, marker: Path, running: Running) -> None:
    assert code == 130, out + err
    assert "Traceback" not in err
    assert "pq-tui: interrupted" in out
    rows = summary(out)
    assert rows["sleeper"]["state"] == "killed"
    assert rows["sleeper"]["exit"] != "0"
    assert rows["queued"]["state"] == "removed"
    assert not marker.exists()
    assert running.survivors() == []


def test_ctrl_c_kills_the_running_tree_and_removes_the_queue(tmp_path):
    path, marker = interrupt_file(tmp_path, "sleep 100 & sleep 100 & echo up; wait")
    running = Running("--log-dir", tmp_path / "logs", path)
    try:
        running.wait_for_line(r"^sleeper +# started, pid \d+$")
        running.wait_for_line(r"^sleeper +\| up$")
        tree = running.collect_tree(at_least=3)  # sh and its two sleeps
        running.interrupt()
        code, out, err = running.finish()
        assert_interrupted(code, out, err, marker, running)
        assert len(tree) >= 3
        assert re.search(r"^sleeper +# killed after ", out, re.MULTILINE), out
    finally:
        running.cleanup()


def test_ctrl_c_kills_a_job_that_ignores_sigterm_after_the_grace(tmp_path):
    path, marker = interrupt_file(tmp_path, "trap '' TERM; sleep 100 & sleep 100 & echo up; wait")
    running = Running("--kill-grace", "0.5", "--log-dir", tmp_path / "logs", path)
    try:
        running.wait_for_line(r"^sleeper +\| up$")
        running.collect_tree(at_least=3)
        running.interrupt()
        code, out, err = running.finish()
        assert_interrupted(code, out, err, marker, running)
    finally:
        running.cleanup()


def test_second_ctrl_c_kills_at_once(tmp_path):
    # Default grace (5 s): the job ignores SIGTERM, so only the second Ctrl-C's SIGKILL ends it
    # early. The outcome says so: "killed (SIGKILL)" is the forced kill, not the grace running out.
    path, marker = interrupt_file(tmp_path, "trap '' TERM; sleep 100 & sleep 100 & echo up; wait")
    running = Running("--log-dir", tmp_path / "logs", path)
    try:
        running.wait_for_line(r"^sleeper +\| up$")
        running.collect_tree(at_least=3)
        running.interrupt()
        running.wait_for_line(r"^pq-tui: interrupted")
        running.interrupt()
        code, out, err = running.finish()
        assert_interrupted(code, out, err, marker, running)
        assert re.search(r"^sleeper +# killed \(SIGKILL\) after ", out, re.MULTILINE), out
        assert summary(out)["sleeper"]["exit"] == "SIGKILL"
    finally:
        running.cleanup()


def test_run_timeout_is_a_failure(tmp_path):
    path = job_file(tmp_path, f"""
[[job]]
id = "slow"
cwd = {toml_str(tmp_path)}
cmd = ["sleep", "100"]
timeout = 0.3
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert texts(stream(result.stdout)["slow"], "#")[-1] == "timed out after 0.3s and was killed"
    assert summary(result.stdout)["slow"]["state"] == "timed-out"


def test_run_retries_a_flaky_job_and_only_its_last_attempt_counts(tmp_path):
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}
retries = 2
retry_delay = 0

[[job]]
id = "flaky"
cmd = "test -e marker || (touch marker; exit 1)"

[[job]]
id = "broken"
cmd = ["sh", "-c", "exit 3"]
retries = 1
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1, result.stdout + result.stderr
    jobs = stream(result.stdout)
    assert texts(jobs["flaky"], "#")[1] == "exited with code 1; attempt 2/3 in 0s"
    assert texts(jobs["broken"], "#")[1] == "exited with code 3; attempt 2/2 in 0s"
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines[lines.index("") + 2:-1]]
    assert [row[:4] for row in rows] == [
        ["flaky", "default", "ok", "2/3"], ["broken", "default", "failed", "2/2"]]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "broken.1.log", "broken.2.log", "flaky.1.log", "flaky.2.log"]


def test_the_state_column_shows_the_attempt_and_when_the_next_one_starts():
    from pq_tui.cli.output import attempt_state

    assert attempt_state("ok", {}) == "ok"
    assert attempt_state("running", {"attempt": 2, "attempts": 3}) == "running 2/3"
    waiting = {"attempt": 1, "attempts": 3, "retry-at": 1000.0}
    assert attempt_state("retrying", waiting, now=996.5) == "retrying 2/3 in 4s"
    assert attempt_state("retrying", waiting, now=910.0) == "retrying 2/3 in 1:30"
    assert attempt_state("retrying", waiting, now=1001.0) == "retrying 2/3 in 0s"
    assert attempt_state("waiting", {"waiting-for": ["build", "configure"]}) == \
        "waiting for build, configure"
    assert attempt_state("waiting", {"waiting-for": ["a", "b", "c", "d", "e"]}) == \
        "waiting for a, b, c and 2 more"


# -- run: slots and dependencies -----------------------------------------------------------------


def test_run_sets_a_lanes_slots_from_the_file_and_starts_jobs_after_their_dependencies(tmp_path):
    # "left" and "right" each wait for the other's marker: only two slots let both end.
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}
queue = "pair"

[lanes.pair]
parallel = 2

[[job]]
id = "after-both"
cmd = "echo last"
after = ["left", "right"]

[[job]]
id = "left"
cmd = "touch left; while [ ! -e right ]; do sleep 0.02; done"

[[job]]
id = "right"
cmd = "touch right; while [ ! -e left ]; do sleep 0.02; done"
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 0, result.stdout + result.stderr
    notes = [(match["id"], match["text"]) for match in map(STREAM_LINE.match,
                                                           result.stdout.splitlines())
             if match and match["mark"] == "#"]
    # "after-both" starts only once both have ended ok, whatever order they end in.
    ends = [i for i, (job, text) in enumerate(notes) if job != "after-both" and text[:3] == "ok "]
    [start] = [i for i, (job, text) in enumerate(notes)
               if job == "after-both" and text.startswith("started, pid ")]
    assert len(ends) == 2 and start > max(ends), result.stdout
    assert {job: row["state"] for job, row in summary(result.stdout).items()} == {
        "left": "ok", "right": "ok", "after-both": "ok"}


def test_run_skips_the_dependents_of_a_failed_job_and_exits_1(tmp_path):
    path = job_file(tmp_path, f"""
[defaults]
cwd = {toml_str(tmp_path)}

[[job]]
id = "build"
cmd = "exit 2"

[[job]]
id = "test"
queue = "other"
cmd = "touch ran"
after = ["build"]

[[job]]
id = "deploy"
cmd = "touch ran"
after = "test"

[[job]]
id = "lint"
queue = "other"
cmd = "true"
""")
    result = pq("run", "--log-dir", tmp_path / "logs", path)
    assert result.returncode == 1, result.stdout + result.stderr
    jobs = stream(result.stdout)
    assert texts(jobs["test"], "#") == [
        "skipped (not started: it waits for 'build', which failed)"]
    assert texts(jobs["deploy"], "#") == [
        "skipped (not started: it waits for 'test', which was skipped ('build' did not end ok))"]
    rows = summary(result.stdout)
    assert {job: (row["state"], row["exit"], row["duration"]) for job, row in rows.items()} == {
        "build": ("failed", "2", rows["build"]["duration"]), "test": ("skipped", "-", "-"),
        "deploy": ("skipped", "-", "-"), "lint": ("ok", "0", rows["lint"]["duration"])}
    lines = result.stdout.splitlines()
    assert lines[-3:] == [
        "test: skipped (not started: it waits for 'build', which failed)",
        "deploy: skipped (not started: it waits for 'test', which was skipped ('build' did not "
        "end ok))",
        f"logs: {tmp_path / 'logs'}",
    ]
    assert not (tmp_path / "ran").exists()
