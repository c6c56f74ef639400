"""Does the score grow with severity? Figures for graded labels ("Are anomaly scores telling
the whole story?"): the Spearman rank correlation between score and grade, the AUROC between
each pair of adjacent grades (the higher grade as positives), and the AUROC of every graded
item (grade > 0) and of the top grade against grade 0."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from normalcy.core import metrics
from normalcy.core.errors import DataError


def severity_figures(scores, grades) -> dict:
    """scores: one anomaly score per item; grades: its severity, 0 = normal (any ordered
    numbers). Returns spearman, auroc_top_vs_0 (the largest grade against 0),
    auroc_any_vs_0 (grade > 0 against 0) and adjacent: one entry per pair of consecutive
    grades present, {"low", "high", "n_low", "n_high", "auroc"}."""
    scores, grades = np.asarray(scores, dtype=np.float64), np.asarray(grades, dtype=np.float64)
    if scores.shape != grades.shape or scores.ndim != 1:
        raise DataError(f"scores and grades must be two 1-D arrays of one length, got {scores.shape} and {grades.shape}")
    if not (np.isfinite(scores).all() and np.isfinite(grades).all()):
        raise DataError("scores and grades must be finite")
    levels = np.unique(grades)
    if len(levels) < 2 or levels[0] != 0:
        raise DataError(f"graded figures need grade 0 and at least one higher grade; got grades {levels.tolist()}")
    normal = grades == 0

    def auroc(low, high):
        keep = (grades == low) | (grades == high) if high is not None else np.ones(len(grades), bool)
        return metrics.auroc((grades[keep] > low).astype(int), scores[keep])

    adjacent = [{"low": float(lo), "high": float(hi), "n_low": int((grades == lo).sum()),
                 "n_high": int((grades == hi).sum()), "auroc": auroc(lo, hi)}
                for lo, hi in zip(levels[:-1], levels[1:])]
    return {"n_items": len(scores), "n_normal": int(normal.sum()),
            "spearman": _spearman(scores, grades),
            "auroc_top_vs_0": auroc(0.0, levels[-1]), "auroc_any_vs_0": auroc(0.0, None),
            "adjacent": adjacent}


def _spearman(scores: np.ndarray, grades: np.ndarray) -> float | None:
    """None for constant scores, where the correlation is undefined."""
    if np.ptp(scores) == 0:
        return None
    return float(spearmanr(scores, grades).statistic)
