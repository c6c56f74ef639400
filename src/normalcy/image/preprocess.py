"""Bringing images to the working square, and maps back to an image's size, without torch:
shared by the detectors (`normalcy.image.base`) and the light runtime (`normalcy.runtime`),
so an exported model sees exactly the pixels its torch original saw.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from normalcy.core.errors import DataError
from normalcy.image.io import read_image

ImageInput = Sequence[str | Path | np.ndarray] | np.ndarray

RESIZE_MODES = ("squash", "pad")
PAD_VALUE = 127  # grey: zero after the backbone's normalisation


def as_items(X: ImageInput) -> list:
    """A list of images (paths or arrays) from what the public methods accept."""
    if isinstance(X, np.ndarray):
        if X.ndim == 3:
            X = X[None]
        if X.ndim != 4 or X.shape[-1] not in (1, 3):
            raise DataError(f"image array must be N x H x W x 3 (or H x W x 3), got shape {X.shape}")
        items = list(X)
    elif isinstance(X, (str, Path)):
        raise DataError(f"expected a list of images, got a single path {X!s}; wrap it in a list")
    else:
        try:
            items = list(X)
        except TypeError:
            raise DataError(f"expected a list of images (paths or H x W x 3 uint8 arrays), got "
                            f"{type(X).__name__}") from None
    if not items:
        raise DataError("no images given")
    return items


def scores_and_maps(detector, X: ImageInput) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores, and per-pixel maps from the detectors that give them (`explains`), with or
    without a threshold: what evaluation and serving need (an ImageDetector or an exported
    model)."""
    if not detector.explains:
        return detector.decision_function(X), None
    explanation = detector.explain(X)
    return explanation.scores, explanation.localization


def load_square(items: list, size: int, resize: str = "squash") -> tuple[list[np.ndarray], list]:
    """Images (paths or arrays) read and brought to size x size uint8 by `resize`, and each
    one's (top, left, height, width) image region in the square (None when squashed)."""
    images, boxes = [], []
    for it in items:
        image = read_image(it) if isinstance(it, (str, Path)) else check_array(it)
        square, box = _letterbox(image, size) if resize == "pad" else (_resize(image, size), None)
        images.append(square)
        boxes.append(box)
    return images, boxes


def crop(patch, box, size: int):
    """The patch scores (a torch tensor or numpy array, ... x h x w) over an image's region
    of the square (all of them without a box)."""
    if box is None:
        return patch
    top, left, h, w = box
    scale = patch.shape[-1] / size
    r0, c0 = int(top * scale), int(left * scale)
    r1, c1 = max(r0 + 1, math.ceil((top + h) * scale)), max(c0 + 1, math.ceil((left + w) * scale))
    return patch[..., r0:r1, c0:c1]


def upsample_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize one map to (height, width), e.g. an image's original size, bilinearly: torch's
    `interpolate(mode="bilinear", align_corners=False)` (half-pixel centres, no antialiasing),
    written as one interpolation matrix per axis."""
    m = np.asarray(anomaly_map, dtype=np.float32)
    return (_bilinear_weights(m.shape[0], shape[0]) @ m @ _bilinear_weights(m.shape[1], shape[1]).T).astype(np.float32)


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in matrix of torch's bilinear weights along one axis."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), lo), 1 - frac)
    np.add.at(weights, (np.arange(n_out), hi), frac)
    return weights


def _letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """The image scaled to fit size x size with its aspect ratio, centred on grey."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (size, size):
        return _resize(image, size), None
    canvas = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    return canvas, (top, left, nh, nw)


def check_array(image) -> np.ndarray:
    """An image array as H x W x 3 uint8 (greyscale repeated), or a DataError."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DataError(f"an image array must be H x W x 3 uint8, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise DataError(f"an image array must be uint8, got {image.dtype}")
    if not image.shape[0] or not image.shape[1]:
        raise DataError(f"an image array has no pixels (shape {image.shape})")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=2)
    return image


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
