"""The table jobs behind the CLI: fit with a calibrated threshold, score a file into a file,
evaluate on labelled rows. Outputs appear whole or not at all."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core import metrics
from normalcy.core.benchmark import current_umask
from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.registry import build
from normalcy.core.threshold import ThresholdStrategy
from normalcy.tabular.base import TabularDetector
from normalcy.tabular.data import check_strict, output_format, read_table, row_of, write_table

OUTPUT_COLUMNS = ("score", "label")


def fit_model(data, detector: TabularDetector | str, threshold: ThresholdStrategy, holdout: float = 0.1,
              drop: list[str] | None = None, seed: int = 0, strict: bool = False) -> TabularDetector:
    """Fit `detector` (or a new one of that registry name) on the rows of `data` less a random
    `holdout` fraction, whose scores set the threshold (`normalcy.core.holdout.fit_with_holdout`);
    a fixed threshold fits every row. With `strict`, a column of numbers holding a text cell is
    an error instead of a warning."""
    if isinstance(detector, str):
        detector = build("tabular", detector)
    frame, name = read_table(data)
    frame = drop_columns(frame, drop, name)
    if strict:
        check_strict(frame, name)
    return fit_with_holdout(detector, frame, threshold, holdout, seed, unit="rows", name=name)


def score_to_file(detector: TabularDetector, data, out: str | Path, explain: bool = False) -> pd.DataFrame:
    """The input rows with `score` and `label` columns added (and with `explain`, `top_column`:
    the column that added most to the row's score), written to `out` (.csv, .tsv or .parquet)
    through a temporary file, so a failure leaves `out` as it was."""
    out = Path(out)
    output_format(out)
    detector._require_threshold()
    frame, name = read_table(data)
    added = [*OUTPUT_COLUMNS, "top_column"] if explain else list(OUTPUT_COLUMNS)
    taken = [c for c in added if c in frame.columns]
    if taken:
        raise DataError(f"{name} already has column(s) {', '.join(taken)}; rename them before scoring")
    if explain:
        explanation = detector.explain(frame)
        scores = explanation.scores
    else:
        scores = detector.decision_function(frame)
    result = frame.assign(score=scores, label=(scores >= detector.threshold_).astype(np.int8))
    if explain:
        result["top_column"] = [top[0] for top in explanation.top(1)]
    write_table_atomic(result, out)
    return result


def write_table_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write `frame` to `out` (.csv, .tsv or .parquet) through a temporary sibling file; the
    file gets the mode the umask gives new files (mkstemp alone would make it 0600)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write_table(frame, Path(tmp))
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def drop_columns(frame: pd.DataFrame, drop: list[str] | None, name: str) -> pd.DataFrame:
    if not drop:
        return frame
    unknown = [c for c in drop if c not in frame.columns]
    if unknown:
        raise DataError(f"{name}: cannot drop unknown column(s) {', '.join(unknown)}")
    if len(drop) >= frame.shape[1]:
        raise DataError(f"{name}: dropping {', '.join(drop)} leaves no column to learn from")
    return frame.drop(columns=drop)


def evaluate(detector: TabularDetector, data, label_column: str) -> dict:
    """Score the labelled rows of `data` (label 1 = anomaly, 0 = normal) with a fitted detector:
    AUROC, AUPRC, the best F1 over all thresholds, and precision, recall and F1 at the model's
    own threshold (None without one), with the rows, anomalies and seconds it took."""
    frame, name = read_table(data)
    if label_column not in frame.columns:
        raise DataError(f"{name}: no label column {label_column!r}; columns are {', '.join(frame.columns)}")
    labels = _labels(frame[label_column], label_column, name)
    start = time.perf_counter()
    scores = detector.decision_function(frame.drop(columns=[label_column]))
    seconds = time.perf_counter() - start
    return metrics_report(labels, scores, detector.threshold_, len(frame), seconds)


def metrics_report(labels: np.ndarray, scores: np.ndarray, threshold: float | None, n_items: int,
                   seconds: float) -> dict:
    """The evaluate figures of tables and text, under the same names: AUROC, AUPRC, the best
    F1 and its threshold, precision, recall, F1 and false-positive rate at `threshold` (None
    without one), the items, anomalies, seconds and items per second."""
    f1_best, f1_threshold = metrics.f1_max(labels, scores)
    result = {"auroc": metrics.auroc(labels, scores), "auprc": metrics.auprc(labels, scores),
              "f1_max": f1_best, "f1_max_threshold": f1_threshold, "threshold": threshold,
              "precision": None, "recall": None, "f1": None, "fpr": None,
              "n_items": n_items, "n_anomalies": int(labels.sum()), "seconds": seconds,
              "items_per_second": n_items / max(seconds, 1e-9)}
    if threshold is not None:
        at = metrics.binary_scores(labels, scores, threshold)
        result.update({k: at[k] for k in ("precision", "recall", "f1", "fpr")})
    return result


def _labels(series: pd.Series, column: str, name: str) -> np.ndarray:
    """0/1 labels; true/false are accepted, anything else (text, 2, a missing label) is an error."""
    if pd.api.types.is_bool_dtype(series.dtype) and not series.isna().any():
        labels = series.to_numpy(dtype=np.int64)
    else:
        values = pd.to_numeric(series, errors="coerce")
        bad = values.isna() | ~values.isin([0, 1])
        if bad.any():
            position = np.flatnonzero(bad.to_numpy())[0]
            row, value = row_of(series, position), series.iloc[position]
            value = value.item() if isinstance(value, np.generic) else value
            raise DataError(f"{name}: label column {column!r} must hold 0 (normal) or 1 (anomaly), "
                            f"got {value!r} at row {row}")
        labels = values.to_numpy(dtype=np.int64)
    if labels.min() == labels.max():
        raise DataError(f"{name}: label column {column!r} holds only {'anomalies (1)' if labels[0] else 'normal rows (0)'}; "
                        "evaluation needs both")
    return labels
