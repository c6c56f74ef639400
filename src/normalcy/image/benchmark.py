"""`normalcy image benchmark`: every detector on every MVTec-layout category under a folder.

Each (detector, category) pair runs in a fresh process so that its peak memory is its own.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from pathlib import Path

from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError

PACKAGES = ("torch", "faiss-cpu", "numpy", "scikit-learn", "scipy", "pillow")
COLUMNS = ["detector", "dataset", "image_auroc", "pixel_auroc", "aupro", "image_f1_max",
           "pixel_f1_max", "fit_seconds", "predict_images_per_second", "peak_memory_mb",
           "n_train", "n_test"]


def categories(root: Path) -> list[Path]:
    """root itself when it is one category (has train/), else its subfolders that are."""
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is not a directory")
    if (root / "train").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "train").is_dir())
    if not found:
        raise DataError(f"no MVTec-layout category (a folder with train/) in {root}")
    return found


def run(root: str | Path, detectors: list[str] | None, params: dict, json_path: str | Path
        ) -> tuple[Path, Path, list[dict]]:
    """Every detector named (default: every registered image detector) on every category."""
    from normalcy.core.registry import detector_class
    from normalcy.core.registry import detectors as registered

    detectors = list(detectors or registered("image"))
    for name in detectors:
        detector_class("image", name)  # an unknown name fails here, before any run
    records = []
    context = multiprocessing.get_context("spawn")
    for category in categories(Path(root)):
        for name in detectors:
            print(f"benchmark: {name} on {category.name} ...", file=sys.stderr, flush=True)
            pool = context.Pool(1)
            try:
                records.append(pool.apply(_one, (str(category), name, params)))
            finally:
                pool.close()  # the worker exits normally, so its libraries clean up after themselves
                pool.join()
    json_out, md_out = write_results(records, json_path, PACKAGES, "Image benchmark", COLUMNS, params)
    return json_out, md_out, records


def _one(category: str, name: str, params: dict) -> dict:
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate

    dataset = load_dataset(category)
    # Settings shared by the run (e.g. coreset_ratio) go to the detectors that take them.
    accepted = parameter_names(detector_class("image", name))
    detector = build("image", name, {k: v for k, v in params.items() if k in accepted and v is not None})
    start = time.perf_counter()
    detector.fit(dataset.train)
    fit_seconds = time.perf_counter() - start
    metrics, _, _ = evaluate(detector, dataset)
    return {
        "detector": name,
        "dataset": Path(category).name,
        **{k: metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")},
        "fit_seconds": fit_seconds,
        "predict_images_per_second": metrics["images_per_second"],
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_train": len(dataset.train),
        "n_test": metrics["n_images"],
    }
