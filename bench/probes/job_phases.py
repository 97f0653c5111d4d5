"""Issue 17 target 1's cause: where a job's time goes, pq-tui's library beside a bare loop.

    python job_phases.py pq|bare N LOG_DIR

pq: N jobs of /bin/true through one ProcessQueue lane, the engine's spawn and exit callbacks
timed. bare: the floor in Python, os.posix_spawn in a new session with stdout and stderr to
pipes, a pidfd waited for, then waitpid. Prints four numbers, medians in microseconds: a job's
whole time (first push to idle, over N), the spawn call, from the spawn's return to the exit
being seen, and from that exit to the next spawn (bare: the loop's bookkeeping, nearly none).

Why the spawn call takes longer in the engine than here (measured with perf's sched and
syscall tracepoints, `perf record -a -e sched:*,syscalls:sys_*_clone3,...`): the call is
mostly the child's, before its exec lets the parent go (glibc's vfork-like clone): a
sigaction per signal, setsid, the file actions, the exec up to the new memory. The bare loop's
child runs on the parent's CPU 71 % of the time; the engine's, whose thread is busier, on the
other CPU 98 % of the time, and a child there costs 40 to 45 us more (an idle vCPU to wake, an
exec on a cold CPU). Not the arguments (the engine's env and file actions in the bare loop
add 7 to 10 us), not the garbage collector, not the process's size or threads: the bare loop
inside the engine's process, between its runs, is as fast as alone.
"""

import os
import select
import statistics
import sys
import time

import lib_true  # beside this file


def with_process_queue(count: int, log_dir: str) -> tuple:
    import pq_tui.core.runner as runner

    marks = []  # ("spawn", started, returned) and ("exit", seen, None), in order
    spawn = runner.spawn

    def timed_spawn(*args, **kwargs):
        started = time.perf_counter()
        child = spawn(*args, **kwargs)
        marks.append(("spawn", started, time.perf_counter()))
        return child

    on_exited = runner.JobRunner._on_exited

    def timed_exit(self, *args, **kwargs):
        marks.append(("exit", time.perf_counter(), None))
        return on_exited(self, *args, **kwargs)

    runner.spawn = timed_spawn
    runner.JobRunner._on_exited = timed_exit
    whole = lib_true.with_process_queue(count, log_dir)  # the overhead group's own probe
    calls, lives, gaps = [], [], []
    exit_seen = returned = None
    for kind, at, until in marks:
        if kind == "spawn":
            if exit_seen is not None:
                gaps.append(at - exit_seen)
            calls.append(until - at)
            returned = until
        else:
            lives.append(at - returned)
            exit_seen = at
    return whole / count, calls, lives, gaps


def bare(count: int, _log_dir: str) -> tuple:
    env = dict(os.environ)
    calls, lives = [], []
    start = time.perf_counter()
    for _ in range(count):
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        at = time.perf_counter()
        pid = os.posix_spawn("/bin/true", ["/bin/true"], env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, out_write, 1), (os.POSIX_SPAWN_DUP2, err_write, 2)])
        returned = time.perf_counter()
        os.close(out_write)
        os.close(err_write)
        pidfd = os.pidfd_open(pid)
        select.select([pidfd], [], [])
        lives.append(time.perf_counter() - returned)
        os.waitpid(pid, 0)
        for fd in (pidfd, out_read, err_read):
            os.close(fd)
        calls.append(returned - at)
    return (time.perf_counter() - start) / count, calls, lives, [0.0]


if __name__ == "__main__":
    kind, count, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    per_job, calls, lives, gaps = (with_process_queue if kind == "pq" else bare)(count, log_dir)
    print(" ".join(f"{1e6 * value:.0f}" for value in (
        per_job, statistics.median(calls), statistics.median(lives), statistics.median(gaps))))
