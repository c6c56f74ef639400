"""Evaluate a fitted image detector on a labelled dataset (MVTec or folder layout).

Pixel metrics are computed at the detector's working resolution: ground-truth masks are
resized (nearest) to image_size x image_size, as the maps are. Anomalous images without a
mask count for image metrics only.

Memory is bounded whatever the test set's size: images are scored CHUNK at a time, their
maps go to a temporary file, and the pixel metrics come from histograms of the pixel scores
on BINS equal bins between the smallest and largest map value (counts of normal and of defect
pixels, and each defect pixel's weight 1 / (its region's size) for AUPRO). Pixels that share
a bin count as tied, so the figures equal those of the exact pooled computation
(`normalcy.core.metrics`) to within about 1e-5 (tested; see docs/images.md for the
measured difference and peak memory on bottle).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy import ndimage

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.image.base import ImageDetector, scores_and_maps
from normalcy.image.datasets import (
    NORMAL_DEFECT,
    ImageDataset,
    ImageSample,
    load_mask_for,
    missing_anomalies,
    missing_normals,
)

CHUNK = 32  # images scored at a time
BINS = 1 << 18  # histogram bins of the pixel scores
FPR_LIMIT = 0.3  # AUPRO's integration limit, as in the MVTec AD evaluation


def evaluate(detector: ImageDetector, dataset: ImageDataset) -> tuple[dict, np.ndarray]:
    """Metrics as a JSON-ready dict (with `per_defect`: the same figures for each defect kind
    against the normal images), and the image scores they came from."""
    samples = dataset.test
    labels = np.array([s.label for s in samples])
    if not (labels == 0).any():
        raise DataError(f"{dataset.root}: evaluation needs normal test images; expected them in "
                        f"{missing_normals(dataset)}")
    if not (labels == 1).any():
        raise DataError(f"{dataset.root}: evaluation needs anomalous test images; expected them in "
                        f"{missing_anomalies(dataset)}")
    with tempfile.TemporaryFile() as spool:
        scores, seconds, size, value_range = _score_to_file(detector, samples, spool)
        pixels = _pixel_histograms(samples, spool, size, value_range) if size else None
    result = {"n_images": len(samples), "n_anomalous": int(labels.sum()),
              **_image_figures(labels, scores), **_pixel_figures(pixels, None),
              "seconds": seconds, "images_per_second": len(samples) / seconds}
    if pixels is not None and pixels.with_masks:
        result["n_images_with_masks"] = pixels.with_masks
    if detector.threshold_ is not None:
        at = metrics.binary_scores(labels, scores, detector.threshold_)
        result["threshold"] = detector.threshold_
        result.update({f"{k}_at_threshold": at[k] for k in ("precision", "recall", "f1", "fpr")})
    result["per_defect"] = {}
    for defect in sorted({s.defect for s in samples} - {NORMAL_DEFECT}):
        keep = np.array([s.defect in (defect, NORMAL_DEFECT) for s in samples])
        result["per_defect"][defect] = {"n_images": int((labels[keep] == 1).sum()),
                                        **_image_figures(labels[keep], scores[keep]),
                                        **_pixel_figures(pixels, defect)}
    return result, scores


def _image_figures(labels: np.ndarray, scores: np.ndarray) -> dict:
    f1, f1_threshold = metrics.f1_max(labels, scores)
    return {"image_auroc": metrics.auroc(labels, scores), "image_auprc": metrics.auprc(labels, scores),
            "image_f1_max": f1, "image_f1_max_threshold": f1_threshold}


def _score_to_file(detector, samples, spool):
    """Score every sample CHUNK at a time, appending each map (float32) to `spool`: the image
    scores, the seconds spent scoring, the map size (0 without maps) and the maps' range."""
    scores, seconds, size = [], 0.0, 0
    lo, hi = np.inf, -np.inf
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start : start + CHUNK]
        begin = time.perf_counter()
        chunk_scores, maps = scores_and_maps(detector, [s.path for s in chunk])
        seconds += time.perf_counter() - begin
        scores.append(chunk_scores)
        if maps is not None:
            size = maps.shape[1]
            lo, hi = min(lo, float(maps.min())), max(hi, float(maps.max()))
            spool.write(np.ascontiguousarray(maps, dtype=np.float32).tobytes())
    return np.concatenate(scores), seconds, size, (lo, hi)


