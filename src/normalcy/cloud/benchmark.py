"""`normalcy cloud benchmark`: every detector on every part folder under a root (as
`normalcy cloud synthesize` writes them), beside two trivial baselines:

- random: a uniform random score per point (seeded), the object score their maximum;
- global-shape: the object score is the largest |z-score|, against the training clouds, of
  the cloud's global shape (its three principal extents and its point count); every point of
  a cloud gets that score, so its point AUROC is that of knowing only which clouds are bad.

Each (detector, part) pair runs in a fresh process (`jobs` at a time) so that its peak memory is its own; the
load average before and after each run is recorded, and CPU seconds (the process's, all
threads) beside wall seconds, since timings on a shared machine mean little without them. The table has per-defect object / point AUROC and a mean row per detector.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError

PACKAGES = ("torch", "faiss-cpu", "numpy", "scipy", "scikit-learn")
BASELINES = ("random", "global-shape")
FIGURES = ("object_auroc", "point_auroc", "point_aupro")


def parts(root: Path) -> list[Path]:
    """root itself when it is one part folder (has train/), else its subfolders that are."""
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is not a directory")
    if (root / "train").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "train").is_dir())
    if not found:
        raise DataError(f"no part folder (a folder with train/) in {root}")
    return found


def run(root: str | Path, detectors: list[str] | None, params: dict, json_path: str | Path, jobs: int = 1
        ) -> tuple[Path, Path, list[dict]]:
    """`jobs` (detector, part) runs at a time, each in a fresh process; records in a fixed
    order whatever finishes first."""
    from normalcy.core.registry import detector_class
    from normalcy.core.registry import detectors as registered

    detectors = list(detectors or registered("cloud"))
    for name in detectors:
        if name not in BASELINES:
            detector_class("cloud", name)  # an unknown name fails here, before any run
    if not (isinstance(jobs, int) and 1 <= jobs <= 64):
        raise DataError(f"jobs must be an integer in [1, 64], got {jobs!r}")
    tasks = [(str(part), name, params) for part in parts(Path(root)) for name in [*detectors, *BASELINES]]
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, maxtasksperchild=1) as pool:
        pending = [pool.apply_async(_one, task) for task in tasks]
        records = []
        for (part, name, _), result in zip(tasks, pending):
            record = result.get()
            records.append(record)
            print(f"benchmark: {name} on {Path(part).name}: object AUROC {record['object_auroc']:.3f}, point AUROC "
                  f"{_two(record['point_auroc'])}, fit {record['fit_seconds']:.0f} s ({record['fit_cpu_seconds']:.0f} s CPU), "
                  f"{record['clouds_per_second']:.2f} clouds/s ({record['clouds_per_cpu_second']:.2f} per CPU second)",
                  file=sys.stderr, flush=True)
    kinds = sorted(set().union(*(r["by_defect"] for r in records)))
    for record in records:
        for kind in kinds:
            figures = record["by_defect"].get(kind)
            record[kind] = "n/a" if figures is None else \
                f"{figures['object_auroc']:.2f} / " + _two(figures["point_auroc"])
    records += _means(records, kinds)
    columns = ["detector", "dataset", *FIGURES, *kinds, "fit_seconds", "fit_cpu_seconds", "clouds_per_second",
               "clouds_per_cpu_second", "peak_memory_mb",
               "load_before", "load_after", "n_train", "n_test"]
    json_out, md_out = write_results(records, json_path, PACKAGES, "Point-cloud benchmark (synthetic data)",
                                     columns, params)
    return json_out, md_out, records


def _one(part: str, name: str, params: dict) -> dict:
    from normalcy.cloud.datasets import load_dataset
    from normalcy.cloud.evaluate import evaluate
    from normalcy.core.progress import set_progress
    from normalcy.core.registry import build, detector_class, parameter_names

    set_progress(False)
    dataset = load_dataset(part)
    load_before = os.getloadavg()[0]
    if name in BASELINES:
        detector = _baseline(name)
    else:
        accepted = parameter_names(detector_class("cloud", name))
        detector = build("cloud", name, {k: v for k, v in params.items() if k in accepted and v is not None})
    start, cpu = time.perf_counter(), time.process_time()
    detector.fit(dataset.train)
    fit_seconds, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    cpu = time.process_time()
    metrics, _, _ = evaluate(detector, dataset)
    # Reading the files and the metrics are in this CPU time too: an upper bound on scoring's.
    evaluate_cpu = time.process_time() - cpu
    record = {"detector": name, "dataset": Path(part).name, **{k: metrics[k] for k in FIGURES},
            "by_defect": metrics["by_defect"], "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu,
            "clouds_per_second": metrics["clouds_per_second"],
            "clouds_per_cpu_second": metrics["n_clouds"] / evaluate_cpu,
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load_before": load_before, "load_after": os.getloadavg()[0],
            "n_train": len(dataset.train), "n_test": metrics["n_clouds"]}
    # Each run's full record as soon as it is done: an interrupted benchmark loses no finished run.
    print("benchmark record: " + json.dumps(record), file=sys.stderr, flush=True)
    return record


def _baseline(name: str):
    from normalcy.cloud.base import CloudDetector

    class Baseline(CloudDetector):
        """Not registered by name: used here only."""

        _fitted_attribute = "stats_"

        def _fit_prepared(self, clouds):
            self.stats_ = np.array([_shape(c.points) for c in clouds])

        def _score_prepared(self, cloud):
            if name == "random":
                seed = int(np.abs(cloud.points[:8]).sum() * 1e6) % 2**32  # the same cloud, the same scores
                return np.random.default_rng(seed).uniform(size=len(cloud.xyz))
            z = (_shape(cloud.points) - self.stats_.mean(axis=0)) / (self.stats_.std(axis=0) + 1e-12)
            return np.full(len(cloud.xyz), np.abs(z).max())

    return Baseline(sampling="random")


def _shape(points: np.ndarray) -> np.ndarray:
    values = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1]
    return np.r_[np.sqrt(np.maximum(values, 0)), len(points)]


def _means(records: list[dict], kinds: list[str]) -> list[dict]:
    """One row per detector: each figure's mean over the part kinds (per defect kind too)."""
    rows = []
    for name in dict.fromkeys(r["detector"] for r in records):
        mine = [r for r in records if r["detector"] == name]
        row = {"detector": name, "dataset": "mean"}
        for key in (*FIGURES, "fit_seconds", "fit_cpu_seconds", "clouds_per_second", "clouds_per_cpu_second"):
            values = [r[key] for r in mine if r[key] is not None]
            row[key] = float(np.mean(values)) if values else None
        for kind in kinds:
            obj = [r["by_defect"][kind]["object_auroc"] for r in mine if kind in r["by_defect"]]
            pts = [r["by_defect"][kind]["point_auroc"] for r in mine
                   if kind in r["by_defect"] and r["by_defect"][kind]["point_auroc"] is not None]
            row[kind] = f"{np.mean(obj):.2f} / " + (_two(float(np.mean(pts))) if pts else "n/a")
        rows.append(row)
    return rows


def _two(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
