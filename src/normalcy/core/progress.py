"""Progress bars for long steps: on stderr, and by default only when stderr is a terminal, so
logs and CI output stay clean."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")
_enabled: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """True/False forces bars on/off; None shows them when stderr is a terminal."""
    global _enabled
    _enabled = enabled


def progress(iterable: Iterable[T], desc: str, unit: str = "it", total: int | None = None) -> Iterable[T]:
    shown = sys.stderr.isatty() if _enabled is None else _enabled
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not shown, leave=False,
                file=sys.stderr, dynamic_ncols=True)
