"""Sample data for the detector contract (tests/test_contract.py) on images, and the tiny
synthetic images every image test uses (conftest.py builds its fixtures from them).

Normal images are smooth grey noise around mid-grey; a defect is a saturated 16 x 16 square
pasted well inside the frame (rows and columns 16..32 of a 64 x 64 image), where every
detector both ranks and localises it reliably. Everything is generated with numpy from fixed
seeds; nothing is read from disk.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from normalcy.core.checks import Case

IMAGE_SIZE = 64
SQUARE = 16

# Small images and one thread keep every check fast (on the busy 2-core test machine two
# threads made fits 5x slower); 0.25 of the patches of a few images is still under
# PatchCore's minimum bank, so the bank holds every training patch. The trained detectors
# take a few steps of small networks: the contract is about behaviour, not accuracy.
PARAMS = {
    "patchcore": {"image_size": IMAGE_SIZE, "threads": 1, "coreset_ratio": 0.25},
    "padim": {"image_size": IMAGE_SIZE, "threads": 1},
    "gaussian": {"image_size": IMAGE_SIZE, "threads": 1},
    "simplenet": {"image_size": IMAGE_SIZE, "threads": 1, "max_steps": 3, "hidden": 16},
    "fastflow": {"image_size": IMAGE_SIZE, "threads": 1, "max_steps": 2, "flow_steps": 2},
    "draem": {"image_size": IMAGE_SIZE, "threads": 1, "max_steps": 2, "width": 4},
    "efficientad": {"image_size": IMAGE_SIZE, "threads": 1, "max_steps": 2},
}


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


def case() -> Case:
    rng = np.random.default_rng(99)
    fit = np.stack([texture(rng) for _ in range(8)])
    normal = [texture(rng) for _ in range(3)]
    defect = [paste_square(rng, texture(rng))[0] for _ in range(3)]
    shape = (2, IMAGE_SIZE, IMAGE_SIZE, 3)
    hostile = [
        ("float images", np.zeros(shape, dtype=np.float32)),
        ("NaN pixels", np.full(shape, np.nan)),
        ("infinite pixels", np.full(shape, np.inf)),
        ("pixels of 1e308", np.full(shape, 1e308)),
        ("negative int64 pixels", np.full(shape, -1, dtype=np.int64)),
        ("RGBA arrays", np.zeros((2, IMAGE_SIZE, IMAGE_SIZE, 4), dtype=np.uint8)),
        ("no images", []),
        ("an empty array", np.zeros((0, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)),
        ("one image", fit[:1]),
        ("a 1 x 1 image", [np.full((1, 1, 3), 200, dtype=np.uint8)]),
        ("an image without pixels", [np.zeros((0, 0, 3), dtype=np.uint8)]),
        ("constant images", np.full((3, IMAGE_SIZE, IMAGE_SIZE, 3), 255, dtype=np.uint8)),
        ("a single path, not a list", "image.png"),
        ("a number", 5),
        ("a list of None", [None]),
        ("a missing file", ["/nonexistent/normalcy-contract.png"]),
    ]
    return Case(fit=fit, test=np.stack(normal + defect), labels=np.array([0] * 3 + [1] * 3), hostile=hostile)
