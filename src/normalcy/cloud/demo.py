"""`normalcy cloud demo`: the 3D job end to end on synthetic data made on the spot.

It synthesizes scanned brackets (normalcy.cloud.synth: natural variation, scanner noise, any
pose) with the five defect kinds and their per-point truth, fits the FPFH memory bank with a
held-out threshold, evaluates, predicts (scored PLY files) and writes an HTML report in which
each test cloud can be turned. Small by default: a minute or two on two cores.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from normalcy.cloud.base import CloudDetector
from normalcy.cloud.datasets import CloudDataset, load_dataset
from normalcy.cloud.evaluate import evaluate
from normalcy.cloud.io import read_cloud
from normalcy.cloud.report import write_report
from normalcy.cloud.synth import write_dataset
from normalcy.cloud.workflow import fit_model, predict_to_folder
from normalcy.core.holdout import CalibrationWarning
from normalcy.core.registry import build
from normalcy.core.threshold import FalseAlarmRate

PART = "bracket"


def run(out: str | Path, threads: int | None = None, *, n_train: int = 12, n_good: int = 4, n_per_defect: int = 2,
        n_points: int = 8000) -> tuple[Path, dict]:
    """Make the dataset, fit, evaluate, predict and write the report; returns the report's
    path and the metrics."""
    out = Path(out)
    write_dataset(out / "data", (PART,), n_train=n_train, n_good=n_good, n_per_defect=n_per_defect,
                  n_points=n_points)
    data = out / "data" / PART
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # the report states the calibration's caveat
        detector = fit_model(data, build("cloud", "fpfh", {"threads": threads}), FalseAlarmRate(0.01), holdout=0.2)
    detector.save(out / "model")
    dataset = load_dataset(data)
    metrics, scores, per_point = evaluate(detector, dataset)
    predict_to_folder(detector, [s.path for s in dataset.test], out / "predictions")
    report = evaluation_report(out / "report.html", f"normalcy cloud demo: synthetic scanned {PART}s", detector,
                               dataset, metrics, scores, per_point)
    return report, metrics


def evaluation_report(path: str | Path, title: str, detector: CloudDetector, dataset: CloudDataset, metrics: dict,
                      scores: np.ndarray, per_point: np.ndarray) -> Path:
    """The HTML report of an evaluation: metrics, per-defect figures, then every test cloud."""
    calibration = detector.calibration_
    summary = {"detector": type(detector).__name__, "training clouds": len(dataset.train)}
    if detector.threshold_ is not None:
        how = f": {calibration.describe('clouds')}" if calibration is not None else ""
        summary["threshold"] = f"{detector.threshold_:.4f}{how}"
        if calibration is not None and calibration.note:
            summary["threshold caveat"] = calibration.note
    summary.update({k: metrics[k] for k in ("object_auroc", "point_auroc", "point_aupro", "object_f1_max")})
    for kind, figures in metrics["by_defect"].items():
        point = figures["point_auroc"]
        summary[f"{kind}: object / point AUROC"] = (f"{figures['object_auroc']:.3f} / "
                                                    f"{'n/a' if point is None else format(point, '.3f')}")
    threshold = detector.threshold_ if detector.threshold_ is not None else float(np.median(scores))
    items = [{"name": s.path.relative_to(dataset.root).as_posix(), "truth": s.defect, "score": float(score),
              "label": int(score >= threshold), "points": read_cloud(s.path).points, "point_scores": local}
             for s, score, local in zip(dataset.test, scores, per_point)]
    return write_report(path, title, summary, items, detector.threshold_)
