"""What every image detector shares: reading and resizing images, batched backbone features,
and turning patch scores into smoothed per-pixel maps.

The whole image goes to the image_size x image_size working square (no centre crop: a crop can
cut small defects at the border out of the frame), by `resize`: "squash" stretches it to the
square, "pad" scales it to fit inside and pads the rest with grey (aspect ratio kept). With
padding, image scores and maps cover the image, not the padding: the map's image region is
cropped and stretched back to the square, so every map is image_size x image_size in the
image's own coordinates either way. Use `upsample_map` to bring one to the image's size.
"""

from __future__ import annotations

import functools
import os
from abc import abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.core.results import Explanation, Prediction
from normalcy.core.threads import check_threads, thread_limit
from normalcy.image.backbone import BACKBONES, EfficientNetLiteFeatures, patch_features, to_tensor
# Re-exported: the detectors, trained ones and tests import them from here.
from normalcy.image.preprocess import (PAD_VALUE, RESIZE_MODES, ImageInput, load_square,  # noqa: F401
                                       scores_and_maps, upsample_map)
from normalcy.image.preprocess import as_items as _as_items
from normalcy.image.preprocess import crop as _crop

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
MAP_SIGMA = 4.0  # Gaussian smoothing of maps, in pixels at a 256-pixel working size


