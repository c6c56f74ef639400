"""Shared fixtures: tiny synthetic texture images (tests/contract_image.py) and image
detectors built through the registry and fitted on them once per session."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from contract_image import IMAGE_SIZE, PARAMS, SQUARE, paste_square, texture  # noqa: F401  (re-exported)


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
    """The registered image detector `name` with the fast test settings (contract_image.PARAMS)."""
    from normalcy.core.registry import build

    return build("image", name, {**PARAMS[name], **kwargs})


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
