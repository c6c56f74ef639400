"""The text jobs behind the CLI: fit with a calibrated threshold, score a file into a file,
evaluate on labelled texts. Outputs appear whole or not at all."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_atomic
from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, Fixed, ThresholdStrategy
from normalcy.text.data import read_texts
from normalcy.text.detector import TextDetector

OUTPUT_SUFFIXES = (".csv", ".jsonl")


def fit_model(texts: list[str], detector: TextDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              seed: int = 0) -> TextDetector:
    """Fit on the texts less a random `holdout` fraction, whose scores set the threshold (the
    scores of fitted texts are optimistically low). A fixed threshold needs no holdout."""
    if isinstance(threshold, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies; text models are fitted on normal texts: "
                        "use fpr:RATE or fixed:VALUE")
    if isinstance(threshold, Fixed):
        detector.fit(texts)
        detector.threshold_ = threshold.compute()
        return detector
    if not 0.0 < holdout < 1.0:
        raise DataError(f"holdout must be in (0, 1) for threshold {threshold.spec()}, got {holdout}")
    n_held = int(round(holdout * len(texts)))
    if not 0 < n_held < len(texts):
        raise DataError(f"threshold {threshold.spec()} needs held-out texts and texts to fit: {len(texts)} texts "
                        f"with a holdout of {holdout} hold out {n_held}; add texts or use a fixed threshold")
    order = np.random.default_rng(seed).permutation(len(texts))
    detector.fit([texts[i] for i in np.sort(order[n_held:])])
    return detector.calibrate([texts[i] for i in np.sort(order[:n_held])], threshold)


def score_to_file(detector: TextDetector, texts: list[str], out: str | Path) -> dict:
    """One record per text, in order: text, score, label and (kNN) nearest, the closest
    training text; written as .csv or .jsonl through a temporary file."""
    out = check_output(out)
    threshold = detector._require_threshold()
    scores, nearest = detector.score_with_evidence(texts)
    labels = (scores >= threshold).astype(int)
    columns = {"text": texts, "score": scores, "label": labels}
    if nearest is not None:
        columns["nearest"] = nearest
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
    """AUROC and AUPRC of the scores, and precision, recall and F1 at the model's threshold."""
    texts, labels = read_texts(data, column, label_column, errors)
    start = time.perf_counter()
    scores = detector.score(texts)
    seconds = time.perf_counter() - start
    result = {"n": len(texts), "n_anomalies": int(labels.sum()), "auroc": metrics.auroc(labels, scores),
              "auprc": metrics.auprc(labels, scores), "lines_per_second": len(texts) / max(seconds, 1e-9)}
    if detector.threshold_ is not None:
        at = metrics.binary_scores(labels, scores, detector.threshold_)
        result.update({k: at[k] for k in ("precision", "recall", "f1", "fpr")}, threshold=detector.threshold_)
    return result