class ImageDetector(Detector):
    """Base for detectors on pretrained EfficientNet-Lite features.

    Parameters every image detector takes:

    - backbone: the ImageNet-pretrained feature extractor, "efficientnet-lite0" (default),
      "efficientnet-lite1" or "efficientnet-lite2".
    - image_size: images are resized, whole, to this square size (default 256; a multiple of
      16 in [32, 1024]); maps come back at this size.
    - resize: how an image reaches the square: "squash" (default: stretched) or "pad"
      (aspect ratio kept, grey padding; for sets whose images differ in shape).
    - batch_size: images per backbone pass (default 8); scores do not depend on it.
    - threads: CPU threads for torch, faiss and BLAS during fit and scoring (default None:
      the libraries' own choice).
    - weights: a backbone state-dict file to use instead of the packaged weights (default
      None).

    A subclass implements `_fit_encoded` (learn from an iterator of feature batches) and
    `_score_encoded` (one batch of features -> N x h x w patch scores, or N image scores for a
    detector without maps; `_image_score` turns one map into the image's score, its largest
    value by default), `_get_state` / `_set_state` as any detector, and `_check_params`
    for its own parameters. `_encode` (patch features by default) turns a normalised batch of
    images into the features both hooks see. A detector that can be exported to ONNX
    (`normalcy.image.export`) also implements `_export_scores`: `_score_encoded` in torch
    operations only.
    """

    modality = "image"
    explains = True  # the per-pixel map says where; detectors without one set False
    renamed_params = {"num_threads": "threads"}  # normalcy 0.1.0 model files

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        batch_size: int = 8,
        threads: int | None = None,
        weights: str | None = None,
        resize: str = "squash",
    ):
        self.backbone = backbone
        self.image_size = image_size
        self.batch_size = batch_size
        self.threads = threads
        self.weights = weights
        self.resize = resize

    # --- public contract ---------------------------------------------------------------
    def fit(self, X: ImageInput, y=None) -> "ImageDetector":
        self._check_params()
        images = _as_items(X)
        with thread_limit(self.threads):
            self._fit_encoded((feats for feats, _ in self._batches(images, "fit")), len(images))
        return self

    def decision_function(self, X: ImageInput) -> np.ndarray:
        return self._score(X, maps=False)[0]

    def predict(self, X: ImageInput) -> np.ndarray:
        threshold = self._fitted_threshold()
        return Prediction.from_scores(self.decision_function(X), threshold).labels

    def detect(self, X: ImageInput) -> Prediction:
        """Scores, labels, and per-pixel maps (N x S x S, S = image_size) as `localization`
        (None for detectors that score whole images only)."""
        threshold = self._fitted_threshold()
        scores, maps = self._score(X, maps=True)
        return Prediction.from_scores(scores, threshold, maps)

    def explain(self, X: ImageInput) -> Explanation:
        """Where each image is anomalous: scores and per-pixel maps (N x S x S) as `localization`;
        needs no threshold."""
        if not self.explains:
            raise DataError(f"{type(self).__name__} scores whole images only: it has no pixel map to explain a score")
        scores, maps = self._score(X, maps=True)
        return Explanation(scores, localization=maps)

    def _check_params(self) -> None:
        uses_backbone = "backbone" in self.get_params(deep=False)  # DRAEM has none
        if uses_backbone and self.backbone not in BACKBONES:
            raise DataError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONES)}")
        if not (is_int(self.image_size) and MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE):
            raise DataError(
                f"image_size must be an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {self.image_size!r}"
            )
        if self.image_size % 16:
            raise DataError(f"image_size must be a multiple of 16, got {self.image_size}")
        if not (is_int(self.batch_size) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        check_threads(self.threads)
        if uses_backbone and self.weights is not None and not isinstance(self.weights, str):
            raise DataError(f"weights must be a file path (a str) or None, got {self.weights!r}")
        if self.resize not in RESIZE_MODES:
            raise DataError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")

    # --- hooks -------------------------------------------------------------------------
    _fitted_attribute: str = ""

    @abstractmethod
    def _fit_encoded(self, batches: Iterator[torch.Tensor], n_images: int) -> None:
        """Learn from the encoded training images, one batch at a time."""

    @abstractmethod
    def _score_encoded(self, features: torch.Tensor) -> torch.Tensor:
        """N x h x w patch scores of one encoded batch (or N image scores, without maps)."""

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        """Backbone features of a normalised batch; patch features unless overridden."""
        return patch_features(self.extractor, batch)

    def _image_score(self, patch: torch.Tensor) -> float:
        """One image's score from its h x w patch scores (its image region, under padding)."""
        return float(patch.max())

    # --- shared machinery ----------------------------------------------------------------
    @property
    def extractor(self) -> EfficientNetLiteFeatures:
        # Export sets its own copy with the padding fixed for one input size (`normalcy.image.export`).
        fixed = self.__dict__.get("_fixed_extractor")
        return fixed if fixed is not None else _extractor(self.backbone, self.weights)

    def _fitted_threshold(self) -> float:
        self._check_fitted(self._fitted_attribute)
        return self._require_threshold()

    def _score(self, X: ImageInput, maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Image scores, and maps if asked for and the detector gives them. An image's score
        comes from its patch scores before the map is smoothed (`_image_score`)."""
        self._check_fitted(self._fitted_attribute)
        images = _as_items(X)
        scores, smoothed = [], []
        with thread_limit(self.threads):
            for feats, boxes in self._batches(images, "score"):
                out = self._score_encoded(feats)
                if out.ndim == 1:
                    scores.append(out.numpy())
                    continue
                crops = [_crop(patch, box, self.image_size) for patch, box in zip(out, boxes)]
                scores.append(np.array([self._image_score(c) for c in crops]))
                if maps:
                    smoothed.append(self._smooth(out, boxes))
        return np.concatenate(scores).astype(np.float64), np.concatenate(smoothed) if smoothed else None

    def _batches(self, images: list, desc: str) -> Iterator[tuple[torch.Tensor, list]]:
        """Encoded batches and each image's box in the square (`load_square`); the next batch
        is decoded in a thread while this one runs."""
        chunks = [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(load_square, chunks[0], self.image_size, self.resize) if chunks else None
            for k in progress(range(len(chunks)), desc=desc, unit="batch"):
                batch, boxes = pending.result()
                if k + 1 < len(chunks):
                    pending = pool.submit(load_square, chunks[k + 1], self.image_size, self.resize)
                yield self._encode(to_tensor(batch)), boxes

    def _smooth(self, patch: torch.Tensor, boxes: list | None = None) -> np.ndarray:
        """N x h x w patch scores -> N x S x S maps, bilinear upsampling then Gaussian blur; under
        padding each map's image region is then stretched back to S x S."""
        size = self.image_size
        up = F.interpolate(patch[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        sigma = MAP_SIGMA * size / 256
        out = np.stack([gaussian_filter(m, sigma, truncate=4.0) for m in up.numpy()]).astype(np.float32)
        for i, box in enumerate(boxes or []):
            if box is not None:
                top, left, h, w = box
                out[i] = upsample_map(out[i, top : top + h, left : left + w], (size, size))
        return out


def _extractor(backbone: str, weights: str | None) -> EfficientNetLiteFeatures:
    """One frozen extractor per backbone and weights file, shared by every detector of the
    process (it is only read): building one costs a weights load per detector otherwise."""
    stamp = None
    if weights is not None:
        try:
            info = os.stat(weights)
            stamp = (info.st_mtime_ns, info.st_size)  # a replaced file is loaded afresh
        except OSError:
            pass  # EfficientNetLiteFeatures reports the unreadable file
    return _cached_extractor(backbone, weights, stamp)


@functools.lru_cache(maxsize=4)
def _cached_extractor(backbone: str, weights: str | None, stamp) -> EfficientNetLiteFeatures:
    return EfficientNetLiteFeatures(backbone, weights)


def is_int(value) -> bool:
    """A plain int (not a bool): parameters go to JSON in the model file as they are."""
    return isinstance(value, int) and not isinstance(value, bool)
