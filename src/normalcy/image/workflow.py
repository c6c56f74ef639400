"""The image jobs behind the CLI and the demo: fit with a calibrated threshold, predict with
overlays, evaluate with a report. Outputs appear whole or not at all."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from normalcy.core.errors import DataError, NormalcyError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.threshold import ThresholdStrategy
from normalcy.image.datasets import load_dataset
from normalcy.image.io import SkippedImageWarning, is_image_file, read_image
from normalcy.image.overlay import color_range, overlay, save_png

if TYPE_CHECKING:  # predict_to_folder also takes exported models, in the runtime without torch
    from normalcy.image.base import ImageDetector

RESULT_COLUMNS = ["path", "score", "label", "threshold", "overlay", "error"]


def fit_model(data: str | Path, detector: ImageDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              validation: str | Path | None = None, seed: int = 0) -> ImageDetector:
    """Fit `detector` on the normal training images of `data` and set its threshold.

    The threshold comes from a labelled validation dataset when one is given (needed for
    F1-optimal), else from `holdout` of the normal images kept out of fitting
    (`normalcy.core.holdout.fit_with_holdout`): scores of images a detector was fitted on are
    optimistically low, so they would set it too low.
    """
    dataset = load_dataset(data)
    if not dataset.train:
        raise DataError(f"{data} has no training images: expected normal images in {Path(data) / 'train' / 'good'}")
    labelled = None
    if validation is not None:
        val = load_dataset(validation).test
        if not val:
            raise DataError(f"validation data {validation} has no test images")
        labelled = ([s.path for s in val], np.array([s.label for s in val]))
    return fit_with_holdout(detector, dataset.train, threshold, holdout, seed, labelled, unit="images",
                            name=str(data))


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders as the images anywhere below them (hidden ones skipped); a
    missing path is an error."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(
                f for f in p.rglob("*")
                if f.is_file() and is_image_file(f)
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if not found:
        raise DataError("no images found in the given inputs")
    return found


def predict_to_folder(detector: ImageDetector, paths: list[Path], out_dir: str | Path,
                      on_error: str = "raise", batch_size: int = 16) -> list[dict]:
    """Score images, write `<stem>_overlay.png` per image and `results.csv` into out_dir.

    Everything is written into a temporary folder first and moved into out_dir at the end, so
    a failure leaves out_dir as it was.
    """
    threshold = detector._require_threshold()
    routes = hasattr(detector, "detect_with_products")  # a multi-product model: results.csv says the product
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".predict-", dir=out_dir))
    rows: list[dict] = []
    names: set[str] = set()
    common = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    try:
        for start in range(0, len(paths), batch_size):
            chunk, images = [], []
            for path in paths[start : start + batch_size]:
                try:
                    images.append(read_image(path))
                    chunk.append(path)
                except NormalcyError as exc:
                    if on_error == "raise":
                        raise
                    warnings.warn(str(exc), SkippedImageWarning, stacklevel=2)
                    rows.append({"path": str(path), "score": "", "label": "", "threshold": threshold,
                                 "overlay": "", "error": str(exc)})
            if not chunk:
                continue
            if routes:  # a multi-product model: the product each image matched, from the same pass
                prediction, products = detector.detect_with_products(images)
            else:
                prediction, products = detector.detect(images), None
            maps = prediction.localization
            vmin, vmax = color_range(threshold, maps) if maps is not None else (0, 1)
            for i, path in enumerate(chunk):
                overlay_name = ""
                if maps is not None:
                    overlay_name = _overlay_name(path, common, names)
                    save_png(overlay(images[i], maps[i], vmin, vmax), staging / overlay_name)
                rows.append({"path": str(path), "score": float(prediction.scores[i]),
                             "label": int(prediction.labels[i]), "threshold": threshold,
                             "overlay": overlay_name, "error": "",
                             **({"product": products[i]} if products is not None else {})})
        with open(staging / "results.csv", "w", newline="") as fh:
            product = ["product"] if routes else []
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS + product, restval="")
            writer.writeheader()
            writer.writerows(rows)
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def _overlay_name(path: Path, common: Path, taken: set[str]) -> str:
    """`<path relative to the inputs' common folder>_overlay.png`, folders joined by '__', so
    MVTec's test/<defect>/000.png files do not overwrite each other."""
    stem = "__".join(path.resolve().relative_to(common).with_suffix("").parts)
    name, k = f"{stem}_overlay.png", 1
    while name in taken:
        k += 1
        name = f"{stem}_{k}_overlay.png"
    taken.add(name)
    return name