@dataclass
class _Histograms:
    """Per defect kind ("good" included): normal-pixel counts, defect-pixel counts and the AUPRO
    weight per bin, and the number of defect regions; bin b holds scores in
    [lo + b * step, lo + (b + 1) * step)."""

    lo: float
    step: float
    normal: dict = field(default_factory=dict)
    defect: dict = field(default_factory=dict)
    weight: dict = field(default_factory=dict)
    regions: dict = field(default_factory=dict)
    with_masks: int = 0

    def add(self, kind: str, anomaly_map: np.ndarray, mask: np.ndarray) -> None:
        if kind not in self.normal:
            self.normal[kind] = np.zeros(BINS, np.int64)
            self.defect[kind] = np.zeros(BINS, np.int64)
            self.weight[kind] = np.zeros(BINS, np.float64)
            self.regions[kind] = 0
        bins = np.clip(((anomaly_map - self.lo) / self.step).astype(np.int64), 0, BINS - 1).ravel()
        flat = mask.ravel()
        self.normal[kind] += np.bincount(bins[~flat], minlength=BINS)
        self.defect[kind] += np.bincount(bins[flat], minlength=BINS)
        # MVTec AD's reference labels regions with 8-connectivity.
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes = np.bincount(labelled.ravel())
            per_pixel = (1.0 / sizes[1:])[labelled.ravel()[flat] - 1]
            self.weight[kind] += np.bincount(bins[flat], weights=per_pixel, minlength=BINS)
            self.regions[kind] += n
        self.with_masks += 1

    def totals(self, kinds) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        kinds = [k for k in kinds if k in self.normal]
        return (sum(self.normal[k] for k in kinds), sum(self.defect[k] for k in kinds),
                sum(self.weight[k] for k in kinds), sum(self.regions[k] for k in kinds))


def _pixel_histograms(samples: list[ImageSample], spool, size: int, value_range) -> _Histograms:
    lo, hi = value_range
    hist = _Histograms(lo, (hi - lo) / BINS if hi > lo else 1.0)
    spool.seek(0)
    per_map = size * size
    for sample in samples:
        anomaly_map = np.fromfile(spool, dtype=np.float32, count=per_map).reshape(size, size)
        if sample.label == 1 and sample.mask_path is None:
            continue
        with Image.open(sample.path) as img:
            image_shape = img.size[::-1]
        hist.add(sample.defect, anomaly_map, load_mask_for(sample, image_shape, (size, size)))
    return hist


def _pixel_figures(hist: _Histograms | None, defect: str | None) -> dict:
    """Pixel AUROC, AUPRO and pixel F1-max of every kind (defect None) or of one kind against
    the normal images; None where there is no map or no defect pixel."""
    empty = {"pixel_auroc": None, "aupro": None, "pixel_f1_max": None}
    if hist is None:
        return empty
    normal, defect_px, weight, regions = hist.totals(hist.normal if defect is None else (NORMAL_DEFECT, defect))
    if isinstance(normal, int) or not defect_px.sum() or not normal.sum():
        return empty
    return {"pixel_auroc": binned_auroc(normal, defect_px), "aupro": binned_aupro(normal, weight, regions),
            "pixel_f1_max": binned_f1_max(normal, defect_px)}


def binned_auroc(normal: np.ndarray, defect: np.ndarray) -> float:
    """AUROC from per-bin counts: P(defect pixel above normal pixel), a shared bin half."""
    below = np.cumsum(normal) - normal
    wins = (defect * (below + 0.5 * normal)).sum()
    return float(wins / (defect.sum() * normal.sum()))


def binned_f1_max(normal: np.ndarray, defect: np.ndarray) -> float:
    """The best F1 over thresholds at the bins' lower edges (flag a pixel at or above it)."""
    tp = np.cumsum(defect[::-1])
    fp = np.cumsum(normal[::-1])
    fn = defect.sum() - tp
    return float((2 * tp / np.maximum(2 * tp + fp + fn, 1)).max())


def binned_aupro(normal: np.ndarray, weight: np.ndarray, regions: int, fpr_limit: float = FPR_LIMIT) -> float:
    """AUPRO from per-bin normal counts and region weights: the (FPR, PRO) curve at each bin
    edge, from the top, integrated to fpr_limit and normalised."""
    fpr = np.concatenate(([0.0], np.cumsum(normal[::-1]) / normal.sum()))
    pro = np.concatenate(([0.0], np.minimum(np.cumsum(weight[::-1]) / regions, 1.0)))
    return metrics._area_up_to(np.minimum(fpr, 1.0), pro, fpr_limit) / fpr_limit
