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
from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, Fixed, ThresholdStrategy
from normalcy.tabular import DETECTORS
from normalcy.tabular.base import TabularDetector
from normalcy.tabular.data import output_format, read_table, write_table

OUTPUT_COLUMNS = ("score", "label")


def fit_model(data, model: str, threshold: ThresholdStrategy, holdout: float = 0.1,
              drop: list[str] | None = None, seed: int = 0) -> TabularDetector:
    """Fit on the rows of `data` less a random `holdout` fraction, whose scores set the threshold:
    scores of rows a detector was fitted on are optimistically low, so they would set it too low.
    A fixed threshold needs no holdout: then every row is fitted."""
    if model not in DETECTORS:
        raise DataError(f"unknown model {model!r}; expected one of {', '.join(DETECTORS)}")
    if isinstance(threshold, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies; tables are fitted on normal rows: use fpr:RATE or fixed:VALUE")
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout must be in [0, 1), got {holdout}")
    frame, name = read_table(data)
    frame = drop_columns(frame, drop, name)
    detector = DETECTORS[model]()
    n_held = int(round(holdout * len(frame)))
    if isinstance(threshold, Fixed):
        detector.fit(frame)
        detector.threshold_ = threshold.compute()
        return detector
    if not 0 < n_held < len(frame):
        raise DataError(f"threshold {threshold.spec()} needs held-out rows and rows to fit: {name} has "
                        f"{len(frame)} rows, a holdout of {holdout} holds out {n_held}; change --holdout "
                        "or use a fixed threshold")
    order = np.random.default_rng(seed).permutation(len(frame))
    detector.fit(frame.iloc[np.sort(order[n_held:])])
    return detector.calibrate(frame.iloc[np.sort(order[:n_held])], threshold)


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
    prediction = detector.predict(frame)
    result = frame.assign(score=prediction.scores, label=prediction.labels)
    if explain:
        result["top_column"] = detector.explain(frame).idxmax(axis=1).to_numpy()
    write_table_atomic(result, out)
    return result


def write_table_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write `frame` to `out` (.csv, .tsv or .parquet) through a temporary sibling file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    try:
        write_table(frame, Path(tmp))
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
    scores = detector.score(frame.drop(columns=[label_column]))
    seconds = time.perf_counter() - start
    f1_best, f1_threshold = metrics.f1_max(labels, scores)
    result = {"auroc": metrics.auroc(labels, scores), "auprc": metrics.auprc(labels, scores),
              "f1_max": f1_best, "f1_max_threshold": f1_threshold, "threshold": detector.threshold_,
              "precision": None, "recall": None, "f1": None, "fpr": None,
              "n_rows": len(frame), "n_anomalies": int(labels.sum()), "seconds": seconds}
    if detector.threshold_ is not None:
        at = metrics.binary_scores(labels, scores, detector.threshold_)
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
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = series.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            raise DataError(f"{name}: label column {column!r} must hold 0 (normal) or 1 (anomaly), "
                            f"got {value!r} at row {row}")
        labels = values.to_numpy(dtype=np.int64)
    if labels.min() == labels.max():
        raise DataError(f"{name}: label column {column!r} holds only {'anomalies (1)' if labels[0] else 'normal rows (0)'}; "
                        "evaluation needs both")
    return labels
