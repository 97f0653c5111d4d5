"""Benchmark 6 probe: load and validate a job file with pq_tui.jobs.jobfile (in-process seconds).

    python load_jobfile.py FILE.toml
"""

import sys
import time

if __name__ == "__main__":
    from pq_tui.jobs.jobfile import load_job_file

    start = time.perf_counter()
    specs = load_job_file(sys.argv[1])
    print(f"{time.perf_counter() - start:.6f} {len(specs)}")
