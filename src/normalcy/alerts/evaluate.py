"""Ranking quality against known verdicts: precision@k and NDCG, as expected over the orders a
ranking with tied scores can take (ties broken uniformly at random), so a ranker whose scores
tie (a raw severity, a constant) is judged by what it actually says, not by the input order."""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape or not y.size:
        raise DataError(f"labels and scores must be non-empty and of one length, got {y.size} and {s.size}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(s).all():
        raise DataError("scores must be finite")
    return y, s


def _expected_discounts(s: np.ndarray, discount_of_position: np.ndarray) -> np.ndarray:
    """Per item, the mean of `discount_of_position` (index 0 = rank 1) over the ranks its tie
    group occupies: the item's expected discount under random tie-breaking."""
    order = np.argsort(-s, kind="stable")
    sorted_scores = s[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(s)]
    cumulative = np.r_[0.0, np.cumsum(discount_of_position)]
    group_mean = (cumulative[ends] - cumulative[starts]) / (ends - starts)
    out = np.empty(len(s))
    out[order] = np.repeat(group_mean, ends - starts)
    return out


def precision_at_k(labels, scores, k: int) -> float:
    """Expected share of true alerts among the k highest scores (k capped at the number of
    alerts)."""
    y, s = _check(labels, scores)
    k = min(int(k), len(y))
    inside = _expected_discounts(s, (np.arange(len(y)) < k).astype(np.float64))
    return float(inside @ y / k)


def ndcg(labels, scores, k: int | None = None) -> float:
    """Expected normalised discounted cumulative gain of the ranking (binary gains, discount
    1 / log2(rank + 1)), over the first k ranks (None: all); 0 when no alert is true."""
    y, s = _check(labels, scores)
    n = len(y)
    k = n if k is None else min(int(k), n)
    discount = 1.0 / np.log2(np.arange(n) + 2.0)
    discount[k:] = 0.0
    ideal = discount[:int(y.sum())].sum()
    if ideal == 0:
        return 0.0
    return float(_expected_discounts(s, discount) @ y / ideal)
