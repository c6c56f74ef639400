"""Progress for long steps, on stderr: a live bar when stderr is a terminal, and otherwise a
plain line every LOG_EVERY seconds (and at the end), so a job whose output goes to a log file
or CI still says how far it got."""

from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")
LOG_EVERY = 30.0
_enabled: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """True/False forces progress output on/off; None shows a bar on a terminal and log lines
    otherwise."""
    global _enabled
    _enabled = enabled


def progress(iterable: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    if _enabled is False:
        return iterable
    if _enabled or sys.stderr.isatty():
        return tqdm(iterable, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr, dynamic_ncols=True)
    return _logged(iterable, desc, unit, total)


def _logged(iterable: Iterable[T], desc: str, unit: str, total: int | None) -> Iterator[T]:
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    start = last = time.monotonic()
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY:
            last = now
            eta = f", about {(now - start) / done * (total - done):.0f} s left" if total else ""
            print(f"{desc}: {_count(done, total, unit)}, {now - start:.0f} s{eta}", file=sys.stderr, flush=True)
    if last != start:  # said something before: say it finished
        print(f"{desc}: done, {_count(done, total, unit)} in {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)


def _count(done: int, total: int | None, unit: str) -> str:
    if total:
        return f"{done}/{total} {unit} ({100 * done / total:.0f}%)"
    return f"{done} {unit}"
