"""The temporal model of alert streams: how expected an alert's type is, given what its stream
(the alerts of one host, user or detector) raised before.

A hierarchy of predictive distributions, one per context, as in CAR's context tree with a
hierarchical Pitman-Yor prior (Lin et al., CIKM 2018; Teh, 2006): the deepest context of an
alert is its stream and the last `order` types the stream raised (short range: within `gap`
seconds of each other); it backs off to the stream and fewer recent types, then to the
stream's whole history (long range: what this entity usually raises), then to all streams,
then to a uniform distribution over the known types plus one slot for a new type. Each level
is interpolated absolute discounting (Ney et al., 1994), the hierarchical Pitman-Yor model's
predictive rule with one table per type and concentration 0 (Teh, 2006), so it needs no
sampler and gives the same result on every run:

    P(w | u) = (max(c(u, w) - d, 0) + d * T(u) * P(w | parent(u))) / c(u)

with c(u, w) the count of type w after context u, c(u) their sum and T(u) the number of
distinct types seen after u; a context never seen gives its parent's distribution. An alert's
surprise is -log2 P(type | context).

Alerts are judged as they arrive (a replay in time order): an alert's surprise uses the counts
of the history the model was fitted on plus every earlier alert of the same batch, so the
hundredth repeat of a chatty host's alert is expected, while a type that keeps reaching new
hosts stays new to each. Scoring changes nothing in the model: the batch's counts are kept
apart and dropped. The history's own surprises, for the percentiles, are taken the same way
(each history alert against the alerts before it).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import ModelFileError

ROOT = ()


class StreamModel:
    """Counts per context; `replay` gives each alert's surprise on arrival.

    Types and streams are integer codes from 1; codes past the fitted vocabularies are new ones
    met in a batch, which `replay` counts like any other from their first alert on."""

    def __init__(self, order: int, gap: float | None, discount: float):
        self.order = order
        self.gap = gap
        self.discount = discount

    def fit(self, streams: np.ndarray, types: np.ndarray, times: np.ndarray, n_types: int
            ) -> tuple["StreamModel", np.ndarray, np.ndarray]:
        """Learn the history's counts; returns the model and each history alert's surprise and
        depth on arrival (see `replay`)."""
        self.n_types_ = int(n_types)
        self.nodes_: dict[tuple, list] = {}
        batch: dict[tuple, list] = {}
        bits, depth = self._replay(streams, types, times, batch)
        self._index({key: table for key, (_, _, table) in batch.items()})
        return self, bits, depth

    def replay(self, streams: np.ndarray, types: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per alert (input order): -log2 P(type | context) against the history and the batch's
        earlier alerts, and the depth of the deepest context that had seen the type (0: a type
        never seen, 1: seen, but never from this stream, 2: from this stream, 3 or more: after
        the same last 1, 2 ... types)."""
        return self._replay(streams, types, times, {})

    def _replay(self, streams, types, times, extra: dict[tuple, list]) -> tuple[np.ndarray, np.ndarray]:
        """The replay; `extra` collects the batch's counts per context as [total, types new to
        the context, {type: count}]."""
        n = len(types)
        bits, depth = np.empty(n), np.empty(n, dtype=np.int64)
        d, base = self.discount, 1.0 / (self.n_types_ + 1)
        recent: dict[int, deque] = {}
        last: dict[int, float] = {}
        for i in np.lexsort((np.arange(n), times)):  # time order, ties in input order
            s, w, t = int(streams[i]), int(types[i]), float(times[i])
            history = recent.setdefault(s, deque(maxlen=self.order))
            if self.gap is not None and s in last and t - last[s] > self.gap:
                history.clear()
            last[s] = t
            context = (s, *reversed(history))
            p, seen = base, 0
            for level in range(len(context) + 1):
                key = context[:level]
                total, distinct, c = self._counts(key, w, extra)
                if not total:
                    break
                p = (max(c - d, 0.0) + d * distinct * p) / total
                if c:
                    seen = level + 1
            bits[i], depth[i] = -np.log2(p), seen
            for level in range(len(context) + 1):
                key = context[:level]
                entry = extra.get(key)
                if entry is None:
                    entry = extra[key] = [0, 0, {}]
                entry[0] += 1
                if w not in entry[2]:
                    node = self.nodes_.get(key)
                    entry[1] += node is None or w not in node[2]
                    entry[2][w] = 0
                entry[2][w] += 1
            history.append(w)
        return bits, depth

    def _counts(self, key: tuple, w: int, extra: dict[tuple, list]) -> tuple[int, int, int]:
        """(c(u), T(u), c(u, w)) of context u = key: the history's plus the batch's so far."""
        total, distinct, c = 0, 0, 0
        node = self.nodes_.get(key)
        if node is not None:
            total, distinct, table = node
            c = table.get(w, 0)
        more = extra.get(key)
        if more is not None:
            total += more[0]
            distinct += more[1]
            c += more[2].get(w, 0)
        return total, distinct, c

    # --- the counts ------------------------------------------------------------------------
    def _index(self, counts: dict[tuple, dict[int, int]]) -> None:
        """Per context: total count, number of distinct types and the counts by type."""
        self.nodes_ = {key: (sum(table.values()), len(table), table) for key, table in counts.items()}

    def state(self) -> dict[str, np.ndarray]:
        """One int64 array per context length: rows of (stream, recent types ..., type, count),
        the most recent type first; the root's rows are (type, count)."""
        arrays = {}
        for length in range(self.order + 2):
            rows = [(*key, w, c) for key, (_, _, table) in self.nodes_.items() if len(key) == length
                    for w, c in table.items()]
            arrays[f"sequence.counts.{length}"] = np.array(rows, dtype=np.int64).reshape(-1, length + 2)
        return arrays

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], order: int, gap: float | None, discount: float,
                   n_types: int, n_streams: int) -> "StreamModel":
        model = cls(order, gap, discount)
        model.n_types_ = n_types
        expect_arrays(arrays, {f"sequence.counts.{k}": (None, k + 2) for k in range(order + 2)})
        counts: dict[tuple, dict[int, int]] = {}
        for length in range(order + 2):
            table = arrays[f"sequence.counts.{length}"]
            first_type = 1 if length else 0
            if table.dtype.kind not in "iu" or (table[:, -1] < 1).any() or (table[:, :-1] < 1).any() \
                    or (table[:, first_type:-1] > n_types).any() or (length and (table[:, 0] > n_streams).any()):
                raise ModelFileError(f"model state: sequence counts of context length {length} are out of range")
            for row in table.tolist():
                *key, w, c = row
                counts.setdefault(tuple(key), {})[w] = c
        if n_types and ROOT not in counts:
            raise ModelFileError("model state: the sequence model has no counts over all streams")
        model._index(counts)
        return model
