"""Evaluate a fitted image detector on a labelled dataset (MVTec or folder layout).

Pixel metrics are computed at the detector's working resolution: ground-truth masks are
resized (nearest) to image_size x image_size, as the maps are. Anomalous images without a
mask count for image metrics only.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.image.base import ImageDetector, scores_and_maps
from normalcy.image.datasets import ImageDataset, ImageSample, load_mask_for


def evaluate(detector: ImageDetector, dataset: ImageDataset) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """Metrics as a JSON-ready dict, plus the scores and maps they came from."""
    samples = dataset.test
    labels = np.array([s.label for s in samples])
    if labels.min(initial=1) == 1 or labels.max(initial=0) == 0:
        raise DataError(f"{dataset.root}: evaluation needs normal and anomalous test images")
    start = time.perf_counter()
    scores, maps = scores_and_maps(detector, [s.path for s in samples])
    seconds = time.perf_counter() - start
    f1, f1_threshold = metrics.f1_max(labels, scores)
    result = {
        "n_images": len(samples),
        "n_anomalous": int(labels.sum()),
        "image_auroc": metrics.auroc(labels, scores),
        "image_auprc": metrics.auprc(labels, scores),
        "image_f1_max": f1,
        "image_f1_max_threshold": f1_threshold,
        "pixel_auroc": None,
        "aupro": None,
        "pixel_f1_max": None,
        "seconds": seconds,
        "images_per_second": len(samples) / seconds,
    }
    if detector.threshold_ is not None:
        at = metrics.binary_scores(labels, scores, detector.threshold_)
        result["threshold"] = detector.threshold_
        result.update({f"{k}_at_threshold": at[k] for k in ("precision", "recall", "f1", "fpr")})
    if maps is not None:
        masks, keep = _masks(samples, maps.shape[1:])
        if keep.any() and masks[keep].any():
            result["pixel_auroc"] = metrics.pixel_auroc(masks[keep], maps[keep])
            result["aupro"] = metrics.aupro(masks[keep], maps[keep])
            result["pixel_f1_max"] = metrics.pixel_f1_max(masks[keep], maps[keep])[0]
            result["n_images_with_masks"] = int(keep.sum())
    return result, scores, maps


def _masks(samples: list[ImageSample], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    masks = np.zeros((len(samples), *shape), dtype=bool)
    keep = np.zeros(len(samples), dtype=bool)
    for i, sample in enumerate(samples):
        if sample.label == 1 and sample.mask_path is None:
            continue
        with Image.open(sample.path) as img:
            image_shape = img.size[::-1]
        mask = load_mask_for(sample, image_shape, shape)
        masks[i], keep[i] = mask, True
    return masks, keep
