"""argparse helpers every command's parser uses. Only the standard library: `pq-tui --version`
and `--help` load no more than this."""

from __future__ import annotations

import argparse
import math
from typing import Any, Callable


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def number_parser(convert: Callable[[str], Any], what: str, minimum: float = 0
                  ) -> Callable[[str], Any]:
    """An argparse type: ``convert(text)``, at least ``minimum``; NaN and infinities refused (a
    NaN grace period would never end)."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected {what} ({minimum:g} or more), got {text!r}")
        return value

    return parse
