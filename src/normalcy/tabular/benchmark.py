"""`normalcy table benchmark`: every detector on every dataset of a folder of .npz files (X:
rows x columns, y: 1 = anomaly), ADBench's unsupervised protocol: fit on all rows without
labels, score the same rows, AUROC and AUPRC against y.

Datasets with more than `max_rows` rows are subsampled (seeded, stratified by label) so that
a run fits a small machine; each record says how many rows it used.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError

PACKAGES = ("numpy", "scipy", "scikit-learn", "faiss-cpu", "pandas")
COLUMNS = ["detector", "dataset", "auroc", "auprc", "fit_seconds", "score_seconds", "n_rows", "n_columns",
           "anomaly_rate"]
PROTOCOL = "unsupervised: fit on all rows, score all rows"


def datasets(root: Path) -> list[Path]:
    """root itself when it is one .npz file, else the .npz files in it."""
    if root.is_file() and root.suffix == ".npz":
        return [root]
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is neither a folder nor an .npz file")
    found = sorted(root.glob("*.npz"), key=lambda p: (len(p.name.split("_")[0]), p.name))
    if not found:
        raise DataError(f"no .npz datasets in {root}")
    return found


def load_npz(path: Path, max_rows: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            X, y = np.asarray(npz["X"], dtype=np.float64), np.asarray(npz["y"]).reshape(-1)
    except KeyError as exc:
        raise DataError(f"{path} has no array {exc}; expected X and y") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    if X.ndim != 2 or len(X) != len(y):
        raise DataError(f"{path}: X must be rows x columns with one y per row, got {X.shape} and {y.shape}")
    if max_rows is not None and len(X) > max_rows:
        rng = np.random.default_rng(seed)
        # Stratified: each label keeps its share of the rows.
        keep = np.concatenate([rng.choice(np.flatnonzero(y == v), size=max(1, round(max_rows * np.mean(y == v))),
                                          replace=False) for v in np.unique(y)])
        keep.sort()
        X, y = X[keep], y[keep]
    return X, y


def run(root: str | Path, detectors: list[str], json_path: str | Path, max_rows: int | None = 10000,
        seed: int = 0) -> tuple[Path, Path, list[dict]]:
    from normalcy.tabular import DETECTORS

    records = []
    for path in datasets(Path(root)):
        X, y = load_npz(path, max_rows, seed)
        for name in detectors:
            print(f"benchmark: {name} on {path.stem} ({len(X)} rows) ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            detector = DETECTORS[name]().fit(X)
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            scores = detector.score(X)
            score_seconds = time.perf_counter() - start
            records.append({
                "detector": name, "dataset": path.stem, "library": "normalcy", "protocol": PROTOCOL,
                "auroc": metrics.auroc(y, scores), "auprc": metrics.auprc(y, scores),
                "fit_seconds": fit_seconds, "score_seconds": score_seconds,
                "n_rows": len(X), "n_columns": X.shape[1], "anomaly_rate": float(np.mean(y)),
            })
    settings = {"max_rows": max_rows, "seed": seed, "protocol": PROTOCOL}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Table benchmark", COLUMNS, settings)
    return json_out, md_out, records
