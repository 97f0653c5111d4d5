"""The floor for the pty bench: `seq 1 N` read by a bare Python loop, through a pipe and through a
pseudo-terminal, twice each, with no pq-tui at all.

    python bare_pty.py N [pipe|pty]

Prints one line per read: how, seconds, bytes, reads. Given pipe or pty, reads that way once and
prints "seconds lines cpu_seconds" as ingest.py does, for bench/run.py to set beside pq-tui.
"""

import errno
import os
import pty
import subprocess
import sys
import time


def drain(fd: int) -> tuple:
    total = reads = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # a pty's master reads EIO once the last slave is closed
            if exc.errno == errno.EIO:
                break
            raise
        if not chunk:
            break
        total += len(chunk)
        reads += 1
    os.close(fd)
    return total, reads


def read_once(count: str, on_pty: bool) -> str:
    start = time.perf_counter()
    cpu = time.process_time()
    reader, writer = pty.openpty() if on_pty else os.pipe()
    process = subprocess.Popen(["seq", "1", count], stdout=writer, stderr=writer,
                               start_new_session=True)
    os.close(writer)
    total, reads = drain(reader)
    process.wait()
    how = "pty" if on_pty else "pipe"
    seconds = time.perf_counter() - start
    if sys.argv[2:]:
        return f"{seconds:.6f} {count} {time.process_time() - cpu:.6f}"
    return f"{how} {seconds:.3f}s {total} bytes {reads} reads"


if __name__ == "__main__":
    if sys.argv[2:]:
        print(read_once(sys.argv[1], sys.argv[2] == "pty"))
        sys.exit()
    for on_pty in (False, True, False, True):
        print(read_once(sys.argv[1], on_pty))
