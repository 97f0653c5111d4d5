"""Benchmark 1 probe: N jobs running /bin/true through one lane, via the library.

    python lib_true.py pq|engine N LOG_DIR

Prints the seconds from the first push until the lane is idle again (the interpreter's start
and imports are not counted: this is the per-job overhead of the library itself).
"""

import asyncio
import os
import sys
import time


def with_process_queue(count: int, log_dir: str) -> float:
    from pq_tui import ProcessQueue

    queue = ProcessQueue(None, os.environ, log_dir=log_dir)
    try:
        start = time.perf_counter()
        for i in range(count):
            queue.push_back(i, {"cmd": ["/bin/true"]})
        queue.start()
        queue.wait_for_empty()
        elapsed = time.perf_counter() - start
    finally:
        queue.close()
    return elapsed


def with_engine(count: int, log_dir: str) -> float:
    from pq_tui.core import Engine

    async def main() -> float:
        engine = Engine(log_dir)
        start = time.perf_counter()
        for i in range(count):
            engine.push(i, {"cmd": ["/bin/true"]}, "default")
        await engine.wait_idle()
        elapsed = time.perf_counter() - start
        failed = [job.id for job in engine.jobs() if job.data.get("exit") != 0]
        if failed:
            raise SystemExit(f"{len(failed)} jobs did not exit 0")
        await engine.shutdown(kill=True)
        return elapsed

    return asyncio.run(main())


if __name__ == "__main__":
    kind, count, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seconds = (with_process_queue if kind == "pq" else with_engine)(count, log_dir)
    print(f"{seconds:.6f}")
