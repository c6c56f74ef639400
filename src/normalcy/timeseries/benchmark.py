"""`normalcy ts benchmark`: every detector, causally, over the NAB corpus the way NAB runs them.

Each detector starts from nothing on each file and scores it reading by reading, learning as
it goes; NAB ignores the scores of the probationary first 15 % of each file. The scores
of all files then go to our NAB scorer (one threshold for the corpus, per profile), and to the
threshold-free metrics, which are averaged over the files that have labelled windows.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from normalcy.core.benchmark import write_results
from normalcy.core.progress import progress
from normalcy.timeseries import metrics
from normalcy.timeseries.data import TimeSeries
from normalcy.timeseries.nab import PROBATION, load_corpus, nab_scores, probation_length

PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn")
COLUMNS = ["detector", "dataset", "nab_standard", "nab_low_fp", "nab_low_fn", "vus_pr", "pate", "auc_pr",
           "seconds_per_1k_points", "n_files", "n_points"]


def run(root: str | Path, detectors: list[str], json_path: str | Path,
        params: dict | None = None) -> tuple[Path, Path, list[dict]]:
    corpus = load_corpus(root)
    records = [evaluate_detector(name, corpus, params or {}) for name in detectors]
    json_out, md_out = write_results(records, json_path, PACKAGES, "Time-series benchmark (NAB)", COLUMNS,
                                     {"probation": PROBATION, **(params or {})})
    return json_out, md_out, records


def evaluate_detector(name: str, corpus, params: dict) -> dict:
    from normalcy.core.registry import detector_class, parameter_names

    cls = detector_class("timeseries", name)
    accepted = parameter_names(cls)
    runs, seconds = [], 0.0
    print(f"benchmark: {name} on {len(corpus)} NAB files ...", file=sys.stderr, flush=True)
    for f in progress(corpus, desc=name, unit="file"):
        detector = cls(**{k: v for k, v in params.items() if k in accepted})
        start = time.perf_counter()
        scores = detector.score_causal(TimeSeries(f.values[:, None], ["value"], f.timestamps))
        seconds += time.perf_counter() - start
        runs.append((scores, f.windows))
    nab = nab_scores(runs)
    n_points = sum(len(f.values) for f in corpus)
    return {
        "detector": name,
        "dataset": "nab",
        "nab_standard": nab["standard"]["score"],
        "nab_low_fp": nab["reward_low_FP_rate"]["score"],
        "nab_low_fn": nab["reward_low_FN_rate"]["score"],
        **threshold_free(runs),
        "seconds_per_1k_points": 1000.0 * seconds / n_points,
        "n_files": len(corpus),
        "n_points": n_points,
    }


def threshold_free(runs, probation: float = PROBATION) -> dict:
    """VUS-PR, PATE and AUC-PR on the scorable (post-probation) readings, mean over files with
    windows."""
    found = {"vus_pr": [], "pate": [], "auc_pr": []}
    for scores, windows in runs:
        if not windows:
            continue
        labels = np.zeros(len(scores), dtype=int)
        for a, b in windows:
            labels[a : b + 1] = 1
        start = probation_length(len(scores), probation)
        y, s = labels[start:], scores[start:]
        if y.min() == y.max():
            continue
        found["auc_pr"].append(average_precision_score(y, s))
        found["vus_pr"].append(metrics.vus_pr(y, s))
        found["pate"].append(metrics.pate(y, s))
    return {k: float(np.mean(v)) if v else None for k, v in found.items()}
