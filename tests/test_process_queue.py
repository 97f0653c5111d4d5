"""The sync facade, with real processes (sh, sleep, seq, printf, python -c)."""

from __future__ import annotations

import copy
import os
import shutil
import sys
import threading
import time

import psutil
import pytest

import pq_tui
from pq_tui import ProcessHandler, ProcessQueue
from pq_tui import process_queue as module

PY = sys.executable
BASE_ENV = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8", "BASE_VAR": "base"}
WAIT = 15  # seconds: a generous bound for things that take milliseconds

# A Python child that ignores SIGTERM (the grace period must escalate to SIGKILL), says so on
# stdout, then sleeps.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(60)"
)


class Recorder(ProcessHandler):
    """Records every callback in ``queue.calls[id]``, and wakes ``queue.changed`` waiters."""

    def __init__(self, queue: "RecordingQueue", job_id) -> None:
        self.queue = queue
        self.id = job_id

    def _note(self, kind, value) -> None:
        with self.queue.changed:
            self.queue.calls.setdefault(self.id, []).append((kind, value))
            self.queue.changed.notify_all()

    def on_start(self, pid):
        self._note("start", pid)

    def on_stdout(self, line):
        self._note("out", line)

    def on_stderr(self, line):
        self._note("err", line)

    def on_exit(self, data):
        self._note("exit", data)


class RecordingQueue(ProcessQueue):
    handler_class = Recorder

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict = {}
        self.changed = threading.Condition()
        self.handler_args: dict = {}

    def create_process_handler(self, id, process, env_dict):
        self.handler_args[id] = (process, env_dict)
        return self.handler_class(self, id)

    def lines(self, job_id, kind="out"):
        with self.changed:
            return [value for k, value in self.calls.get(job_id, []) if k == kind]

    def wait_for_line(self, job_id, text, kind="out"):
        with self.changed:
            assert self.changed.wait_for(lambda: text in self.lines(job_id, kind), WAIT), (
                f"job {job_id!r} did not write {text!r}"
            )


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def make_queue(tmp_path, root):
    queues = []

    def make(cls=RecordingQueue, env=BASE_ENV, *, start=True, **options):
        options.setdefault("kill_grace", 0.5)
        options.setdefault("log_dir", str(tmp_path / "logs"))
        queue = cls(str(root), env, **options)
        queues.append(queue)
        if start:
            queue.start()
        return queue

    yield make
    for queue in queues:
        queue.close()


def run_one(queue, job_id, data):
    queue.push_back(job_id, data)
    return queue.wait_for_task_finished(job_id)


def survivors(pgid, pids=()):
    """Live (non-zombie) processes of the process group ``pgid`` or among ``pids``."""
    alive = []
    for proc in psutil.process_iter():
        try:
            member = proc.pid in pids or os.getpgid(proc.pid) == pgid
            if member and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (psutil.Error, ProcessLookupError):
            pass
    return alive


