"""`normalcy demo`: the main job end to end on data made on the spot.

It draws a small MVTec-layout dataset of synthetic machined discs (brushed texture, a bore,
small shifts and lighting changes) with three defect kinds and their masks, fits PatchCore
with a held-out threshold, evaluates, predicts with overlays and writes an HTML report.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from normalcy.core.holdout import CalibrationWarning
from normalcy.core.registry import build
from normalcy.core.threshold import FalseAlarmRate
from normalcy.image.datasets import load_dataset
from normalcy.image.evaluate import evaluate
from normalcy.image.report import write_report
from normalcy.image.workflow import fit_model, predict_to_folder

SIZE = 256
DEFECTS = ("scratch", "spot", "chip")


def make_part(rng: np.random.Generator) -> np.ndarray:
    """One defect-free part: a brushed disc with a bore on a dark background."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    cy, cx = SIZE / 2 + rng.normal(0, 2, 2)
    r = np.hypot(yy - cy, xx - cx)
    angle = np.arctan2(yy - cy, xx - cx)
    light = 1.0 + rng.normal(0, 0.04)
    brushed = 150 + 18 * np.sin(r * 0.9 + rng.uniform(0, 6.28)) + 10 * np.cos(angle * 3)
    img = np.where(r < 100, brushed * light, 40.0)
    img = np.where(r < 28, 20.0, img)  # the bore
    img += rng.normal(0, 4, img.shape)
    rgb = np.stack([img, img * 0.97, img * 0.92], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def add_defect(img: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A copy of img with one defect on the disc, and its mask."""
    out = img.astype(np.float32).copy()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    radius, theta = rng.uniform(45, 85), rng.uniform(0, 2 * np.pi)
    cy, cx = SIZE / 2 + radius * np.sin(theta), SIZE / 2 + radius * np.cos(theta)
    if kind == "scratch":
        direction = rng.uniform(0, np.pi)
        dy, dx = np.sin(direction), np.cos(direction)
        along = (yy - cy) * dy + (xx - cx) * dx
        across = np.abs((yy - cy) * dx - (xx - cx) * dy)
        mask = (np.abs(along) < 22) & (across < 2.0)
        out[mask] *= 0.35
    elif kind == "spot":
        mask = np.hypot(yy - cy, xx - cx) < rng.uniform(6, 10)
        out[mask] = out[mask] * 0.3 + np.array([120, 70, 30]) * 0.7  # rust-coloured
    else:
        mask = (np.abs(yy - cy) < 8) & (np.abs(xx - cx) < 8)
        out[mask] = 40.0 + rng.normal(0, 4, (int(mask.sum()), 1))  # a chip shows background
    return np.clip(out, 0, 255).astype(np.uint8), mask


def make_dataset(root: str | Path, n_train: int = 40, n_good: int = 8, n_per_defect: int = 6,
                 seed: int = 0) -> Path:
    root = Path(root)
    rng = np.random.default_rng(seed)
    (root / "train" / "good").mkdir(parents=True, exist_ok=True)
    (root / "test" / "good").mkdir(parents=True, exist_ok=True)
    for i in range(n_train):
        Image.fromarray(make_part(rng)).save(root / "train" / "good" / f"{i:03d}.png")
    for i in range(n_good):
        Image.fromarray(make_part(rng)).save(root / "test" / "good" / f"{i:03d}.png")
    for kind in DEFECTS:
        (root / "test" / kind).mkdir(parents=True, exist_ok=True)
        (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_defect):
            img, mask = add_defect(make_part(rng), kind, rng)
            Image.fromarray(img).save(root / "test" / kind / f"{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


def run(out: str | Path, threads: int | None = None, *, n_train: int = 40, n_good: int = 8,
        n_per_defect: int = 6) -> tuple[Path, dict]:
    """Make the dataset (its sizes as `make_dataset`'s), fit, evaluate, predict and write the
    report; returns the report's path and the metrics."""
    out = Path(out)
    data = make_dataset(out / "data", n_train, n_good, n_per_defect)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # the report states the calibration's caveat
        detector = fit_model(data, build("image", "patchcore", {"threads": threads}), FalseAlarmRate(0.01))
    detector.save(out / "model")
    dataset = load_dataset(data)
    metrics, _ = evaluate(detector, dataset)
    rows = predict_to_folder(detector, [s.path for s in dataset.test], out / "predictions")
    truth = {str(s.path): s.defect for s in dataset.test}
    items = [{"overlay": f"predictions/{r['overlay']}", "name": Path(r["path"]).relative_to(data / "test").as_posix(),
              "truth": truth[r["path"]], "score": r["score"], "label": r["label"]} for r in rows]
    summary = {"model": "PatchCore (efficientnet-lite0, 1% coreset)", "training images": len(dataset.train),
               "threshold": f"{detector.threshold_:.4f}: {detector.calibration_.describe('images')}",
               **({"threshold caveat": detector.calibration_.note} if detector.calibration_.note else {}),
               **{k: metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max",
                                          "precision_at_threshold", "recall_at_threshold")}}
    report = write_report(out / "report.html", "normalcy demo: synthetic machined discs", summary, items)
    return report, metrics
