"""Grouping parsed lines into the units that get scored: sessions or time windows.

- by identifier: every distinct match of a regex (HDFS ``blk_-?\\d+``) is a session, named by
  it; a line naming several ids belongs to each of them, a line naming none to no session.
  The regex is the user's (or a model file's), so it runs within a time bound
  (`normalcy.logs.patterns`);
- by time: windows of `window` seconds every `step` seconds from the first line's time
  (``step == window``: fixed windows; smaller: sliding, so a line is in several windows), named
  by their start time ("2005-12-04 04:47:44"). A line without a readable time takes the time of
  the line before it. Windows without lines are not made.

Each group keeps its line indices in reading order, so its event sequence is the events of
those lines in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from normalcy.core.errors import DataError
from normalcy.logs.formats import time_name
from normalcy.logs.patterns import Pattern

# A line may fall in at most this many sliding windows (window / step).
MAX_OVERLAP = 1000
MIN_WINDOW = 0.001  # seconds: log times are no finer


@dataclass
class Groups:
    keys: list[str]
    lines: list[np.ndarray]       # indices into the records, per group, in reading order
    ungrouped: int = 0            # lines that fell in no group

    def __len__(self) -> int:
        return len(self.keys)

    def sequences(self, event_ids: np.ndarray) -> list[np.ndarray]:
        return [event_ids[idx] for idx in self.lines]


def by_identifier(contents: list[str], pattern: str | Pattern, where: Callable[[int], str] | None = None) -> Groups:
    """Sessions named by the matches of `pattern` in each line's content; `where(i)` names line
    i (e.g. "file:12") for errors."""
    regex = pattern if isinstance(pattern, Pattern) else Pattern(pattern, "--group-by")
    members: dict[str, list[int]] = {}
    ungrouped = 0
    for i, content in enumerate(contents):
        found = dict.fromkeys(regex.findall(content, lambda: where(i) if where else f"line {i + 1}"))
        if not found:
            ungrouped += 1
        for key in found:
            members.setdefault(key, []).append(i)
    if not members:
        raise DataError(f"no line matches the group pattern {regex.pattern!r}")
    return Groups(list(members), [np.asarray(v, dtype=np.int64) for v in members.values()], ungrouped)


def by_time(times: list[float | None], window: float, step: float | None = None) -> Groups:
    step = window if step is None else step
    if not (MIN_WINDOW <= window < float("inf") and 0 < step <= window):
        raise DataError(f"time windows need window >= {MIN_WINDOW:g} s and 0 < step <= window, got window={window}, "
                        f"step={step}")
    if window / step > MAX_OVERLAP:
        raise DataError(f"a step of {step:g} s puts each line in {window / step:.0f} windows of {window:g} s; at most "
                        f"{MAX_OVERLAP} are allowed: take a longer step")
    t = _filled_times(times)
    first = t.min()
    # Window k covers [first + k * step, first + k * step + window): a line at t is in the windows
    # k_last - d for d = 0, 1, ... while they still reach it.
    offset = t - first
    last_k = np.floor(offset / step).astype(np.int64)
    overlap = int(np.ceil(window / step))
    ks, idx = [], []
    for d in range(overlap):
        k = last_k - d
        inside = (k >= 0) & (offset < k * step + window)
        ks.append(k[inside])
        idx.append(np.flatnonzero(inside))
    ks, idx = np.concatenate(ks), np.concatenate(idx)
    order = np.lexsort((idx, ks))
    ks, idx = ks[order], idx[order]
    bounds = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1], True])
    keys = [time_name(first + ks[a] * step) for a in bounds[:-1]]
    return Groups(keys, [idx[a:b] for a, b in zip(bounds[:-1], bounds[1:])], 0)


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``2h``, ``1d`` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(text))
    if m is None:
        raise DataError(f"duration {text!r} not understood; expected e.g. 60s, 5m, 1h or 1d")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    if not 0 < seconds < float("inf"):
        raise DataError(f"duration {text!r} must be longer than 0 s")
    return seconds


def _filled_times(times: list[float | None]) -> np.ndarray:
    out = np.empty(len(times))
    last = None
    for i, value in enumerate(times):
        if value is not None:
            last = value
        out[i] = np.nan if last is None else last
    if np.isnan(out).all():
        raise DataError("time windows need line times, but no line had one: choose a --format whose header "
                        "holds a time (e.g. hdfs, bgl, syslog, apache-error) or group by identifier with --group-by")
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


def next_token_pairs(seqs, vocab: dict, window: int, predict_end: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (window, next token) pair of the encoded sequences: inputs (m x window), targets
    (m,), index of the sequence each pair comes from (m,). Token layout: 0..V-1 the vocabulary,
    V unseen, V+1 start/padding, V+2 end of sequence (only with `predict_end`)."""
    v = len(vocab)
    inputs, targets, owner = [], [], []
    for g, seq in enumerate(seqs):
        tokens = encode(seq, vocab)
        full = np.concatenate([np.full(window, v + 1), tokens, [v + 2] if predict_end else []])
        n = len(full) - window  # 0 for an empty sequence without an end token
        inputs.append(full[np.arange(n)[:, None] + np.arange(window)[None, :]])
        targets.append(full[window:])
        owner.append(np.full(n, g))
    return (np.concatenate(inputs).astype(np.int64), np.concatenate(targets).astype(np.int64),
            np.concatenate(owner))
