"""The cloud jobs behind the CLI and the demo: fit with a calibrated threshold, predict to a
folder (results.csv, a scored PLY per cloud, optional multi-view PNGs), evaluate with an HTML
report. Outputs appear whole or not at all."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from normalcy.cloud.base import CloudDetector
from normalcy.cloud.datasets import load_dataset
from normalcy.cloud.io import is_cloud_file, read_cloud, write_ply
from normalcy.cloud.report import views_png
from normalcy.core.errors import DataError, NormalcyError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.threshold import ThresholdStrategy
from normalcy.image.overlay import color_range, colorize

RESULT_COLUMNS = ["path", "score", "label", "threshold", "points", "scored", "error"]


class SkippedCloudWarning(UserWarning):
    """An unreadable cloud was skipped (predict --skip-bad)."""


def fit_model(data: str | Path, detector: CloudDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              validation: str | Path | None = None, seed: int = 0) -> CloudDetector:
    """Fit `detector` on the normal training clouds of `data` and set its threshold from
    held-out normal clouds (or a labelled validation dataset); see
    `normalcy.core.holdout.fit_with_holdout`."""
    dataset = load_dataset(data)
    if not dataset.train:
        raise DataError(f"{data} has no training clouds (train/good/)")
    labelled = None
    if validation is not None:
        val = load_dataset(validation).test
        if not val:
            raise DataError(f"validation data {validation} has no test clouds")
        labelled = ([s.path for s in val], np.array([s.label for s in val]))
    return fit_with_holdout(detector, dataset.train, threshold, holdout, seed, labelled, unit="clouds",
                            name=str(data))


def expand_inputs(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders as the cloud files anywhere below them (hidden ones skipped)."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(f for f in p.rglob("*") if f.is_file() and is_cloud_file(f)
                                and not any(part.startswith(".") for part in f.relative_to(p).parts)))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"input {p} does not exist")
    if not found:
        raise DataError("no point-cloud files found in the given inputs")
    return found


def predict_to_folder(detector: CloudDetector, paths: list[Path], out_dir: str | Path, on_error: str = "raise",
                      views: bool = False) -> list[dict]:
    """Score clouds; write results.csv, `<name>_scored.ply` per cloud (its points coloured by
    score, with a float `score` property) and with `views` a `<name>_views.png`. Written into
    a temporary folder first and moved into out_dir at the end."""
    threshold = detector._require_threshold()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".predict-", dir=out_dir))
    rows: list[dict] = []
    names: set[str] = set()
    common = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    try:
        for path in paths:
            try:
                cloud = read_cloud(path)
                prediction = detector.detect([cloud])
            except NormalcyError as exc:
                if on_error == "raise":
                    raise
                warnings.warn(str(exc), SkippedCloudWarning, stacklevel=2)
                rows.append({"path": str(path), "score": "", "label": "", "threshold": threshold, "points": "",
                             "scored": "", "error": str(exc)})
                continue
            scores = prediction.localization[0]
            vmin, vmax = color_range(threshold, scores)
            stem = _output_stem(path, common, names)
            write_ply(staging / f"{stem}_scored.ply", cloud.points, cloud.normals,
                      colorize((scores - vmin) / max(vmax - vmin, 1e-12)), {"score": scores})
            if views:
                views_png(staging / f"{stem}_views.png", cloud.points, scores, vmin, vmax,
                          f"{path.name}: score {prediction.scores[0]:.3f}")
            rows.append({"path": str(path), "score": float(prediction.scores[0]), "label": int(prediction.labels[0]),
                         "threshold": threshold, "points": len(cloud), "scored": f"{stem}_scored.ply", "error": ""})
        with open(staging / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows


def _output_stem(path: Path, common: Path, taken: set[str]) -> str:
    """The path relative to the inputs' common folder, folders joined by '__', so
    test/<defect>/000.ply files do not overwrite each other."""
    stem = "__".join(path.resolve().relative_to(common).with_suffix("").parts)
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}_{k}"
    taken.add(name)
    return name
