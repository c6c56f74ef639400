"""The event jobs behind the CLI: fit with a calibrated threshold, score a file into a file,
evaluate against labels. Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.results import Prediction
from normalcy.core.threshold import F1Optimal, ThresholdStrategy
from normalcy.events.base import EventDetector
from normalcy.events.data import read_events
from normalcy.tabular.data import output_format
from normalcy.tabular.workflow import write_table_atomic

OUTPUT_COLUMNS = ("score", "label", "least_compatible")


def fit_model(data, detector: EventDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              seed: int = 0) -> EventDetector:
    """Fit `detector` on the events of `data` less a random `holdout` fraction, whose scores set
    the threshold (scores of fitted events are optimistically low); a fixed threshold fits all.
    Events are fitted as normal, so an F1 threshold (which needs labelled anomalies) is refused."""
    if isinstance(threshold, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies; events are fitted on normal ones: use fpr:RATE "
                        "or fixed:VALUE")
    frame, name = read_events(data)
    return fit_with_holdout(detector, frame, threshold, holdout, seed, unit="events", name=name)


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
    explanation = detector.explain_frame(frame, name)
    prediction = Prediction.from_scores(explanation.scores, detector.threshold_)
    result = frame.assign(score=prediction.scores, label=prediction.labels,
                          least_compatible=[reasons[0] for reasons in explanation.evidence])
    write_table_atomic(result, out)
    return result


def evaluate(detector: EventDetector, data, label_column: str) -> dict:
    """AUROC, AUPRC and best F1 of the scores against a 0/1 label column; with a threshold,
    precision, recall, F1 and the confusion counts at it."""
    frame, name = read_events(data)
    if label_column not in frame.columns:
        raise DataError(f"{name}: no label column {label_column!r}; found {', '.join(frame.columns)}")
    labels = pd.to_numeric(frame[label_column], errors="coerce")
    if labels.isna().any() or not labels.isin((0, 1)).all():
        raise DataError(f"{name}: label column {label_column!r} must hold only 0 and 1")
    y = labels.to_numpy(dtype=np.int64)
    scores = detector.decision_frame(frame, name)
    f1, f1_threshold = metrics.f1_max(y, scores)
    result = {"detector": detector.name, "data": str(name), "n_events": int(len(y)), "n_anomalies": int(y.sum()),
              "threshold": detector.threshold_, "auroc": metrics.auroc(y, scores), "auprc": metrics.auprc(y, scores),
              "f1_max": f1, "f1_max_threshold": f1_threshold}
    if detector.threshold_ is not None:
        result.update(metrics.binary_scores(y, scores, detector.threshold_))
    return result
