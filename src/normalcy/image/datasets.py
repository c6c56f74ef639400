"""Finding the images of a dataset on disk.

`load_dataset(root)` recognises two layouts and only lists files; no pixels are read here.

MVTec layout (``layout == "mvtec"``), chosen when ``root/train/`` or ``root/test/`` is a
directory::

    root/train/good/*                    normal training images (non-empty if train/ exists)
    root/test/<defect>/*                 test images; <defect> == "good" means normal
    root/ground_truth/<defect>/<stem>_mask.png   pixel mask of test/<defect>/<stem>.*
                                         (``<stem>.png`` is accepted too, as some converted
                                         datasets name them; ``_mask.png`` wins if both exist)
    root/ground_truth/<defect>/<stem>/*.png      MVTec LOCO: one file per defect region;
                                         the mask is their union

  ``root/test/`` is optional (a training-only dataset has ``test == []``), and so is
  ``root/train/`` (a test-only set, as `normalcy image synthesize` writes, has ``train ==
  []``: it can be evaluated on, not fitted on). Files lying directly
  in ``root/test/`` and hidden folders are ignored. Normal ("good") test images never get a
  mask path: their mask is all zero by definition. An anomalous test image without a mask
  file gets ``mask_path=None``: it still counts for image-level metrics, but has no pixel
  ground truth, so pixel-level metrics must skip it (`load_mask_for` returns None for it).

Folder layout (``layout == "folder"``), chosen otherwise::

    root/normal/* or root/good/*         normal images; if neither folder exists, the
                                         images directly in root/ are the normal images
    root/anomalous/* or root/abnormal/* or root/defect/*   optional anomalous images
    root/test_good/* or root/test_normal/*                 optional normal *test* images
    root/masks/<stem>_mask.png or root/masks/<stem>.png    optional masks of anomalous images

  ``train`` = all normal images; ``test`` = the anomalous images (label 1, defect
  "anomalous") plus the images of ``test_good/`` (label 0, defect "good"), if present. The
  normal training images are never reused as test images. When ``normal/`` or ``good/``
  exists, loose images directly in root/ are ignored. Having two alternative folders for
  the same role (e.g. both ``normal/`` and ``good/``) is ambiguous and raises DataError.

Within one folder, images are listed non-recursively and sorted by name (see
`normalcy.image.io.list_images`). Masks are matched to images by file stem, so two images
of one folder with the same stem (``a.png`` and ``a.jpg``) raise DataError when masks are
looked up for that folder.

Mask sizes are not checked here (that would mean decoding every file): `load_mask_for`
checks a mask against its image's original size when the mask is actually loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError
from normalcy.image.io import IMAGE_SUFFIXES, MAX_PIXELS, list_images, read_mask, resize_mask

NORMAL_DEFECT = "good"
"""The `defect` name of normal samples."""

ANOMALOUS_DEFECT = "anomalous"
"""The `defect` name of anomalous samples in the folder layout (which has no defect types)."""

FOLDER_NORMAL_DIRS = ("normal", "good")
FOLDER_ANOMALOUS_DIRS = ("anomalous", "abnormal", "defect")
FOLDER_TEST_NORMAL_DIRS = ("test_good", "test_normal")
FOLDER_MASKS_DIR = "masks"


@dataclass(frozen=True)
class ImageSample:
    """One test image: `label` 0 = normal, 1 = anomalous; `defect` is "good" for normal
    images. `mask_path` is None for normal images and for anomalous ones without a mask."""

    path: Path
    label: int
    defect: str
    mask_path: Path | None = None


@dataclass
class ImageDataset:
    """The files of one dataset: `layout` is "mvtec" or "folder"; `train` holds normal
    images only; `test` holds labelled samples."""

    root: Path
    layout: str
    train: list[Path] = field(default_factory=list)
    test: list[ImageSample] = field(default_factory=list)


def _mask_candidates(mask_dir: Path, stem: str) -> tuple[Path, Path]:
    return mask_dir / f"{stem}_mask.png", mask_dir / f"{stem}.png"


def _find_mask(mask_dir: Path, stem: str) -> Path | None:
    for candidate in _mask_candidates(mask_dir, stem):
        if candidate.is_file():
            return candidate
    if (mask_dir / stem).is_dir():  # MVTec LOCO: a folder of region masks
        if not list_images(mask_dir / stem):
            raise DataError(f"mask folder {mask_dir / stem} holds no mask images; expected one PNG per defect region")
        return mask_dir / stem
    return None


def _check_unique_stems(images: list[Path], folder: Path) -> None:
    seen: dict[str, Path] = {}
    for path in images:
        if path.stem in seen:
            raise DataError(
                f"{seen[path.stem]} and {path} in {folder} share the stem {path.stem!r}, so "
                f"their masks cannot be told apart; rename one of them"
            )
        seen[path.stem] = path


def _anomalous_samples(images: list[Path], folder: Path, defect: str,
                       mask_dir: Path) -> list[ImageSample]:
    if not mask_dir.is_dir():
        return [ImageSample(p, 1, defect, None) for p in images]
    _check_unique_stems(images, folder)
    return [ImageSample(p, 1, defect, _find_mask(mask_dir, p.stem)) for p in images]


def _load_mvtec(root: Path) -> ImageDataset:
    train_dir = root / "train" / NORMAL_DEFECT
    train: list[Path] = []
    if (root / "train").is_dir():
        if not train_dir.is_dir():
            raise DataError(
                f"{root} looks like an MVTec-style dataset (it has a train/ folder) but "
                f"{train_dir} is missing; expected normal training images there"
            )
        train = list_images(train_dir)
        if not train:
            raise DataError(
                f"no training images found in {train_dir} (looked for files ending in "
                f"{', '.join(IMAGE_SUFFIXES)})"
            )

    test: list[ImageSample] = []
    test_dir = root / "test"
    if test_dir.is_dir():
        defect_dirs = sorted(
            d for d in test_dir.iterdir() if d.is_dir() and not d.name.startswith(".")
        )
        for defect_dir in defect_dirs:
            defect = defect_dir.name
            images = list_images(defect_dir)
            if defect == NORMAL_DEFECT:
                test.extend(ImageSample(p, 0, NORMAL_DEFECT, None) for p in images)
            else:
                mask_dir = root / "ground_truth" / defect
                test.extend(_anomalous_samples(images, defect_dir, defect, mask_dir))
    return ImageDataset(root=root, layout="mvtec", train=train, test=test)


def _one_of(root: Path, names: Sequence[str], role: str) -> Path | None:
    present = [root / name for name in names if (root / name).is_dir()]
    if len(present) > 1:
        raise DataError(
            f"{root} has more than one folder for {role}: "
            f"{', '.join(str(p) for p in present)}; keep only one"
        )
    return present[0] if present else None


def _load_folder(root: Path) -> ImageDataset:
    normal_dir = _one_of(root, FOLDER_NORMAL_DIRS, "normal images")
    anomalous_dir = _one_of(root, FOLDER_ANOMALOUS_DIRS, "anomalous images")
    test_normal_dir = _one_of(root, FOLDER_TEST_NORMAL_DIRS, "normal test images")

    train = list_images(normal_dir if normal_dir is not None else root)
    if not train:
        if normal_dir is not None:
            where = str(normal_dir)
        else:
            where = (
                f"{root} itself (no {' or '.join(FOLDER_NORMAL_DIRS)} sub-folder exists; "
                f"an MVTec layout would need {root / 'train' / NORMAL_DEFECT})"
            )
        raise DataError(
            f"no training images found: looked in {where} for files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )

    test: list[ImageSample] = []
    if anomalous_dir is not None:
        test.extend(
            _anomalous_samples(
                list_images(anomalous_dir), anomalous_dir, ANOMALOUS_DEFECT,
                root / FOLDER_MASKS_DIR,
            )
        )
    if test_normal_dir is not None:
        test.extend(ImageSample(p, 0, NORMAL_DEFECT, None) for p in list_images(test_normal_dir))
    return ImageDataset(root=root, layout="folder", train=train, test=test)


def load_dataset(root: str | Path) -> ImageDataset:
    """List the files of the dataset at `root`, detecting its layout (see module docstring).

    Raises DataError when `root` is missing or not a directory, when no training images are
    found (naming the folders looked in), or when the layout is ambiguous.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a directory; expected a dataset folder")
    if (root / "train").is_dir() or (root / "test").is_dir():
        return _load_mvtec(root)
    return _load_folder(root)


