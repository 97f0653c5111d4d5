"""Issue 17 target 3 probe: the library's per-line callbacks.

    python lib_lines.py pq|floor N LOG_DIR

pq: one job `seq 1 N` through a ProcessQueue whose handler's on_stdout counts each line; the
seconds from the push until the queue is empty, and the lines the callback saw (must be N).
floor: `seq 1 N > file` in LOG_DIR, timed the same way from here (the process start included in
both). Prints "seconds lines cpu_seconds" (the probe's CPU time over the same span).
"""

import os
import subprocess
import sys
import time


def with_process_queue(count: int, log_dir: str) -> tuple:
    from pq_tui import ProcessHandler, ProcessQueue

    seen = [0]

    class Counter(ProcessHandler):
        def on_stdout(self, line: str) -> None:
            seen[0] += 1

    class Queue(ProcessQueue):
        def create_process_handler(self, id, process, env_dict):
            return Counter()

    queue = Queue(None, os.environ, log_dir=log_dir)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        queue.push_back("flood", {"cmd": ["seq", "1", str(count)]})
        queue.start()
        queue.wait_for_empty()
        return time.perf_counter() - start, seen[0], time.process_time() - cpu
    finally:
        queue.close()


def floor(count: int, log_dir: str) -> tuple:
    start, cpu = time.perf_counter(), time.process_time()
    with open(os.path.join(log_dir, "seq.out"), "wb") as out:
        subprocess.run(["seq", "1", str(count)], stdout=out, check=True)
    return time.perf_counter() - start, count, time.process_time() - cpu


if __name__ == "__main__":
    kind, count, log_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    seconds, lines, cpu = (with_process_queue if kind == "pq" else floor)(count, log_dir)
    print(f"{seconds:.6f} {lines} {cpu:.6f}")
