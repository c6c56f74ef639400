"""Evaluate a fitted cloud detector on a labelled dataset: object AUROC (one score per
cloud), point AUROC (every point of every cloud with ground truth, pooled) and AUPRO over
points (MVTec's per-region overlap, with a region = a connected piece of a cloud's defect
points), overall and per defect kind.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from normalcy.cloud.base import CloudDetector
from normalcy.cloud.datasets import CloudDataset, read_truth
from normalcy.cloud.io import read_cloud
from normalcy.core import metrics
from normalcy.core.errors import DataError


def evaluate(detector: CloudDetector, dataset: CloudDataset) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics as a JSON-ready dict (per defect kind under "by_defect"), plus the object
    scores and per-point scores they came from."""
    samples = dataset.test
    labels = np.array([s.label for s in samples])
    if labels.min(initial=1) == 1 or labels.max(initial=0) == 0:
        raise DataError(f"{dataset.root}: evaluation needs normal and anomalous test clouds")
    clouds = [read_cloud(s.path) for s in samples]
    start = time.perf_counter()
    explanation = detector.explain(clouds)
    seconds = time.perf_counter() - start
    scores, per_point = explanation.scores, explanation.localization
    truths = [read_truth(s, len(c)) for s, c in zip(samples, clouds)]
    f1, f1_threshold = metrics.f1_max(labels, scores)
    result = {"n_clouds": len(samples), "n_anomalous": int(labels.sum()),
              "object_auroc": metrics.auroc(labels, scores), "object_auprc": metrics.auprc(labels, scores),
              "object_f1_max": f1, "object_f1_max_threshold": f1_threshold,
              **_point_metrics(clouds, truths, per_point, np.ones(len(samples), dtype=bool)),
              "seconds": seconds, "clouds_per_second": len(samples) / seconds}
    if detector.threshold_ is not None:
        at = metrics.binary_scores(labels, scores, detector.threshold_)
        result["threshold"] = detector.threshold_
        result.update({f"{k}_at_threshold": at[k] for k in ("precision", "recall", "f1", "fpr")})
    kinds = np.array([s.defect for s in samples])
    result["by_defect"] = {}
    for kind in sorted(set(kinds) - {"good"}):
        chosen = (kinds == "good") | (kinds == kind)
        result["by_defect"][kind] = {"n_clouds": int((kinds == kind).sum()),
                                     "object_auroc": metrics.auroc(labels[chosen], scores[chosen]),
                                     **_point_metrics(clouds, truths, per_point, chosen)}
    return result, scores, per_point


def _point_metrics(clouds, truths, per_point, chosen) -> dict:
    use = [i for i in np.flatnonzero(chosen) if truths[i] is not None]
    truth = np.concatenate([truths[i] for i in use]) if use else np.zeros(0, dtype=bool)
    if not truth.any() or truth.all():
        return {"point_auroc": None, "point_aupro": None}
    pooled = np.concatenate([per_point[i] for i in use]).astype(np.float64)
    regions = [defect_regions(clouds[i].points, truths[i]) for i in use]
    return {"point_auroc": metrics.auroc(truth, pooled),
            "point_aupro": point_aupro(regions, [per_point[i] for i in use])}


def defect_regions(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Region labels per point: 0 for normal points, 1.. for each connected piece of defect
    points, two defect points being connected within 3 median point spacings."""
    labels = np.zeros(len(points), dtype=np.int64)
    defect = np.flatnonzero(truth)
    if not len(defect):
        return labels
    spacing = float(np.median(cKDTree(points).query(points, 2)[0][:, 1]))
    pairs = cKDTree(points[defect]).query_pairs(3 * max(spacing, 1e-12), output_type="ndarray")

    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(defect), len(defect)))
    _, piece = connected_components(graph, directed=False)
    labels[defect] = piece + 1
    return labels


def point_aupro(regions: list[np.ndarray], scores: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap curve up to `fpr_limit`, over points:
    `regions` per cloud as `defect_regions` gives them, `scores` per point. The image AUPRO
    (normalcy.core.metrics.aupro) with regions of points instead of pixels."""
    step, normal, n_regions = [], [], 0
    for labels in regions:
        sizes = np.bincount(labels)
        weight = np.zeros(len(sizes))
        weight[1:] = np.divide(1.0, sizes[1:], out=np.zeros(len(sizes) - 1), where=sizes[1:] > 0)
        step.append(weight[labels])
        normal.append(labels == 0)
        n_regions += int((sizes[1:] > 0).sum())
    step, normal = np.concatenate(step), np.concatenate(normal)
    values = np.concatenate(scores).astype(np.float64)
    if not n_regions or normal.all():
        raise DataError("AUPRO needs defect points and normal points")
    order = np.argsort(values)[::-1]
    ranked = values[order]
    keep = np.append(ranked[1:] != ranked[:-1], True)  # points sharing a score enter together
    fprs = np.minimum(np.cumsum(normal[order])[keep] / normal.sum(), 1.0)
    pros = np.minimum(np.cumsum(step[order])[keep] / n_regions, 1.0)
    curve_x, curve_y = np.concatenate(([0.0], fprs)), np.concatenate(([0.0], pros))
    return float(metrics._area_up_to(curve_x, curve_y, fpr_limit) / fpr_limit)
