"""Evaluation metrics for anomaly scores.

Conventions throughout: a higher score means more anomalous, label 1 (or True) means anomaly,
and a sample counts as predicted anomalous iff ``score >= threshold``. Every function checks
its inputs and raises `DataError` naming the argument at fault, because a metric silently
computed on misaligned or NaN-laden arrays is worse than no metric.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from normalcy.core.errors import DataError

# The MVTec AD reference evaluation (pro_curve_util.compute_pro) labels ground-truth regions
# with a full 3x3 structuring element, i.e. 8-connectivity: diagonal neighbours belong to the
# same defect. scipy's default structure would be 4-connectivity and split such defects.
_REGION_STRUCTURE = np.ones((3, 3), dtype=bool)


def auroc(labels, scores) -> float:
    """Area under the ROC curve: threshold-free ranking quality of image-level scores."""
    y, s = _check_binary_task(labels, scores, "labels", "scores")
    return float(roc_auc_score(y, s))


def auprc(labels, scores) -> float:
    """Average precision: like AUROC but sensitive to how rare anomalies are."""
    y, s = _check_binary_task(labels, scores, "labels", "scores")
    return float(average_precision_score(y, s))


def f1_max(labels, scores) -> tuple[float, float]:
    """Best F1 over all thresholds, and the threshold that reaches it.

    Ties go to the lowest such threshold. Reported so that a user can pick an operating point
    without a separate validation sweep.
    """
    y, s = _check_binary_task(labels, scores, "labels", "scores")
    return _f1_max(y, s)


def pixel_auroc(masks, maps) -> float:
    """AUROC over every pixel of every image, pooled."""
    m, a = _check_pixel_task(masks, maps)
    return float(roc_auc_score(m.reshape(-1), a.reshape(-1)))


def pixel_f1_max(masks, maps) -> tuple[float, float]:
    """Best pixel-level F1 over all thresholds, and that threshold, pooled over images."""
    m, a = _check_pixel_task(masks, maps)
    return _f1_max(m.reshape(-1), a.reshape(-1))


def aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to ``fpr_limit`` (MVTec AD).

    Unlike pixel AUROC, every connected defect region weighs the same however large it is,
    so small defects are not drowned out by big ones. 1.0 is a perfect detector.
    """
    if not isinstance(fpr_limit, numbers.Real) or not 0.0 < fpr_limit <= 1.0:
        raise DataError(f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}")
    m, a = _check_pixel_task(masks, maps)
    fprs, pros = _pro_curve(m, a)
    return float(_area_up_to(fprs, pros, float(fpr_limit)) / float(fpr_limit))


