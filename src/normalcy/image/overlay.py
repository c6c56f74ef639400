"""Heatmap overlays: an anomaly map drawn over the image it came from."""

from __future__ import annotations

import numpy as np
from PIL import Image

from normalcy.image.preprocess import upsample_map

# Anchor colours of a perceptually ordered blue -> cyan -> yellow -> red ramp.
_RAMP = np.array([[48, 18, 59], [40, 120, 240], [30, 210, 200], [140, 250, 80],
                  [250, 200, 40], [240, 90, 20], [122, 4, 3]], dtype=np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> H x W x 3 uint8 colours."""
    pos = np.clip(values, 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_RAMP) - 2)
    frac = (pos - lo)[..., None]
    return (_RAMP[lo] * (1 - frac) + _RAMP[lo + 1] * frac).astype(np.uint8)


def overlay(image: np.ndarray, anomaly_map: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    """Blend the coloured map over the image, more opaque where the map is higher, so normal
    regions stay visible. The map is resized to the image; vmin/vmax fix the colour scale
    (use the same for every image of a model so colours compare across images)."""
    amap = upsample_map(anomaly_map, image.shape[:2])
    norm = (amap - vmin) / max(vmax - vmin, 1e-12)
    alpha = (0.15 + 0.6 * np.clip(norm, 0.0, 1.0))[..., None]
    blended = image.astype(np.float32) * (1 - alpha) + colorize(norm).astype(np.float32) * alpha
    return blended.round().astype(np.uint8)


def color_range(threshold: float | None, maps: np.ndarray) -> tuple[float, float]:
    """Colour scale for a model's maps: centred on its threshold when it has one, so the
    middle of the ramp means 'at the decision boundary'."""
    if threshold is not None and threshold > 0:
        return 0.5 * threshold, 1.5 * threshold
    return float(np.min(maps)), float(np.max(maps))


def save_png(array: np.ndarray, path) -> None:
    Image.fromarray(array).save(path, format="PNG")
