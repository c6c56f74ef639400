"""What every image detector shares: reading and resizing images, batched backbone features,
and turning patch scores into smoothed per-pixel maps.

The whole image is resized to image_size x image_size (no centre crop: a crop can cut small
defects at the border out of the frame). Maps come back at that working resolution; use
`upsample_map` to bring one to an image's original size.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.core.results import Prediction
from normalcy.image.backbone import EfficientNetLiteFeatures, patch_features, to_tensor
from normalcy.image.io import read_image

ImageInput = Sequence[str | Path | np.ndarray] | np.ndarray

MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 1024
MAP_SIGMA = 4.0  # Gaussian smoothing of maps, in pixels at a 256-pixel working size


class ImageDetector(Detector):
    """Base for detectors on pretrained EfficientNet-Lite features.

    Subclasses implement `_fit_batches` (learn from an iterator of feature batches) and
    `_patch_scores` (N x h x w patch scores for one batch); `_get_state`/`_set_state` as for
    any detector. Image-level-only detectors override `_score_batches` instead.
    """

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        batch_size: int = 8,
        num_threads: int | None = None,
        weights: str | None = None,
    ):
        self.backbone = backbone
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_threads = num_threads
        self.weights = weights

    # --- public contract ---------------------------------------------------------------
    def fit(self, X: ImageInput, y=None) -> "ImageDetector":
        images = _as_items(X)
        self._validate_params()
        with self._threads():
            self._fit_batches(self._batches(images, "fit"), len(images))
        return self

    def score(self, X: ImageInput) -> np.ndarray:
        return self.score_maps(X)[0]

    def predict(self, X: ImageInput) -> Prediction:
        scores, maps = self.score_maps(X)
        return Prediction.from_scores(scores, self._require_threshold(), maps)

    def score_maps(self, X: ImageInput) -> tuple[np.ndarray, np.ndarray | None]:
        """Per-image scores and per-pixel maps (N x S x S, S = image_size), or None for
        detectors that only score whole images."""
        self._check_fitted(self._fitted_attribute)
        images = _as_items(X)
        with self._threads():
            scores, maps = self._score_batches(self._batches(images, "score"), len(images))
        return scores, maps

    # --- hooks -------------------------------------------------------------------------
    _fitted_attribute: str = ""

    def _fit_batches(self, batches: Iterator[torch.Tensor], n_images: int) -> None:
        raise NotImplementedError

    def _patch_scores(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        """Backbone features of a normalised batch; patch features unless overridden."""
        return patch_features(self.extractor, batch)

    def _score_batches(self, batches, n_images):
        scores, maps = [], []
        for feats in batches:
            patch = self._patch_scores(feats)
            scores.append(patch.flatten(1).amax(1).numpy())
            maps.append(self._smooth(patch))
        return np.concatenate(scores).astype(np.float64), np.concatenate(maps)

    # --- shared machinery ----------------------------------------------------------------
    @property
    def extractor(self) -> EfficientNetLiteFeatures:
        # Built on first use and never saved: the weights come from the package or file.
        cached = getattr(self, "_extractor", None)
        if cached is None or cached[0] != (self.backbone, self.weights):
            cached = ((self.backbone, self.weights), EfficientNetLiteFeatures(self.backbone, self.weights))
            self._extractor = cached
        return cached[1]

    def _validate_params(self) -> None:
        if not (isinstance(self.image_size, int) and MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE):
            raise DataError(
                f"image_size must be an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {self.image_size!r}"
            )
        if self.image_size % 16:
            raise DataError(f"image_size must be a multiple of 16, got {self.image_size}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")

    def _threads(self):
        return thread_limit(self.num_threads)

    def _batches(self, images: list, desc: str) -> Iterator[torch.Tensor]:
        """Feature batches; the next batch is decoded in a thread while this one runs."""
        size = self.image_size
        chunks = [images[i : i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(_load_resized, chunks[0], size) if chunks else None
            for k in progress(range(len(chunks)), desc=desc, unit="batch"):
                batch = pending.result()
                pending = pool.submit(_load_resized, chunks[k + 1], size) if k + 1 < len(chunks) else None
                yield self._features(to_tensor(batch))

    def _smooth(self, patch: torch.Tensor) -> np.ndarray:
        """N x h x w patch scores -> N x S x S maps, bilinear upsampling then Gaussian blur."""
        up = F.interpolate(patch[:, None].float(), size=(self.image_size, self.image_size),
                           mode="bilinear", align_corners=False)[:, 0].numpy()
        sigma = MAP_SIGMA * self.image_size / 256
        return np.stack([gaussian_filter(m, sigma, truncate=4.0) for m in up]).astype(np.float32)


def upsample_map(anomaly_map: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize one map to (height, width), e.g. an image's original size, bilinearly."""
    t = torch.from_numpy(np.ascontiguousarray(anomaly_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)[0, 0].numpy()


class thread_limit:
    """Cap torch, faiss and BLAS threads for a block (None leaves them as they are)."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        if self.n is None:
            return self
        if not (isinstance(self.n, int) and self.n >= 1):
            raise DataError(f"num_threads must be a positive integer, got {self.n!r}")
        from threadpoolctl import threadpool_limits

        # torch, faiss and threadpoolctl can share one OpenMP runtime: read every original
        # setting before changing any, or a later read sees n instead of the original.
        self._torch = torch.get_num_threads()
        self._faiss = faiss.omp_get_max_threads()
        self._blas = threadpool_limits(self.n)
        torch.set_num_threads(self.n)
        faiss.omp_set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            self._blas.restore_original_limits()
            faiss.omp_set_num_threads(self._faiss)
            torch.set_num_threads(self._torch)


def _as_items(X: ImageInput) -> list:
    if isinstance(X, np.ndarray):
        if X.ndim == 3:
            X = X[None]
        if X.ndim != 4 or X.shape[-1] not in (1, 3):
            raise DataError(f"image array must be N x H x W x 3 (or H x W x 3), got shape {X.shape}")
        items = list(X)
    elif isinstance(X, (str, Path)):
        raise DataError(f"expected a list of images, got a single path {X!s}; wrap it in a list")
    else:
        items = list(X)
    if not items:
        raise DataError("no images given")
    return items


def _load_resized(items: list, size: int) -> list[np.ndarray]:
    return [_resize(read_image(it) if isinstance(it, (str, Path)) else _check_array(it), size) for it in items]


def _check_array(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise DataError(f"an image array must be H x W x 3 uint8, got shape {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.dtype != np.uint8:
        raise DataError(f"an image array must be uint8, got {image.dtype}")
    return image


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