def blocked_in_thread(function, *args):
    """Call ``function`` in a thread and check that it blocks; returns (thread, result list)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(function(*args)), daemon=True)
    thread.start()
    thread.join(0.1)  # not synchronisation: a window in which it must not return
    assert thread.is_alive() and result == []
    return thread, result


# -- the README example and the basics ------------------------------------------------------------


def test_readme_example(capsys, root, monkeypatch):
    monkeypatch.chdir(root)

    class Printer(ProcessHandler):
        def on_stdout(self, line):
            print("out:", line)

        def on_exit(self, data):
            print("exit:", data["exit"], data["status"])

    class Queue(ProcessQueue):
        def create_process_handler(self, id, process, env_dict):
            return Printer()

    q = Queue(None, os.environ)
    try:
        q.start()
        q.push_back("hello", {"cmd": ["sh", "-c", "echo hello from {_ID_}"]})
        q.push_back("count", {"cmd": "seq 1 3", "timeout": 10})
        print(q.wait_for_task_finished("count")["state"])
        q.wait_for_empty()
        q.stop()
    finally:
        q.close()
        shutil.rmtree(q.log_dir)
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "out: hello from hello",
        "exit: 0 ok",
        "out: 1",
        "out: 2",
        "out: 3",
        "exit: 0 ok",
        "2",
    ]
    assert err == ""


def test_importable_from_the_package():
    assert pq_tui.ProcessQueue is module.ProcessQueue
    assert pq_tui.ProcessHandler is module.ProcessHandler


def test_default_handler_does_nothing_and_logs_are_kept(root):
    q = ProcessQueue(str(root), BASE_ENV)  # log_dir: a fresh temporary directory
    try:
        q.start()
        data = run_one(q, 1, {"cmd": ["printf", "a\\nb\\n"]})
        q.stop()
        q.close()
        assert data["state"] == 2 and "warnings" not in data
        assert os.path.basename(q.log_dir).startswith("pq-tui-")
        assert os.path.dirname(data["log"]) == q.log_dir
        with open(data["log"]) as f:  # kept after stop() and close()
            assert ["O a", "O b"] == [line.rstrip("\n") for line in f if line.startswith("O ")]
    finally:
        q.close()
        shutil.rmtree(q.log_dir)


def test_jobs_run_one_at_a_time_in_push_order(make_queue, root):
    q = make_queue()
    for job_id in ["a", 2, "c", 4]:
        q.push_back(job_id, {"cmd": ["sh", "-c", "echo {_ID_} >> order.txt; sleep 0.05"]})
    q.wait_for_empty()
    assert (root / "order.txt").read_text().split() == ["a", "2", "c", "4"]
    results = [q.wait_for_task_finished(job_id) for job_id in ["a", 2, "c", 4]]
    assert all(data["state"] == 2 and data["exit"] == 0 for data in results)
    for before, after in zip(results, results[1:]):
        assert before["time-end"] <= after["time-start"]


def test_before_start_pushes_only_queue(make_queue):
    q = make_queue(start=False)
    q.push_back(1, {"cmd": ["true"]})
    assert q.query_items()[1]["state"] == 0
    q.start()
    assert q.wait_for_task_finished(1)["state"] == 2


# -- data and environment --------------------------------------------------------------------------


def test_data_is_copied_in_and_out(make_queue):
    q = make_queue()
    data = {"cmd": ["sh", "-c", "echo $X"], "env": {"X": "1"}, "extra": [1, 2]}
    original = copy.deepcopy(data)
    result = run_one(q, "job", data)
    assert data == original  # the caller's dict (and what it holds) is untouched
    assert result["extra"] == [1, 2] and result["state"] == 2
    result["extra"].append(3)
    result["final"]["env"]["X"] = "changed"
    again = q.wait_for_task_finished("job")
    assert again["extra"] == [1, 2] and again["final"]["env"]["X"] == "1"
    assert q.lines("job") == ["1"]


def test_query_items_returns_copies_of_running_and_queued(make_queue):
    q = make_queue()
    q.push_back("done", {"cmd": ["true"]})
    q.wait_for_task_finished("done")
    q.push_back("run", {"cmd": ["sleep", "30"]})
    q.push_back("q1", {"cmd": ["true"]})
    q.push_back("q2", {"cmd": ["true"]})
    q.wait_for_process("run")
    items = q.query_items()
    assert list(items) == ["run", "q1", "q2"]  # finished jobs are not listed
    assert [items[k]["state"] for k in items] == [1, 0, 0]
    items["q1"]["cmd"].append("x")
    assert q.query_items()["q1"]["cmd"] == ["true"]
    q.stop(kill=True)
    assert q.query_items() == {}


def test_the_base_environment_is_copied_and_not_mutated(make_queue):
    env = {**BASE_ENV, "FOO": "from-base"}
    original = dict(env)
    q = make_queue(env=env)
    env["FOO"] = "changed-after-construction"
    data = run_one(q, 1, {"cmd": ["sh", "-c", "echo $FOO $JOBVAR"], "env": {"JOBVAR": "job"}})
    assert q.lines(1) == ["from-base job"]
    assert env == {**original, "FOO": "changed-after-construction"}
    assert "JOBVAR" not in env and "_ID_" not in env
    assert data["final"]["env"]["FOO"] == "from-base"


def test_none_environment_means_os_environ(make_queue, monkeypatch):
    monkeypatch.setenv("PQ_TUI_TEST_VARIABLE", "from-os-environ")
    q = make_queue(env=None)
    data = run_one(q, 1, {"cmd": ["sh", "-c", "echo $PQ_TUI_TEST_VARIABLE"]})
    assert q.lines(1) == ["from-os-environ"]
    assert data["final"]["env"]["PATH"] == os.environ["PATH"]


def test_create_process_handler_gets_id_data_and_env(make_queue):
    q = make_queue()
    run_one(q, 7, {"cmd": ["true"], "env": {"J": "j"}, "tag": "t"})
    process, env = q.handler_args[7]
    assert process["tag"] == "t" and process["cmd"] == ["true"]
    assert env["BASE_VAR"] == "base" and env["J"] == "j" and env["_ID_"] == "7"


def test_handler_class_name_is_in_handler_env(make_queue):
    class MyHandler(Recorder):
        pass

    class MyQueue(RecordingQueue):
        handler_class = MyHandler

    q = make_queue(MyQueue)
    data = run_one(q, 1, {"cmd": ["sh", "-c", "echo $_HANDLER_"]})
    assert q.lines(1) == ["MyHandler"]
    assert data["final"]["env"]["_HANDLER_"] == "MyHandler"

    plain = make_queue(ProcessQueue)
    assert run_one(plain, 1, {"cmd": ["true"]})["final"]["env"]["_HANDLER_"] == "ProcessHandler"


def test_a_handler_of_the_wrong_type_fails_the_job(make_queue):
    class Wrong(ProcessQueue):
        def create_process_handler(self, id, process, env_dict):
            return object()

    data = run_one(make_queue(Wrong), 1, {"cmd": ["true"]})
    assert data["state"] == -1 and "ProcessHandler" in data["error"] and "pid" not in data


# -- expansion and the working directory -----------------------------------------------------------


def test_expansion_in_cmd(make_queue, root):
    q = make_queue()
    cmd = ["printf", "%s|", "{_ID_}", "{FOO}", "{{literal}}", "{EMPTY}", "{BASE_VAR}", "{_WORKDIR_}"]
    data = run_one(q, "x1", {"cmd": cmd, "env": {"FOO": "foo", "EMPTY": ""}})
    assert data["state"] == 2
    expected = ["x1", "foo", "{literal}", "base", str(root)]  # "{EMPTY}" expanded to "": dropped
    assert data["final"]["cmd"] == ["printf", "%s|", *expected]
    assert q.lines("x1") == ["|".join(expected) + "|"]


def test_expansion_of_a_string_cmd_runs_through_the_shell(make_queue):
    q = make_queue()
    data = run_one(q, 5, {"cmd": "echo {_ID_} {{}} $BASE_VAR", "env": {}})
    assert q.lines(5) == ["5 {} base"]
    assert data["final"]["cmd"][1:] == ["-c", "echo 5 {} $BASE_VAR"]


def test_unknown_variable_fails_naming_it(make_queue):
    q = make_queue()
    data = run_one(q, 1, {"cmd": ["echo", "{NO_SUCH_VARIABLE_HERE}"]})
    assert data["state"] == -1 and "pid" not in data
    assert "NO_SUCH_VARIABLE_HERE" in data["error"]
    cwd_data = run_one(q, 2, {"cmd": ["true"], "cwd": "{ALSO_UNKNOWN}"})
    assert cwd_data["state"] == -1 and "ALSO_UNKNOWN" in cwd_data["error"]
    assert run_one(q, 3, {"cmd": ["true"]})["state"] == 2  # the queue goes on


def test_cwd_forms(make_queue, root, tmp_path):
    q = make_queue()
    cases = {
        "none": (None, root),
        "relative": ("a/b", root / "a" / "b"),
        "list": (["l", "{_ID_}", ""], root / "l" / "list"),
        "absolute": (str(tmp_path / "abs"), tmp_path / "abs"),
    }
    for job_id, (cwd, expected) in cases.items():
        data = run_one(q, job_id, {"cmd": ["pwd"], "cwd": cwd, "create_cwd": True})
        assert data["state"] == 2, data.get("error")
        assert data["final"]["cwd"] == str(expected)
        assert expected.is_dir()  # created when missing, as asked
        assert q.lines(job_id) == [str(expected)]
    # The original did not document making a missing cwd: without create_cwd it is an error.
    data = run_one(q, "missing", {"cmd": ["pwd"], "cwd": "not/made"})
    assert data["state"] == -1 and "does not exist; set create_cwd = true" in data["error"]
    assert not (root / "not").exists()


def test_cwd_that_is_a_file_is_an_error(make_queue, root):
    (root / "a-file").write_text("")
    q = make_queue()
    data = run_one(q, 1, {"cmd": ["pwd"], "cwd": "a-file"})
    assert data["state"] == -1 and "not a directory" in data["error"]
    assert "pid" not in data and q.lines(1) == []


def test_root_dir_none_is_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    q = ProcessQueue(None, BASE_ENV, log_dir=str(tmp_path / "logs"))
    try:
        q.start()
        data = run_one(q, 1, {"cmd": ["pwd"]})
    finally:
        q.close()
    assert data["final"]["cwd"] == str(tmp_path) and data["state"] == 2


def test_missing_command(make_queue):
    q = make_queue()
    data = run_one(q, 1, {"cmd": ["pq-tui-no-such-command-anywhere", "arg"]})
    assert data["state"] == -1 and data["status"] == "failed"
    assert "pq-tui-no-such-command-anywhere" in data["error"]
    assert data["time-end"] >= data["time-start"]
    assert data["final"]["cmd"] == ["pq-tui-no-such-command-anywhere", "arg"]
    assert data["final"]["cwd"] and data["final"]["env"]["_ID_"] == "1"
    assert q.wait_for_process(1) == (None, data)
    assert [kind for kind, _ in q.calls[1]] == ["exit"]  # on_exit, never on_start

    no_cmd = run_one(q, 2, {"cwd": "x"})
    assert no_cmd["state"] == -1 and "cmd" in no_cmd["error"] and "time-end" in no_cmd
    assert set(no_cmd["final"]) == {"cmd", "cwd", "env"}


def test_timeout(make_queue):
    q = make_queue()
    started = time.monotonic()
    data = run_one(q, 1, {"cmd": ["sleep", "30"], "timeout": 0.3})
    assert time.monotonic() - started < 10
    assert data["state"] == -1 and data["timed-out"] is True
    assert "timed out" in data["error"]
    assert survivors(data["pid"], [data["pid"]]) == []


# -- waiting, removing, killing --------------------------------------------------------------------


def test_wait_for_process_started_removed_unknown(make_queue):
    q = make_queue()
    q.push_back("run", {"cmd": ["sleep", "30"]})
    q.push_back("queued", {"cmd": ["true"]})
    pid, data = q.wait_for_process("run", 0.01)  # the interval is accepted, and unused
    assert isinstance(pid, int) and data["pid"] == pid and data["state"] == 1
    assert psutil.Process(pid).name() == "sleep"
    data["pid"] = -1
    assert q.query_items()["run"]["pid"] == pid  # a copy was returned

    thread, result = blocked_in_thread(q.wait_for_process, "queued")  # not started yet
    removed = q.remove("queued")
    thread.join(WAIT)
    assert result == [(None, removed)] and removed["state"] == -1

    assert q.wait_for_process("never-pushed") == (None, None)
    q.stop(kill=True)


def test_remove_or_kill_queued(make_queue):
    q = make_queue()
    q.push_back("run", {"cmd": ["sleep", "30"]})
    q.push_back("queued", {"cmd": ["sh", "-c", "echo should not run"]})
    data = q.remove_or_kill("queued", _sleep_interval_fsec=0.01)
    assert data["state"] == -1 and data["status"] == "removed" and "pid" not in data
    assert list(q.query_items()) == ["run"]
    q.stop(kill=True)
    assert "queued" not in q.calls  # it never ran, so no handler was made


def test_remove_or_kill_running_kills_the_whole_tree(make_queue):
    q = make_queue()
    # Two children, one of them ignoring SIGTERM: the grace period must escalate to SIGKILL.
    script = f"sleep 60 & echo $!; {PY} -c \"{STUBBORN}\" & wait"
    q.push_back("tree", {"cmd": ["sh", "-c", script]})
    q.push_back("next", {"cmd": ["true"]})
    pid, _ = q.wait_for_process("tree")
    q.wait_for_line("tree", "ready")
    children = {int(q.lines("tree")[0])} | {p.pid for p in psutil.Process(pid).children(True)}
    assert len(children) >= 2

    data = q.remove_or_kill("tree")
    assert data["killed"] is True and data["state"] == -1 and data["status"] == "killed"
    assert survivors(pid, children | {pid}) == []
    assert q.wait_for_task_finished("next")["state"] == 2  # the lane goes on
    assert q.remove_or_kill("tree") == data  # finished: its data
    assert q.remove_or_kill("unknown") is None


def test_remove_running_returns_none_and_leaves_it(make_queue):
    q = make_queue()
    q.push_back(1, {"cmd": ["sleep", "0.3"]})
    q.wait_for_process(1)
    assert q.remove(1) is None
    assert q.remove("unknown") is None
    data = q.wait_for_task_finished(1)
    assert data["state"] == 2 and "killed" not in data
    assert q.remove(1) is None  # finished


def test_wait_for_task_finished(make_queue):
    q = make_queue()
    q.push_back(1, {"cmd": ["sh", "-c", "exit 3"]})
    q.push_back(2, {"cmd": ["true"]})
    q.wait_for_empty()
    first = q.wait_for_task_finished(1)  # long finished: results are kept
    assert first["state"] == -1 and first["exit"] == 3 and "code 3" in first["error"]
    assert q.wait_for_task_finished(2)["state"] == 2
    assert q.wait_for_task_finished("unknown") is None


def test_wait_for_empty_counts_jobs_pushed_meanwhile(make_queue):
    class Chain(Recorder):
        def on_exit(self, data):
            super().on_exit(data)
            if self.id < 3:
                self.queue.push_back(self.id + 1, {"cmd": ["sleep", "0.05"]})

    class ChainQueue(RecordingQueue):
        handler_class = Chain

    q = make_queue(ChainQueue)
    q.push_back(1, {"cmd": ["sleep", "0.05"]})
    q.wait_for_empty()
    assert sorted(q.calls) == [1, 2, 3]  # jobs pushed from callbacks ran before it returned
    assert all(q.calls[i][-1][1]["state"] == 2 for i in (1, 2, 3))
    assert q.query_items() == {}


def test_push_back_and_remove_from_a_callback(make_queue):
    class Pusher(Recorder):
        def on_start(self, pid):
            super().on_start(pid)
            if self.id == "first":
                self.queue.push_back("second", {"cmd": ["true"]})
                self.queue.push_back("third", {"cmd": ["true"]})
                self.queue.pushed = list(self.queue.query_items())
                self.queue.removed = self.queue.remove("third")
                try:
                    self.queue.push_back("second", {"cmd": ["true"]})
                except ValueError as exc:
                    self.queue.duplicate = exc

    class PusherQueue(RecordingQueue):
        handler_class = Pusher

    q = make_queue(PusherQueue)
    q.push_back("first", {"cmd": ["true"]})
    q.wait_for_empty()
    assert q.pushed == ["first", "second", "third"]
    assert q.removed["status"] == "removed"
    assert isinstance(q.duplicate, ValueError)
    assert q.wait_for_task_finished("second")["state"] == 2
    assert "warnings" not in q.wait_for_task_finished("first")


def test_blocking_wait_in_a_callback_raises_and_is_recorded(make_queue):
    class Blocker(Recorder):
        def on_start(self, pid):
            super().on_start(pid)
            try:
                self.queue.wait_for_empty()
            except RuntimeError as exc:
                self.queue.caught = exc
            self.queue.wait_for_task_finished(self.id)  # let this one reach the engine

    class BlockerQueue(RecordingQueue):
        handler_class = Blocker

    q = make_queue(BlockerQueue)
    q.push_back(1, {"cmd": ["true"]})
    q.push_back(2, {"cmd": ["true"]})
    started = time.monotonic()
    q.wait_for_empty()
    assert time.monotonic() - started < 10
    assert isinstance(q.caught, RuntimeError) and "wait_for_empty" in str(q.caught)
    for job_id in (1, 2):
        data = q.wait_for_task_finished(job_id)
        assert data["state"] == 2  # the job and the queue went on
        assert any("on_start raised RuntimeError" in w for w in data["warnings"])


def test_every_blocking_method_refuses_on_the_queue_thread(make_queue):
    class Refuser(Recorder):
        def on_exit(self, data):
            refused = []
            for name, args in [
                ("wait_for_process", (1,)), ("remove_or_kill", (1,)), ("stop", ()),
                ("wait_for_task_finished", (1,)), ("wait_for_empty", ()), ("close", ()),
            ]:
                try:
                    getattr(self.queue, name)(*args)
                except RuntimeError:
                    refused.append(name)
            self.queue.refused = refused

    class RefuserQueue(RecordingQueue):
        handler_class = Refuser

    q = make_queue(RefuserQueue)
    assert run_one(q, 1, {"cmd": ["true"]})["state"] == 2
    assert len(q.refused) == 6
    assert run_one(q, 2, {"cmd": ["true"]})["state"] == 2  # the queue still works


def test_a_raising_callback_is_recorded_and_the_queue_goes_on(make_queue):
    class Raiser(Recorder):
        def on_stdout(self, line):
            super().on_stdout(line)
            if line == "2":
                raise ValueError("boom on 2")

        def on_exit(self, data):
            super().on_exit(data)
            raise KeyError("exit boom")

    class RaiserQueue(RecordingQueue):
        handler_class = Raiser

    q = make_queue(RaiserQueue)
    q.push_back(1, {"cmd": ["seq", "1", "4"]})
    q.push_back(2, {"cmd": ["true"]})
    q.wait_for_empty()
    data = q.wait_for_task_finished(1)
    assert data["state"] == 2
    assert q.lines(1) == ["1", "2", "3", "4"]  # the lines after the failing one still came
    warnings = data["warnings"]
    assert any("on_output raised ValueError: boom on 2" in w for w in warnings)
    assert any("on_exit raised KeyError" in w for w in warnings)
    assert q.wait_for_task_finished(2)["state"] == 2


def test_every_output_line_in_order(make_queue):
    q = make_queue()
    data = run_one(q, "seq", {"cmd": ["seq", "1", "5000"]})
    assert data["state"] == 2
    assert q.lines("seq") == [str(i) for i in range(1, 5001)]

    script = (
        "import sys\n"
        "for i in range(3000):\n"
        "    print('o', i, flush=i % 7 == 0)\n"
        "    print('e', i, file=sys.stderr, flush=i % 5 == 0)\n"
        "sys.stdout.write('no newline at the end')\n"
    )
    data = run_one(q, "both", {"cmd": [PY, "-c", script]})
    assert data["state"] == 2 and data["stderr"] == 3000
    assert q.lines("both") == [f"o {i}" for i in range(3000)] + ["no newline at the end"]
    assert q.lines("both", "err") == [f"e {i}" for i in range(3000)]
    kinds = [kind for kind, _ in q.calls["both"]]
    assert kinds[0] == "start" and kinds[-1] == "exit"


# -- stop, start, close ----------------------------------------------------------------------------


def test_stop_waits_for_the_running_job_and_releases_queued_waiters(make_queue, root):
    q = make_queue()
    q.push_back("run", {"cmd": ["sh", "-c", "sleep 0.4; echo finished > done.txt"]})
    q.push_back("queued", {"cmd": ["true"]})
    q.wait_for_process("run")
    waiter, result = blocked_in_thread(q.wait_for_task_finished, "queued")
    q.stop()
    assert (root / "done.txt").read_text() == "finished\n"  # stop() waited for it
    assert q.query_items() == {}
    data = q.wait_for_task_finished("run")
    assert data["state"] == 2 and "killed" not in data
    waiter.join(WAIT)
    assert not waiter.is_alive()
    assert result[0]["status"] == "removed" and result[0]["state"] == -1


def test_stop_kill_kills_the_running_job(make_queue):
    q = make_queue()
    q.push_back("stubborn", {"cmd": [PY, "-c", STUBBORN]})
    q.push_back("queued", {"cmd": ["true"]})
    pid, _ = q.wait_for_process("stubborn")
    q.wait_for_line("stubborn", "ready")
    started = time.monotonic()
    q.stop(kill=True)
    assert time.monotonic() - started < 10
    data = q.wait_for_task_finished("stubborn")
    assert data["killed"] is True and data["state"] == -1
    assert survivors(pid, [pid]) == []
    assert q.wait_for_task_finished("queued")["status"] == "removed"


def test_a_job_pushed_while_stopping_only_queues(make_queue):
    class FollowUp(Recorder):
        def on_exit(self, data):
            super().on_exit(data)
            if self.id == "first":
                self.queue.push_back("follow-up", {"cmd": ["sleep", "30"]})

    class FollowUpQueue(RecordingQueue):
        handler_class = FollowUp

    q = make_queue(FollowUpQueue)
    q.push_back("first", {"cmd": ["sleep", "30"]})
    q.wait_for_process("first")
    started = time.monotonic()
    q.stop(kill=True)
    assert time.monotonic() - started < 10  # it did not wait for the follow-up's sleep 30
    assert q.wait_for_task_finished("first")["killed"] is True
    assert [(k, v["state"]) for k, v in q.query_items().items()] == [("follow-up", 0)]
    q.start()
    pid, _ = q.wait_for_process("follow-up")
    assert q.remove_or_kill("follow-up")["killed"] is True
    assert survivors(pid, [pid]) == []


def test_start_after_stop(make_queue):
    q = make_queue()
    assert run_one(q, 1, {"cmd": ["true"]})["state"] == 2
    q.stop()
    q.push_back(2, {"cmd": ["true"]})
    assert q.query_items()[2]["state"] == 0  # stopped: pushes just queue
    q.start()
    assert q.wait_for_task_finished(2)["state"] == 2
    q.stop()
    q.start()
    assert run_one(q, 1, {"cmd": ["sh", "-c", "echo again"]})["state"] == 2  # a finished id reruns
    assert q.lines(1) == ["again"]


def test_duplicate_and_bad_ids_raise_in_the_caller(make_queue):
    q = make_queue(start=False)
    q.push_back(1, {"cmd": ["sleep", "30"]})
    with pytest.raises(ValueError, match="already queued"):
        q.push_back(1, {"cmd": ["true"]})
    q.push_back("1", {"cmd": ["true"]})  # a str id is another id
    with pytest.raises(TypeError):
        q.push_back(1.5, {"cmd": ["true"]})
    with pytest.raises(TypeError):
        q.push_back(3, ["not", "a", "dict"])
    q.start()
    q.wait_for_process(1)
    with pytest.raises(ValueError, match="already running"):
        q.push_back(1, {"cmd": ["true"]})
    assert q.remove_or_kill(1)["killed"] is True
    q.wait_for_empty()
    assert list(q.calls) == [1, "1"]


def test_context_manager_and_close(root, tmp_path):
    with RecordingQueue(str(root), BASE_ENV, log_dir=str(tmp_path / "logs")) as q:
        q.push_back(1, {"cmd": ["sh", "-c", "echo in context"]})
        q.wait_for_empty()
        thread = q._thread
        assert thread.is_alive() and thread.daemon
    assert not thread.is_alive()
    assert q.lines(1) == ["in context"]
    with pytest.raises(RuntimeError, match="closed"):
        q.push_back(2, {"cmd": ["true"]})
    with pytest.raises(RuntimeError, match="closed"):
        q.wait_for_empty()
    q.close()  # idempotent


def test_leaving_the_context_on_an_exception_kills(root, tmp_path):
    with pytest.raises(KeyError):
        with RecordingQueue(str(root), BASE_ENV, log_dir=str(tmp_path), kill_grace=0.5) as q:
            q.push_back(1, {"cmd": ["sleep", "60"]})
            pid, _ = q.wait_for_process(1)
            raise KeyError("the caller failed")
    assert q.calls[1][-1][1]["killed"] is True
    assert survivors(pid, [pid]) == []


def test_close_kills_what_runs(make_queue):
    q = make_queue()
    q.push_back(1, {"cmd": ["sleep", "60"]})
    pid, _ = q.wait_for_process(1)
    q.close()
    assert survivors(pid, [pid]) == []
    assert q.calls[1][-1][1]["killed"] is True


def test_retries_in_the_process_data(make_queue, root):
    queue = make_queue()
    flaky = {"cmd": ["sh", "-c", "test -e marker || (touch marker; exit 1)"], "retries": 2,
             "retry_delay": 0}
    final = run_one(queue, "flaky", flaky)
    assert (final["state"], final["attempt"], final["attempts"]) == (2, 2, 3)
    # Each attempt is a run with its own handler: a start and an exit apiece.
    kinds = [kind for kind, _value in queue.calls["flaky"]]
    assert kinds == ["start", "exit", "start", "exit"]
    assert [value["status"] for kind, value in queue.calls["flaky"] if kind == "exit"] == [
        "failed", "ok"]


# -- after: jobs that wait for others ---------------------------------------------------------------

GATE = {"cmd": ["sh", "-c", "while [ ! -e go ]; do sleep 0.01; done"]}


def test_a_waiting_job_is_listed_and_starts_in_its_place_once_met(make_queue, root):
    q = make_queue()
    q.push_back("gate", GATE)
    q.push_back("after", {"cmd": ["sh", "-c", "echo after >> order.txt"], "after": ["gate"]})
    q.push_back("plain", {"cmd": ["sh", "-c", "echo plain >> order.txt"]})
    q.wait_for_process("gate")
    items = q.query_items()
    assert list(items) == ["gate", "after", "plain"]
    assert [(items[k]["state"], items[k]["status"]) for k in items] == [
        (1, "running"), (0, "waiting"), (0, "queued")]
    assert items["after"]["waiting-for"] == ["gate"]
    (root / "go").touch()
    q.wait_for_empty()
    # One lane, one job at a time, in push order: the met job did not lose its place.
    assert (root / "order.txt").read_text().split() == ["after", "plain"]
    final = q.wait_for_task_finished("after")
    assert (final["state"], final["status"]) == (2, "ok") and "waiting-for" not in final
    assert q.calls["after"][0][0] == "start"


def test_a_failed_dependency_skips_its_dependents_in_the_process_data(make_queue):
    q = make_queue(start=False)
    q.push_back("bad", {"cmd": ["false"]})
    q.push_back("child", {"cmd": ["true"], "after": "bad"})
    q.push_back("grandchild", {"cmd": ["true"], "after": ["child"]})
    q.push_back("other", {"cmd": ["true"]})
    q.start()
    q.wait_for_empty()
    child = q.wait_for_task_finished("child")
    grandchild = q.wait_for_task_finished("grandchild")
    assert (child["state"], child["status"]) == (-1, "skipped")
    assert child["error"] == "not started: it waits for 'bad', which failed"
    assert grandchild["error"] == (
        "not started: it waits for 'child', which was skipped ('bad' did not end ok)")
    assert (child["skipped-for"], grandchild["skipped-for"]) == ("bad", "bad")
    for data in (child, grandchild):
        assert "pid" not in data and "exit" not in data and "time-start" not in data
        assert data["time-queue"] <= data["time-end"]
    assert q.wait_for_process("child") == (None, child)  # ended without a process
    assert "child" not in q.calls and "grandchild" not in q.calls  # never started: no handler
    assert q.wait_for_task_finished("other")["state"] == 2
    # Pushed after its dependency failed: skipped at once.
    q.push_back("late", {"cmd": ["true"], "after": ["bad"]})
    assert q.wait_for_task_finished("late")["status"] == "skipped"


def test_removing_a_job_skips_what_waits_for_it_and_unknown_names_raise(make_queue):
    q = make_queue(start=False)
    q.push_back("first", {"cmd": ["true"]})
    q.push_back("second", {"cmd": ["true"], "after": ["first"]})
    assert q.remove_or_kill("first")["status"] == "removed"
    assert q.wait_for_task_finished("second")["error"] == (
        "not started: it waits for 'first', which was removed")
    with pytest.raises(ValueError, match=r"^job 'x' waits for 'frist', which is not a job "
                                         r"\(did you mean 'first'\?\)$"):
        q.push_back("x", {"cmd": ["true"], "after": ["frist"]})
    assert q.query_items() == {}


def test_a_job_between_attempts_holds_the_lane_and_a_kill_ends_it(make_queue):
    q = make_queue()
    q.push_back("flaky", {"cmd": ["false"], "retries": 2, "retry_delay": 60})
    q.push_back("next", {"cmd": ["true"], "after": ["flaky"]})
    with q.changed:
        assert q.changed.wait_for(lambda: q.calls.get("flaky", [])[-1:] and
                                  q.calls["flaky"][-1][0] == "exit", WAIT)
    items = q.query_items()
    assert [(k, items[k]["state"], items[k]["status"]) for k in items] == [
        ("flaky", 1, "retrying"), ("next", 0, "waiting")]
    assert (items["flaky"]["attempt"], items["flaky"]["attempts"]) == (1, 3)
    data = q.remove_or_kill("flaky")
    assert (data["state"], data["status"], data["killed"]) == (-1, "killed", True)
    assert data["error"].startswith("killed while waiting to retry; the last attempt: ")
    assert q.wait_for_task_finished("next")["error"] == (
        "not started: it waits for 'flaky', which was killed")


def test_a_retried_dependency_is_waited_for_until_its_last_attempt(make_queue, root):
    q = make_queue()
    flaky = {"cmd": ["sh", "-c", "test -e marker || (touch marker; exit 1)"], "retries": 1,
             "retry_delay": 0}
    q.push_back("flaky", flaky)
    q.push_back("then", {"cmd": ["true"], "after": ["flaky"]})
    assert q.wait_for_task_finished("then")["state"] == 2
    assert q.wait_for_task_finished("flaky")["attempt"] == 2


def test_only_a_handler_method_of_its_own_is_called_for_each_job():
    # The engine skips the base class's do-nothing on_start and on_exit (and on_exit's copy of
    # the data); a method a subclass gives, or one set on the instance, is called.
    from pq_tui.core.job import does_nothing_at

    class Exits(ProcessHandler):
        def on_exit(self, data: dict) -> None:
            pass

    given = ProcessHandler()
    given.on_start = lambda pid: None  # type: ignore[method-assign]
    assert does_nothing_at(ProcessHandler(), "on_exit") and does_nothing_at(None, "on_exit")
    assert not does_nothing_at(Exits(), "on_exit") and does_nothing_at(Exits(), "on_start")
    assert not does_nothing_at(given, "on_start")
