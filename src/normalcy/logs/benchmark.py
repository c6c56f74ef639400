"""`normalcy logs benchmark`: the log detectors on HDFS sessions and BGL time windows, and the
parser's throughput on BGL. The protocols (also in docs/logs.md):

HDFS (``hdfs_sessions/logdeep``): fit on the 6,000 normal sessions of robust_log_train.csv;
test on robust_log_valid.csv (1,000 normal, 1,000 anomalous), which is never used to fit or
to set a threshold. Two threshold rules, neither sees an anomaly label:
  own       the detector's own rule (PCA: Q-statistic; invariants: one broken invariant;
            clustering: distance 0.3; DeepLog: outside the top 9; unseen: one unseen event);
  fpr:0.01  fit on a random 90 % of the training normals, threshold at a 1 % false-alarm
            rate on the other 10 %.
HDFS (``hdfs_sessions/deeplog``): fit on hdfs_train (4,855 normal sessions), recall on
hdfs_test_abnormal (16,838 anomalous sessions; the set has no normal test sessions, so no
precision).

BGL (``bgl_20k/BGL_20k.log``): lines sorted by time; the first 60 % are the training part,
the rest the test part. Templates are mined from the training part only (the test part is
matched, unseen templates get id 0). Sliding windows of `BGL_WINDOW` s every `BGL_STEP` s
within each part; a window is anomalous if it holds an alert line (first token not ``-``).
Detectors are fitted on the training part's normal windows.

Throughput: reading, header splitting, masking and template mining of the whole BGL file,
single-threaded, in lines per second (best of 3), and matching only.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.registry import build, detectors, parameter_names
from normalcy.core.threshold import FalseAlarmRate
from normalcy.logs.formats import FORMATS, read_logs
from normalcy.logs.parser import LogParser
from normalcy.logs.sessions import by_time

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "drain3")
COLUMNS = ["detector", "dataset", "threshold_rule", "precision", "recall", "f1", "auroc", "auprc", "fit_seconds",
           "n_test", "n_test_anomalous", "lines_per_second"]
HOLDOUT = 0.1
FPR = 0.01
BGL_TRAIN_FRACTION = 0.6
BGL_WINDOW = 3600.0
BGL_STEP = 1800.0


def run(root: str | Path, detectors: list[str], json_path: str | Path, threads: int = 1):
    root = Path(root)
    records: list[dict] = []
    hdfs = root / "hdfs_sessions"
    bgl = root / "bgl_20k" / "BGL_20k.log"
    for needed in (hdfs / "logdeep" / "robust_log_train.csv", hdfs / "deeplog" / "hdfs_train", bgl):
        if not needed.is_file():
            raise DataError(f"benchmark data missing: {needed} (expected the shared logs folder, see "
                            "../shared/data/README.md)")
    records += hdfs_logdeep(hdfs / "logdeep", detectors, threads)
    records += hdfs_deeplog(hdfs / "deeplog", detectors, threads)
    records += bgl_windows(bgl, detectors, threads)
    records += parse_throughput(bgl)
    settings = {"holdout": HOLDOUT, "fpr": FPR, "bgl_train_fraction": BGL_TRAIN_FRACTION,
                "bgl_window_s": BGL_WINDOW, "bgl_step_s": BGL_STEP, "torch_threads": threads}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Log benchmark (HDFS sessions, BGL windows)",
                                     COLUMNS, settings)
    return json_out, md_out, records


def _make(name: str, threads: int):
    """A registered detector with its defaults, and `threads` where it takes them."""
    takes = "threads" in parameter_names(detectors("logs")[name])
    return build("logs", name, {"threads": threads} if takes else {})


def evaluate_rules(name: str, dataset: str, train: list, test: list, y: np.ndarray, threads: int,
                   seed: int = 0) -> list[dict]:
    """Both threshold rules for one detector: fitted on all of `train` (own rule) and on 90 % of
    it with the threshold from the other 10 % (fpr rule)."""
    print(f"benchmark: {name} on {dataset} ...", file=sys.stderr, flush=True)
    out = []
    start = time.perf_counter()
    detector = _make(name, threads).fit(train)
    fit_seconds = time.perf_counter() - start
    out.append(_record(name, dataset, "own", detector.decision_function(test), detector.threshold_, y, fit_seconds))
    start = time.perf_counter()
    detector = fit_with_holdout(_make(name, threads), train, FalseAlarmRate(FPR), HOLDOUT, seed, unit="groups")
    fit_seconds = time.perf_counter() - start  # fitting and scoring the held-out part
    out.append(_record(name, dataset, f"fpr:{FPR:g}", detector.decision_function(test), detector.threshold_, y,
                       fit_seconds))
    return out


def _record(name, dataset, rule, scores, threshold, y, fit_seconds) -> dict:
    rec = {"detector": name, "dataset": dataset, "threshold_rule": rule, "threshold": float(threshold)}
    found = metrics.binary_scores(y, scores, float(threshold))
    if 0 < y.sum() < len(y):
        rec.update({k: found[k] for k in ("precision", "recall", "f1", "fpr")})
        rec.update(auroc=metrics.auroc(y, scores), auprc=metrics.auprc(y, scores))
    else:
        rec["recall"] = found["recall"] if y.all() else None
    rec.update(fit_seconds=fit_seconds, n_test=int(len(y)), n_test_anomalous=int(y.sum()))
    return rec


def read_sessions_csv(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    seqs, labels = [], []
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            seqs.append(np.array(row["Sequence"].split(), dtype=np.int64))
            labels.append(int(row["label"]))
    return seqs, np.array(labels)


def read_sessions_lines(path: Path) -> list[np.ndarray]:
    with open(path) as fh:
        return [np.array(line.split(), dtype=np.int64) for line in fh if line.strip()]


def hdfs_logdeep(folder: Path, detectors: list[str], threads: int) -> list[dict]:
    train_x, train_y = read_sessions_csv(folder / "robust_log_train.csv")
    test_x, test_y = read_sessions_csv(folder / "robust_log_valid.csv")
    train = [s for s, label in zip(train_x, train_y) if label == 0]
    seen = {tuple(s) for s in train}
    repeated = float(np.mean([tuple(s) in seen for s in test_x]))
    out = []
    for name in detectors:
        for rec in evaluate_rules(name, "hdfs_logdeep", train, test_x, test_y, threads):
            rec["test_sequences_also_in_train"] = repeated
            out.append(rec)
    return out


def hdfs_deeplog(folder: Path, detectors: list[str], threads: int) -> list[dict]:
    train = read_sessions_lines(folder / "hdfs_train")
    test = read_sessions_lines(folder / "hdfs_test_abnormal")
    y = np.ones(len(test), dtype=int)
    return [r for name in detectors for r in evaluate_rules(name, "hdfs_deeplog", train, test, y, threads)]


def bgl_parts(path: Path):
    """(train, test) windows of the BGL file: event sequences and 0/1 labels, per the protocol."""
    rec = read_logs([path], FORMATS["bgl"])
    times = np.array([t if t is not None else np.nan for t in rec.times])
    if np.isnan(times).any():
        raise DataError(f"{path}: {int(np.isnan(times).sum())} lines have no readable BGL time")
    order = np.argsort(times, kind="stable")
    cut = int(BGL_TRAIN_FRACTION * len(order))
    alert = np.array([not line.startswith("-") for line in rec.raw])
    parser = LogParser()
    train_idx, test_idx = order[:cut], order[cut:]
    train_ids = parser.fit([rec.contents[i] for i in train_idx])
    test_ids = parser.transform([rec.contents[i] for i in test_idx])
    parts = []
    for idx, ids in ((train_idx, train_ids), (test_idx, test_ids)):
        groups = by_time(list(times[idx]), BGL_WINDOW, BGL_STEP)
        seqs = groups.sequences(ids)
        labels = np.array([int(alert[idx[g]].any()) for g in groups.lines])
        parts.append((seqs, labels))
    return parts, parser


def bgl_windows(path: Path, detectors: list[str], threads: int) -> list[dict]:
    ((train_x, train_y), (test_x, test_y)), _ = bgl_parts(path)
    train = [s for s, label in zip(train_x, train_y) if label == 0]
    return [r for name in detectors for r in evaluate_rules(name, "bgl_windows", train, test_x, test_y, threads)]


def parse_throughput(path: Path, repeats: int = 3) -> list[dict]:
    fit_rates, match_rates = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        rec = read_logs([path], FORMATS["bgl"])
        parser = LogParser()
        parser.fit(rec.contents)
        fit_rates.append(len(rec) / (time.perf_counter() - start))
        matcher = LogParser.from_state(*parser.get_state())
        start = time.perf_counter()
        matcher.transform(rec.contents)
        match_rates.append(len(rec) / (time.perf_counter() - start))
    base = {"dataset": "bgl_20k", "n_lines": len(rec), "n_templates": parser.n_templates}
    return [{"detector": "parser (read+mine)", **base, "lines_per_second": max(fit_rates)},
            {"detector": "parser (match only)", **base, "lines_per_second": max(match_rates)}]
