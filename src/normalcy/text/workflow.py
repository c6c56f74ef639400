"""The text jobs behind the CLI: fit with a calibrated threshold, score a file into a file,
evaluate on labelled texts. Outputs appear whole or not at all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_atomic
from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.threshold import ThresholdStrategy
from normalcy.tabular.workflow import metrics_report
from normalcy.text.data import read_texts
from normalcy.text.detector import TextDetector

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def fit_model(texts: list[str], detector: TextDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              seed: int = 0, name: str = "the texts") -> TextDetector:
    """Fit on the texts less a random `holdout` fraction, whose scores set the threshold
    (`normalcy.core.holdout.fit_with_holdout`); a fixed threshold fits every text."""
    return fit_with_holdout(detector, texts, threshold, holdout, seed, unit="texts", name=name)


def score_to_file(detector: TextDetector, texts: list[str], out: str | Path) -> dict:
    """One record per text, in order: text, score, label and, for kNN models, `nearest` (the
    closest training text) and `nearest_weak` (1 when that text is too far to explain
    anything); written as .csv or .jsonl through a temporary file."""
    out = check_output(out)
    threshold = detector._require_threshold()
    explanation = detector.explain(texts)
    labels = (explanation.scores >= threshold).astype(int)
    columns = {"text": texts, "score": explanation.scores, "label": labels}
    if explanation.evidence is not None:
        columns["nearest"] = [evidence[0] for evidence in explanation.evidence]
        columns["nearest_weak"] = [int(len(evidence) > 1) for evidence in explanation.evidence]
    if out.suffix.lower() == ".csv":
        import pandas as pd

        body = pd.DataFrame(columns).to_csv(index=False)
    else:
        keys = list(columns)
        body = "".join(json.dumps(dict(zip(keys, (v.item() if hasattr(v, "item") else v for v in row))),
                                  ensure_ascii=False) + "\n" for row in zip(*columns.values()))
    write_atomic(out, body)
    return {"n": len(texts), "flagged": int(labels.sum())}


def check_output(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"output {out} must end in {' or '.join(OUTPUT_SUFFIXES)}")
    return out


def evaluate(detector: TextDetector, data: str | Path, column: str, label_column: str,
             errors: str = "strict") -> dict:
    """The figures `normalcy table evaluate` gives, under the same names
    (`normalcy.tabular.workflow.metrics_report`), for labelled texts."""
    texts, labels = read_texts(data, column, label_column, errors)
    if labels.min() == labels.max():
        raise DataError(f"{data}: label column {label_column!r} holds only "
                        f"{'anomalies (1)' if labels[0] else 'normal texts (0)'}; evaluation needs both")
    start = time.perf_counter()
    scores = detector.decision_function(texts)
    return metrics_report(np.asarray(labels), scores, detector.threshold_, len(texts), time.perf_counter() - start)
