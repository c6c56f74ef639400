"""Calibration on labelled history: level weights and a threshold learned from past groups
whose anomalies are known, for the semantic detectors.

On logs where normal operation keeps bringing new templates (BGL), a new template is a failure
or a harmless novelty, and the ranking of the combined score is good while no label-free
threshold on it holds: the normal windows that bring templates of their own overlap the alerts
(docs/logs.md, "Unseen templates"). Where the past's anomalies are labelled, as operators'
incident records label them, the labels can say what the unseen-template part is worth at each
log level and where the threshold lies:

1. The labelled groups are split into `folds`. Each fold is scored by a detector fitted on the
   normal groups outside it, less those that `overlap` it (sliding windows share lines with
   their neighbours, which would show the fold's templates to the fit), so every group is
   scored as a new period would be, its unseen templates unseen.
2. From these out-of-fold parts (the model part and, per log level, the farthest unseen
   template: `SemanticDetector.level_parts`), the weight of each level is chosen from `grid` by
   coordinate ascent from 1 (a weight leaves 1 only where it raises the best F1), and the
   threshold is the one with the best F1 on the weighted out-of-fold scores.
3. The detector is fitted on all the normal groups with those weights; the threshold stays.

Only the labelled history is read; the data later scored is never.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import clone

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.results import Calibration
from normalcy.logs.semantic import SemanticDetector

LEVEL_WEIGHT_GRID = (0.25, 0.5, 1.0)
FOLDS = 10
MAX_ROUNDS = 10


def fit_with_history(detector: SemanticDetector, X, y, overlap: np.ndarray | None = None, folds: int = FOLDS,
                     seed: int = 0, grid: tuple[float, ...] = LEVEL_WEIGHT_GRID) -> SemanticDetector:
    """Fit `detector` on the normal groups of X (y: 1 = anomalous, 0 = normal) with
    `level_weights` and threshold learned from cross-fitted scores of all of X (module doc).
    `overlap[i, j]` (a boolean array or scipy sparse matrix, e.g. `shared_lines`): groups i and j
    share lines (None: none do). Returns the detector."""
    if not isinstance(detector, SemanticDetector):
        raise DataError(f"calibration on labelled history needs a semantic detector, got {type(detector).__name__}")
    X = list(X)
    y = np.asarray(y)
    n = len(X)
    if y.shape != (n,) or not np.isin(y, (0, 1)).all():
        raise DataError(f"history labels must be one 0 (normal) or 1 (anomalous) per group: {n} groups, "
                        f"labels of shape {y.shape} with values {np.unique(y)[:5].tolist()}")
    if not 2 <= folds <= n:
        raise DataError(f"history folds must be between 2 and the number of groups ({n}), got {folds}")
    if y.sum() == 0 or y.sum() == n:
        raise DataError(f"history needs normal and anomalous groups to learn from, got {int(y.sum())} anomalous "
                        f"of {n}")
    if overlap is None:
        overlap = sparse.identity(n, dtype=bool, format="csr")
    elif getattr(overlap, "shape", None) != (n, n):
        raise DataError(f"overlap must be a {n} x {n} matrix of which groups share lines, got shape "
                        f"{getattr(overlap, 'shape', None)}")
    normal = y == 0
    model = np.zeros(n)
    novelty: list[dict] = [{} for _ in range(n)]
    for fold in np.array_split(np.random.default_rng(seed).permutation(n), folds):
        near = np.asarray(overlap[np.sort(fold)].sum(axis=0)).ravel() > 0
        fit = np.setdiff1d(np.flatnonzero(normal & ~near), fold)
        if len(fit) < detector.min_groups:
            raise DataError(f"a history fold leaves {len(fit)} normal groups to fit on, {detector.name} needs "
                            f"{detector.min_groups}: give more groups or fewer folds")
        twin = clone(detector).set_params(level_weights=None)
        scored = twin.fit([X[i] for i in fit]).level_parts([X[i] for i in fold])
        model[fold] = scored[0]
        for i, parts in zip(fold, scored[1]):
            novelty[i] = parts
    weights = learn_level_weights(model, novelty, y, grid)
    scores = weighted_scores(model, novelty, weights)
    f1, threshold = metrics.f1_max(y, scores)
    detector.set_params(level_weights=weights or None).fit([X[i] for i in np.flatnonzero(normal)])
    shown = ", ".join(f"{k} x{v:g}" for k, v in sorted(weights.items())) or "none"
    detector.calibration_ = Calibration(
        "history", float(threshold), n, float(np.mean(scores[normal] >= threshold)), method=f"best F1 ({f1:.3f}) of {folds}-fold cross-fitted scores of "
        f"{int(y.sum())} anomalous and {int(normal.sum())} normal labelled groups; level weights: {shown}")
    detector.threshold_ = float(threshold)
    return detector


def shared_lines(lines: list[np.ndarray]) -> sparse.csr_matrix:
    """`overlap` for groups given as the indices of their lines: True where two share a line
    (sparse: sessions share few lines, windows only with their neighbours)."""
    sizes = [len(g) for g in lines]
    columns = np.concatenate(lines).astype(np.int64) if sum(sizes) else np.zeros(0, dtype=np.int64)
    incidence = sparse.csr_matrix((np.ones(len(columns)), (np.repeat(np.arange(len(lines)), sizes), columns)),
                                  shape=(len(lines), int(columns.max(initial=-1)) + 1))
    return (incidence @ incidence.T) > 0


def weighted_scores(model: np.ndarray, novelty: list[dict], weights: dict) -> np.ndarray:
    """The combined score of each group from its `level_parts` under level weights."""
    top = [max((weights.get(level, 1.0) * d for level, d in parts.items()), default=0.0) for parts in novelty]
    return np.asarray(model, dtype=np.float64) + np.array(top)


def learn_level_weights(model: np.ndarray, novelty: list[dict], y: np.ndarray,
                        grid: tuple[float, ...] = LEVEL_WEIGHT_GRID) -> dict:
    """Coordinate ascent from weight 1 for every level: each level in turn takes the grid value
    that raises the best F1 most (of equals, the largest), keeping its weight where none raises
    it, until a round changes nothing. Returns the weights that are not 1 (events without a
    level keep 1)."""
    levels = sorted({level for parts in novelty for level in parts if level is not None})
    weights = {level: 1.0 for level in levels}
    best = metrics.f1_max(y, weighted_scores(model, novelty, weights))[0]
    for _ in range(MAX_ROUNDS):
        changed = False
        for level in levels:
            for value in sorted(grid, reverse=True):  # ties keep the mildest weight
                trial = {**weights, level: float(value)}
                f1 = metrics.f1_max(y, weighted_scores(model, novelty, trial))[0]
                if f1 > best + 1e-12:
                    best, weights, changed = f1, trial, True
        if not changed:
            break
    return {level: w for level, w in weights.items() if w != 1.0}