def missing_normals(dataset: ImageDataset) -> str:
    """Where a dataset's normal test images belong, for an error that names the folder."""
    if dataset.layout == "mvtec":
        return f"{dataset.root / 'test' / NORMAL_DEFECT} (missing or without images)"
    return f"{dataset.root / FOLDER_TEST_NORMAL_DIRS[0]} (or {FOLDER_TEST_NORMAL_DIRS[1]}/; neither holds images)"


def missing_anomalies(dataset: ImageDataset) -> str:
    """Where a dataset's anomalous test images belong."""
    if dataset.layout == "mvtec":
        return f"{dataset.root / 'test'}/<defect>/ (no folder besides good/ holds images)"
    return f"{dataset.root / FOLDER_ANOMALOUS_DIRS[0]} (or {', '.join(FOLDER_ANOMALOUS_DIRS[1:])}; none holds images)"


def load_mask_for(
    sample: ImageSample,
    image_shape: Sequence[int],
    shape: Sequence[int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> np.ndarray | None:
    """The bool defect mask of `sample`, resized (nearest) to ``shape=(height, width)``.

    `image_shape` is the ORIGINAL shape of the sample's image as returned by
    `read_image` (``(H, W)`` or ``(H, W, 3)``); `shape` defaults to it. Returns:

    * an all-False mask when the sample is normal (label 0) and has no mask file;
    * None when the sample is anomalous but has no mask (no pixel ground truth: image-level
      metrics only);
    * otherwise the mask read from `sample.mask_path` (for a folder of region masks, MVTec
      LOCO's layout, the union of its masks, each checked like a single one).

    Raises DataError naming both the mask and the image when the mask's original size
    differs from `image_shape`, since resizing then would silently misalign them.
    """
    if len(image_shape) not in (2, 3):
        raise DataError(f"image_shape must be (height, width[, channels]), got {image_shape!r}")
    original = (int(image_shape[0]), int(image_shape[1]))
    target = original if shape is None else (int(shape[0]), int(shape[1]))
    if sample.mask_path is None:
        if sample.label == 0:
            return np.zeros(target, dtype=bool)
        return None
    files = list_images(sample.mask_path) if sample.mask_path.is_dir() else [sample.mask_path]
    if not files:
        raise DataError(f"mask folder {sample.mask_path} holds no mask images")
    union = None
    for path in files:
        mask = read_mask(path, max_pixels=max_pixels)
        if mask.shape != original:
            raise DataError(
                f"mask {path} is {mask.shape[1]}x{mask.shape[0]} (width x height) but "
                f"its image {sample.path} is {original[1]}x{original[0]}; expected the same size"
            )
        union = mask if union is None else union | mask
    return resize_mask(union, target)