def binary_scores(labels, scores, threshold: float) -> dict:
    """Confusion counts and rates at one fixed threshold (``score >= threshold`` = anomaly).

    Rates whose denominator is zero (e.g. precision when nothing is flagged) are reported as
    0.0 rather than NaN so the result can be serialised and compared directly.
    """
    y = _as_labels(labels, "labels")
    s = _as_scores(scores, "scores")
    _check_same_length(y, s, "labels", "scores")
    if not isinstance(threshold, numbers.Real) or np.isnan(threshold):
        raise DataError(f"threshold must be a real number (not NaN), got {threshold!r}")
    predicted = s >= threshold
    tp = int(np.count_nonzero(predicted & y))
    fp = int(np.count_nonzero(predicted & ~y))
    fn = int(np.count_nonzero(~predicted & y))
    tn = int(np.count_nonzero(~predicted & ~y))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "fpr": _ratio(fp, fp + tn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def _f1_max(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    precision, recall, thresholds = precision_recall_curve(y, s)
    # The curve's last point (precision 1, recall 0) has no threshold; drop it.
    precision, recall = precision[: len(thresholds)], recall[: len(thresholds)]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = int(np.argmax(f1))
    return float(f1[best]), float(thresholds[best])


def _pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact (FPR, PRO) curve, one point per distinct score, from a single descending sort.

    Each normal pixel raises the FPR by 1/n_normal once the threshold drops to its score;
    each anomalous pixel raises the PRO by 1/(n_regions * size of its region). Cumulative
    sums over pixels sorted by descending score therefore trace the whole curve in
    O(P log P), as in the MVTec AD reference code.
    """
    pro_step = np.zeros(masks.shape, dtype=np.float64)
    n_regions = 0
    for i in range(masks.shape[0]):
        labeled, k = ndimage.label(masks[i], structure=_REGION_STRUCTURE)
        if k:
            sizes = np.bincount(labeled.reshape(-1))
            weight = np.zeros(sizes.shape)  # label 0, the background, adds nothing
            weight[1:] = 1.0 / sizes[1:]
            pro_step[i] = weight[labeled]
            n_regions += k
    normal = ~masks.reshape(-1)
    n_normal = int(np.count_nonzero(normal))
    if n_regions == 0:
        raise DataError(
            "masks contain no anomalous pixel; AUPRO needs at least one defect region"
        )
    if n_normal == 0:
        raise DataError("masks contain no normal pixel; AUPRO needs a false-positive rate")

    order = np.argsort(maps.reshape(-1))[::-1]
    sorted_scores = maps.reshape(-1)[order]
    # Pixels sharing a score enter together: keep only the last point of each tie run.
    keep = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    del sorted_scores
    fp_counts = np.cumsum(normal[order])[keep]
    pro_sums = np.cumsum(pro_step.reshape(-1)[order])[keep]
    del order, pro_step
    fprs = np.minimum(fp_counts / n_normal, 1.0)
    pros = np.minimum(pro_sums / n_regions, 1.0)
    return np.concatenate(([0.0], fprs)), np.concatenate(([0.0], pros))


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under the polyline (x, y) for x in [0, x_max].

    ``x`` is non-decreasing from 0; the curve is cut at x_max by linear interpolation
    between the neighbouring points, so the result does not depend on where thresholds fall.
    """
    end = int(np.searchsorted(x, x_max, side="right"))  # points with x <= x_max
    xs, ys = x[:end], y[:end]
    if end < len(x) and xs[-1] < x_max:
        t = (x_max - x[end - 1]) / (x[end] - x[end - 1])
        xs = np.append(xs, x_max)
        ys = np.append(ys, y[end - 1] + t * (y[end] - y[end - 1]))
    return float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))


def _check_binary_task(labels, scores, labels_name: str, scores_name: str):
    y = _as_labels(labels, labels_name)
    s = _as_scores(scores, scores_name)
    _check_same_length(y, s, labels_name, scores_name)
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0 or n_pos == y.size:
        only = "anomalies (1)" if n_pos else "normals (0)"
        raise DataError(
            f"{labels_name} contain only {only}; this metric needs both normal (0) and "
            "anomalous (1) samples"
        )
    return y, s


def _check_pixel_task(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(masks)
    a = np.asarray(maps)
    if m.shape != a.shape:
        raise DataError(
            f"masks shape {m.shape} and maps shape {a.shape} differ; "
            "both must be (N, H, W) with the same N, H and W"
        )
    if m.ndim != 3 or m.size == 0:
        raise DataError(f"masks and maps must be non-empty (N, H, W) arrays, got shape {m.shape}")
    return _as_binary(m, "masks"), _as_finite(a, "maps")


def _check_same_length(y: np.ndarray, s: np.ndarray, y_name: str, s_name: str) -> None:
    if y.shape != s.shape:
        raise DataError(
            f"{y_name} has {y.size} entries but {s_name} has {s.size}; "
            "they must be 1-D arrays of the same length"
        )


def _as_labels(labels, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or y.size == 0:
        raise DataError(f"{name} must be a non-empty 1-D array of 0/1, got shape {y.shape}")
    return _as_binary(y, name)


def _as_binary(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == bool:
        return values
    if values.dtype.kind not in "iuf" or not np.all((values == 0) | (values == 1)):
        raise DataError(f"{name} must contain only 0/1 (or False/True) values")
    return values.astype(bool)


def _as_scores(scores, name: str) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 1 or s.size == 0:
        raise DataError(f"{name} must be a non-empty 1-D array of floats, got shape {s.shape}")
    return _as_finite(s, name)


def _as_finite(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold real numbers, got dtype {values.dtype}")
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{name} contains NaN or infinite values; every score must be finite")
    return values
