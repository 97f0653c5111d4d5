"""Benchmark 10 probe (issue 15): the `grep` op of a running server, timed in a client that is
already connected (the interpreter's start and imports are not counted; `pq-tui grep`, timed by
run.py, has them).

    python grep_op.py PATTERN [-i]   # the server of $PQ_TUI_RUNTIME_DIR

Prints the seconds from the request until the first `hits` message, until the reply, and the
hits counted.
"""

import asyncio
import sys
import time

from pq_tui.client.client import Client
from pq_tui.wire.ops import Op


async def main(pattern: str, ignore_case: bool) -> None:
    client = await Client.open(start=False)
    try:
        await client.request(Op.PING)
        started = time.perf_counter()
        first = None
        hits = 0
        async for message in client.streamed(Op.GREP, pattern=pattern, ignore_case=ignore_case,
                                             max_hits=100_000):
            if message.get("type") == "hits":
                if first is None:
                    first = time.perf_counter() - started
                hits += len(message["hits"])
        print(first, time.perf_counter() - started, hits)
    finally:
        client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "-i" in sys.argv[2:]))
