"""Benchmark 8 probe (issue 13): slots and dependencies, through the asyncio Engine.

    python sched.py slots N COUNT LOG_DIR   # COUNT x `sleep 0.05` in one lane of N slots
    python sched.py chain COUNT LOG_DIR     # COUNT x `true`, job i after job i-1, lane i % 4
    python sched.py plain COUNT LOG_DIR     # COUNT x `true` in one lane, no dependencies

Prints the seconds from the first push until the engine is idle again (the interpreter's start
and imports are not counted), after checking that every job ran and ended ok; then the CPU
seconds the engine's process took meanwhile (its jobs not counted): on a busy machine the wall
time swings with the load, the engine's own work much less.
"""

import asyncio
import sys
import time

CHAIN_LANES = 4


def jobs(kind: str, args: list) -> tuple:
    """(count, [(id, data, lane)], {lane: slots})."""
    if kind == "slots":
        slots, count = int(args[0]), int(args[1])
        return count, [(i, {"cmd": ["sleep", "0.05"]}, "one") for i in range(count)], {"one": slots}
    count = int(args[0])
    if kind == "plain":
        return count, [(i, {"cmd": ["true"]}, "one") for i in range(count)], {}
    return count, [(i, {"cmd": ["true"], **({"after": [i - 1]} if i else {})},
                    f"lane{i % CHAIN_LANES}") for i in range(count)], {}


def main(kind: str, args: list, log_dir: str) -> tuple:
    from pq_tui.core import Engine

    count, pushes, slots = jobs(kind, args)

    async def run() -> tuple:
        engine = Engine(log_dir)
        for lane, parallel in slots.items():
            engine.set_parallel(lane, parallel)
        start, cpu = time.perf_counter(), time.process_time()
        for job_id, data, lane in pushes:
            engine.push(job_id, data, lane)
        await engine.wait_idle()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        failed = [job.id for job in engine.jobs() if job.data.get("exit") != 0]
        if failed or len(engine.jobs()) != count:
            raise SystemExit(f"{len(failed)} of {len(engine.jobs())} jobs did not exit 0")
        await engine.shutdown(kill=True)
        return elapsed, cpu

    return asyncio.run(run())


if __name__ == "__main__":
    kind, *rest, log_dir = sys.argv[1:]
    print(*(f"{seconds:.6f}" for seconds in main(kind, rest, log_dir)))
