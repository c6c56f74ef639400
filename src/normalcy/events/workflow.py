"""The event jobs behind the CLI: fit with a calibrated threshold, score a file into a file,
evaluate against labels. Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.results import Prediction
from normalcy.core.threshold import F1Optimal, Fixed, ThresholdStrategy
from normalcy.events.base import EventDetector
from normalcy.events.data import read_events
from normalcy.tabular.data import output_format
from normalcy.tabular.workflow import write_table_atomic

MODELS = ("ape", "frequency", "frequency-pairs")
OUTPUT_COLUMNS = ("score", "label", "least_compatible")


def make_detector(model: str, columns: list[str] | None, allow_missing: bool, seed: int) -> EventDetector:
    from normalcy.events import APE, Frequency

    if model == "ape":
        return APE(columns=columns, allow_missing=allow_missing, random_state=seed)
    if model in ("frequency", "frequency-pairs"):
        return Frequency(columns=columns, pairs=model == "frequency-pairs", allow_missing=allow_missing)
    raise DataError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")


def fit_model(data, model: str, threshold: ThresholdStrategy, holdout: float = 0.1,
              columns: list[str] | None = None, allow_missing: bool = False, seed: int = 0) -> EventDetector:
    """Fit on the events of `data` less a random `holdout` fraction, whose scores set the
    threshold (scores of fitted events are optimistically low); a fixed threshold fits all."""
    detector = make_detector(model, columns, allow_missing, seed)
    if isinstance(threshold, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies; events are fitted on normal ones: use fpr:RATE or fixed:VALUE")
    if not 0.0 <= holdout < 1.0:
        raise DataError(f"holdout must be in [0, 1), got {holdout}")
    frame, name = read_events(data)
    if isinstance(threshold, Fixed):
        detector.fit_frame(frame, name)
        detector.threshold_ = threshold.compute()
        return detector
    n_held = int(round(holdout * len(frame)))
    if not 0 < n_held < len(frame):
        raise DataError(f"threshold {threshold.spec()} needs held-out events and events to fit: {name} has "
                        f"{len(frame)} rows, a holdout of {holdout} holds out {n_held}; change --holdout "
                        "or use a fixed threshold")
    order = np.random.default_rng(seed).permutation(len(frame))
    detector.fit_frame(frame.iloc[np.sort(order[n_held:])], name)
    return detector.calibrate_scores(detector.score_frame(frame.iloc[np.sort(order[:n_held])], name), threshold)


def score_to_file(detector: EventDetector, data, out: str | Path) -> pd.DataFrame:
    """The input events plus `score`, `label` and `least_compatible` ("type=entity | type=entity",
    the pair that fits least well), written to `out` (.csv, .tsv or .parquet) through a temporary
    file, so a failure leaves `out` as it was."""
    out = Path(out)
    output_format(out)
    detector._require_threshold()
    frame, name = read_events(data)
    taken = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    if taken:
        raise DataError(f"{name} already has column(s) {', '.join(taken)}; rename them before scoring")
    prediction = Prediction.from_scores(detector.score_frame(frame, name), detector.threshold_)
    pair = detector.explain_frame(frame, name)
    least = (pair.type_a + "=" + pair.entity_a.astype(str) + " | " + pair.type_b + "=" + pair.entity_b.astype(str))
    result = frame.assign(score=prediction.scores, label=prediction.labels, least_compatible=least.to_numpy())
    write_table_atomic(result, out)
    return result


def evaluate(detector: EventDetector, data, label_column: str) -> dict:
    """AUROC, AUPRC and best F1 of the scores against a 0/1 label column; with a threshold, the
    confusion counts at it."""
    frame, name = read_events(data)
    if label_column not in frame.columns:
        raise DataError(f"{name}: no label column {label_column!r}; found {', '.join(frame.columns)}")
    labels = pd.to_numeric(frame[label_column], errors="coerce")
    if labels.isna().any() or not labels.isin((0, 1)).all():
        raise DataError(f"{name}: label column {label_column!r} must hold only 0 and 1")
    y = labels.to_numpy(dtype=np.int64)
    scores = detector.score_frame(frame, name)
    f1, f1_threshold = metrics.f1_max(y, scores)
    result = {"detector": type(detector).__name__, "data": str(name), "n_events": int(len(y)),
              "n_anomalies": int(y.sum()), "auroc": metrics.auroc(y, scores), "auprc": metrics.auprc(y, scores),
              "f1_max": f1, "f1_max_threshold": f1_threshold}
    if detector.threshold_ is not None:
        result["threshold"] = detector.threshold_
        result["at_threshold"] = metrics.binary_scores(y, scores, detector.threshold_)
    return result
