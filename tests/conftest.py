"""Shared fixtures: tiny synthetic texture images and image detectors fitted on them once.

Normal images are smooth grey noise around mid-grey; a defect is a saturated 16 x 16 square
pasted well inside the frame (rows and columns 16..32 of a 64 x 64 image), where every
detector both ranks and localises it reliably. Everything is generated with numpy from fixed
seeds; nothing is read from disk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

IMAGE_SIZE = 64
SQUARE = 16


def texture(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One normal image: smooth Gaussian noise around grey, H x W x 3 uint8."""
    noise = gaussian_filter(rng.normal(size=(size, size)), 2, mode="wrap")
    grey = np.clip(128 + 25 * noise / noise.std(), 0, 255)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


def paste_square(rng: np.random.Generator, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A copy of `image` with a white SQUARE x SQUARE patch; returns it and the top-left corner."""
    row, col = (int(v) for v in rng.integers(16, 33, 2))
    out = image.copy()
    out[row : row + SQUARE, col : col + SQUARE] = 255
    return out, (row, col)


@dataclass(frozen=True)
class ImageData:
    train: np.ndarray  # N x 64 x 64 x 3, normal
    calib: np.ndarray  # held-out normals for thresholds
    normal: np.ndarray  # normal test images
    defect: np.ndarray  # test images with a pasted square
    corners: list  # (row, col) of each defect's square

    @property
    def test(self) -> np.ndarray:
        return np.concatenate([self.normal, self.defect])

    @property
    def labels(self) -> np.ndarray:
        return np.r_[np.zeros(len(self.normal)), np.ones(len(self.defect))].astype(int)


@pytest.fixture(scope="session")
def image_data() -> ImageData:
    rng = np.random.default_rng(1234)
    train = np.stack([texture(rng) for _ in range(8)])
    calib = np.stack([texture(rng) for _ in range(4)])
    normal = np.stack([texture(rng) for _ in range(4)])
    pasted = [paste_square(rng, texture(rng)) for _ in range(4)]
    defect = np.stack([img for img, _ in pasted])
    return ImageData(train, calib, normal, defect, [corner for _, corner in pasted])


def make_detector(name: str, **kwargs):
    from normalcy.image import GaussianAD, PaDiM, PatchCore

    common = dict(image_size=IMAGE_SIZE, num_threads=2)
    if name == "patchcore":
        return PatchCore(coreset_ratio=0.25, **{**common, **kwargs})
    if name == "padim":
        return PaDiM(**{**common, **kwargs})
    if name == "gaussian":
        return GaussianAD(**{**common, **kwargs})
    raise AssertionError(name)


@pytest.fixture(scope="session")
def fitted(image_data):
    """name -> detector fitted on image_data.train, built once per session.

    Tests must not change these in place; calibrate a `copy.copy` instead.
    """

    cache: dict = {}

    def get(name: str):
        if name not in cache:
            cache[name] = make_detector(name).fit(image_data.train)
        return cache[name]

    return get
