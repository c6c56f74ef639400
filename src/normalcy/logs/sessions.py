"""Grouping parsed lines into the units that get scored: sessions or time windows.

- by identifier: every distinct match of a regex (HDFS ``blk_-?\\d+``) is a session; a line
  naming several ids belongs to each of them, a line naming none to no session;
- by time: windows of `window` seconds every `step` seconds from the first line's time
  (``step == window``: fixed windows; smaller: sliding, so a line is in several windows).
  A line without a readable time takes the time of the line before it.

Each group keeps its line indices in reading order, so its event sequence is the events of
those lines in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from normalcy.core.errors import DataError


@dataclass
class Groups:
    keys: list[str]
    lines: list[np.ndarray]       # indices into the records, per group, in reading order
    ungrouped: int = 0            # lines that fell in no group

    def __len__(self) -> int:
        return len(self.keys)

    def sequences(self, event_ids: np.ndarray) -> list[np.ndarray]:
        return [event_ids[idx] for idx in self.lines]


def by_identifier(contents: list[str], pattern: str) -> Groups:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"--group-by {pattern!r} is not a valid regex: {exc}") from None
    members: dict[str, list[int]] = {}
    ungrouped = 0
    for i, content in enumerate(contents):
        found = dict.fromkeys(m.group(0) for m in regex.finditer(content))
        if not found:
            ungrouped += 1
        for key in found:
            members.setdefault(key, []).append(i)
    if not members:
        raise DataError(f"no line matches the group pattern {pattern!r}")
    return Groups(list(members), [np.asarray(v, dtype=np.int64) for v in members.values()], ungrouped)


def by_time(times: list[float | None], window: float, step: float | None = None) -> Groups:
    step = window if step is None else step
    if not (window > 0 and 0 < step <= window):
        raise DataError(f"time windows need window > 0 and 0 < step <= window, got window={window}, step={step}")
    t = _filled_times(times)
    order = np.argsort(t, kind="stable")
    sorted_t = t[order]
    first, last = sorted_t[0], sorted_t[-1]
    starts = first + step * np.arange(int(np.floor((last - first) / step)) + 1)
    lo = np.searchsorted(sorted_t, starts, side="left")
    hi = np.searchsorted(sorted_t, starts + window, side="left")
    keys, lines = [], []
    for s, a, b in zip(starts, lo, hi):
        if b > a:
            keys.append(f"{s:.0f}")
            lines.append(np.sort(order[a:b]))
    return Groups(keys, lines, 0)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if m is None:
        raise DataError(f"duration {text!r} not understood; expected e.g. 60s, 5m, 1h or 1d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _filled_times(times: list[float | None]) -> np.ndarray:
    out = np.empty(len(times))
    last = None
    for i, value in enumerate(times):
        if value is not None:
            last = value
        out[i] = np.nan if last is None else last
    if np.isnan(out).all():
        raise DataError("time windows need line times, but no line had one: choose a --format whose header "
                        "holds a time (e.g. hdfs, bgl, syslog) or group by identifier with --group-by")
    # Lines before the first time take that first time.
    out[np.isnan(out)] = out[~np.isnan(out)][0]
    return out


def count_matrix(sequences: list[np.ndarray], vocab: np.ndarray) -> np.ndarray:
    """n_groups x (len(vocab) + 1) event counts; the last column counts events not in vocab.
    `vocab` must be sorted."""
    counts = np.zeros((len(sequences), len(vocab) + 1))
    for i, seq in enumerate(sequences):
        idx = encode(seq, vocab)
        np.add.at(counts[i], idx, 1)
    return counts


def encode(seq: np.ndarray, vocab: np.ndarray) -> np.ndarray:
    """Positions of events in the sorted vocab; len(vocab) for events outside it."""
    seq = np.asarray(seq, dtype=np.int64)
    pos = np.searchsorted(vocab, seq)
    pos = np.minimum(pos, len(vocab) - 1) if len(vocab) else np.zeros_like(seq)
    known = (vocab[pos] == seq) if len(vocab) else np.zeros(len(seq), dtype=bool)
    return np.where(known, pos, len(vocab))
