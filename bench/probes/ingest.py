"""Benchmark 2 probe: one job printing `seq 1 N` through the engine.

    python ingest.py N LOG_DIR [--untimed] [--pty]

Prints "seconds stdout_lines_in_log_file cpu_seconds": the seconds from the push until the job has finished
(its log file closed), then the count of stdout lines in its log file (counted afterwards, not
timed), then the probe's CPU seconds over the same span (steadier than wall time on a busy
machine; the imports are left out of both, as --untimed imports the log writer early).
--untimed: the log without its time records (issue 14), the baseline they are measured against.
--pty: the job on a pseudo-terminal (issue 14's PTY jobs), to set beside the pipe.
"""

import asyncio
import sys
import time


async def main(count: int, log_dir: str, pty: bool) -> tuple:
    from pq_tui.core import Engine

    engine = Engine(log_dir)
    start = time.perf_counter()
    cpu = time.process_time()
    engine.push("flood", {"cmd": ["seq", "1", str(count)], "pty": pty}, "default")
    await engine.wait_idle()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    job = engine.get("flood")
    if job.data.get("exit") != 0:
        raise SystemExit(f"the job failed: {job.data.get('error')}")
    await engine.shutdown(kill=True)
    return elapsed, job.log_path, cpu


def count_stdout_lines(path: str) -> int:
    lines = 0
    with open(path, "rb") as f:
        for raw in f:
            if raw.startswith(b"O "):
                lines += 1
    return lines


def leave_out_time_records() -> None:
    from pq_tui.core.logfile import LogWriter

    write_lines = LogWriter.write_lines
    LogWriter.write_lines = lambda self, stream, lines, when=None: write_lines(self, stream, lines)


if __name__ == "__main__":
    if "--untimed" in sys.argv[3:]:
        leave_out_time_records()
    seconds, path, cpu = asyncio.run(main(int(sys.argv[1]), sys.argv[2], "--pty" in sys.argv[3:]))
    print(f"{seconds:.6f} {count_stdout_lines(path)} {cpu:.6f}")
