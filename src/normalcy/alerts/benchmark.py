"""`normalcy alerts benchmark`: alert ranking on two labelled, replayed alert streams, before and
after analyst feedback, against the raw detector score and a random order. The protocol (also in
docs/alerts.md):

BGL (``bgl_20k/BGL_20k.log``): the RAS system's own alerts, the lines at severity WARNING or
above (WARNING, SEVERE, ERROR, FATAL, FAILURE); an alert is true when its line's first token is
not ``-``. Alert type: the line's template (Drain, mined on every line; no label is used);
entities: the node (location), the component and the severity level; stream: the node; raw
score: the severity, FAILURE highest.

HDFS (``hdfs_sessions``): the log detectors HDFS_DETECTORS, each fitted on 80 % of the normal
sessions of ``deeplog/hdfs_train``, raises an alert on a session when its score passes the
threshold that flags HDFS_ALERT_FPR of the other 20 % (sensitive, low-level alerting, so the
queue holds false positives). The replayed sessions: the 6,000 normal sessions of
``logdeep/robust_log_train.csv`` and HDFS_ANOMALY_SHARE as many anomalous ones drawn from
its anomalous sessions, in a random order (the file has no times; one session a second). An
alert is true when its session is anomalous. Alert type: the event the detector blames first
(``E<id>``, or ``unseen``); entities: the block (session) and the detector; stream: the
block (the alerts of one session arrive at one time, in the order of HDFS_DETECTORS); raw
score: the detector's score over its own label-free threshold (times its alarm level,
comparable across detectors); source: the detector (CAR's corroboration part: the detectors
are independent sources; BGL's alerts all come from one source, the RAS log, so it has none).

Both: the stream's first half in time is the history the ranker is fitted on (verdicts
unused); the second half is the queue. Analysts review a random FEEDBACK share of the queue;
every ranking is scored on the rest of the queue (the same alerts before and after feedback),
by precision at 10 and 50 and NDCG, as expected over random orders of tied scores. Repeated
over `seeds` feedback draws (and, for HDFS, anomaly samples and orders); means reported, and
the worst seed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.alerts.evaluate import ndcg, precision_at_k
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.registry import build, detectors, parameter_names
from normalcy.core.threshold import FalseAlarmRate

PACKAGES = ("numpy", "pandas", "scikit-learn", "torch", "drain3")
COLUMNS = ["ranker", "dataset", "feedback", "precision_at_10", "precision_at_50", "ndcg_at_50", "ndcg",
           "precision_at_10_worst", "precision_at_50_worst", "n_queue", "n_true"]
SEVERITY = {"WARNING": 1, "SEVERE": 2, "ERROR": 3, "FATAL": 4, "FAILURE": 5}
FEEDBACK = 0.1
HISTORY = 0.5
HDFS_ALERT_FPR = 0.05
HDFS_HOLDOUT = 0.2
HDFS_ANOMALY_SHARE = 0.03
KS = (10, 50)
# The log detectors of event-id sequences whose alerts make the HDFS stream.
HDFS_DETECTORS = ("invariants", "pca", "clustering", "deeplog", "unseen")


def bgl_stream(path: Path) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The BGL alert table (time order), its verdicts and the ranker's columns."""
    from normalcy.logs.formats import FORMATS, read_logs
    from normalcy.logs.parser import LogParser

    rec = read_logs([path], FORMATS["bgl"])
    parser = LogParser()
    ids = parser.fit(rec.contents)
    rows = [i for i, level in enumerate(rec.levels) if level in SEVERITY and rec.times[i] is not None]
    table = pd.DataFrame({
        "time": [rec.times[i] for i in rows],
        "node": [rec.raw[i].split(" ", 4)[3] for i in rows],
        "component": [rec.components[i] for i in rows],
        "level": [rec.levels[i] for i in rows],
        "type": [parser.template(int(ids[i])) for i in rows],
        "severity": [SEVERITY[rec.levels[i]] for i in rows],
    })
    truth = np.array([int(not rec.raw[i].startswith("-")) for i in rows])
    order = np.argsort(table["time"].to_numpy(), kind="stable")
    columns = {"entity_columns": ["node", "component", "level"], "score_column": "severity"}
    return table.iloc[order].reset_index(drop=True), truth[order], columns


def hdfs_scores(folder: Path, threads: int = 1) -> dict:
    """Each log detector's alerts on the replay sessions: per detector, a boolean mask of the
    sessions it alerts on, its score over its own threshold and the event it blames first."""
    from normalcy.logs.benchmark import read_sessions_csv, read_sessions_lines

    train = read_sessions_lines(folder / "deeplog" / "hdfs_train")
    sessions, labels = read_sessions_csv(folder / "logdeep" / "robust_log_train.csv")
    order = np.random.default_rng(0).permutation(len(train))
    n_held = int(round(HDFS_HOLDOUT * len(train)))
    fit_part = [train[i] for i in np.sort(order[n_held:])]
    held = [train[i] for i in np.sort(order[:n_held])]
    found = {}
    for name in HDFS_DETECTORS:
        cls = detectors("logs")[name]
        print(f"benchmark: {name} alerts on HDFS ...", file=sys.stderr, flush=True)
        detector = build("logs", name, {"threads": threads} if "threads" in parameter_names(cls) else {})
        detector.fit(fit_part)
        own = detector.threshold_
        detector.calibrate(held, FalseAlarmRate(HDFS_ALERT_FPR))
        explanation, blame = detector.explain_blame(sessions, max_events=1)
        scores = explanation.scores
        events = [f"E{b.events[0]}" if b.events and b.events[0] >= 0 else "unseen" if b.events else "none"
                  for b in blame]
        found[name] = {"alert": scores >= detector.threshold_, "raw": scores / own, "event": np.array(events)}
    return {"detectors": found, "labels": labels}


def hdfs_stream(scores: dict, seed: int) -> tuple[pd.DataFrame, np.ndarray, dict]:
    labels = scores["labels"]
    rng = np.random.default_rng(seed)
    normal, anomalous = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    drawn = rng.choice(anomalous, int(round(HDFS_ANOMALY_SHARE * len(normal))), replace=False)
    replay = rng.permutation(np.r_[normal, drawn])
    rows = []
    for position, session in enumerate(replay):
        for name, found in scores["detectors"].items():
            if found["alert"][session]:
                rows.append((float(position), f"blk{session}", name, found["event"][session],
                             float(found["raw"][session]), int(labels[session])))
    table = pd.DataFrame(rows, columns=["time", "block", "detector", "type", "raw", "truth"])
    columns = {"entity_columns": ["block", "detector"], "score_column": "raw", "source_column": "detector"}
    return table.drop(columns="truth"), table["truth"].to_numpy(), columns


# Rankers: (name, CAR parameters beyond the stream's columns, whether it takes feedback).
RANKERS = [
    ("raw score", {"parts": ["score"]}),
    ("sequence only", {"parts": ["sequence"]}),
    ("content only (APE)", {"parts": ["content"]}),
    ("car", {}),
]


def evaluate_stream(table: pd.DataFrame, truth: np.ndarray, columns: dict, seed: int) -> list[dict]:
    """Every ranker on one stream and one feedback draw: records without and with feedback. CAR
    also runs with the stream taken from its other entity column, to show what that choice does."""
    cut = int(HISTORY * len(table))
    history, queue, y = table.iloc[:cut], table.iloc[cut:].reset_index(drop=True), truth[cut:]
    if not 0 < y.sum() < len(y):
        raise DataError("the replayed queue needs both true and false alerts")
    reviewed = np.random.default_rng(1000 + seed).random(len(queue)) < FEEDBACK
    feedback = queue[reviewed].assign(verdict=y[reviewed])
    rest, y_rest = queue[~reviewed], y[~reviewed]
    out = [_record("random", "none", np.zeros(len(y_rest)), y_rest)]
    other = columns["entity_columns"][1]
    sourced = [("corroboration only", {"parts": ["corroboration"]})] if columns.get("source_column") else []
    rankers = [*RANKERS, *sourced,
               (f"car, stream: {other}", {"stream_column": other, "source_column": None})]
    for name, params in rankers:
        ranker = build("alerts", "car", {**columns, **params, "seed": seed}).fit(history)
        out.append(_record(name, "none", ranker.rank(rest).scores, y_rest))
        if name in ("raw score", "car"):
            out.append(_record(name, f"{FEEDBACK:.0%} reviewed", ranker.rank(rest, feedback=feedback).scores, y_rest))
    return out


def _record(name: str, feedback: str, scores: np.ndarray, y: np.ndarray) -> dict:
    rec = {"ranker": name, "feedback": feedback, "n_queue": int(len(y)), "n_true": int(y.sum())}
    for k in KS:
        rec[f"precision_at_{k}"] = precision_at_k(y, scores, k)
    rec["ndcg_at_50"] = ndcg(y, scores, 50)
    rec["ndcg"] = ndcg(y, scores)
    return rec


def summarise(dataset: str, runs: list[list[dict]]) -> list[dict]:
    """Per (ranker, feedback): the mean of each figure over the seeds, and the worst seed's
    precision at k."""
    frame = pd.DataFrame([r for run in runs for r in run])
    out = []
    for (ranker, feedback), group in frame.groupby(["ranker", "feedback"], sort=False):
        rec = {"ranker": ranker, "dataset": dataset, "feedback": feedback, "seeds": int(len(group))}
        for column in ("precision_at_10", "precision_at_50", "ndcg_at_50", "ndcg", "n_queue", "n_true"):
            rec[column] = float(group[column].mean())
        for k in KS:
            rec[f"precision_at_{k}_worst"] = float(group[f"precision_at_{k}"].min())
        out.append(rec)
    return out


def run(root: str | Path, json_path: str | Path, seeds: int = 5, threads: int = 1):
    root = Path(root)
    bgl = root / "bgl_20k" / "BGL_20k.log"
    hdfs = root / "hdfs_sessions"
    for needed in (bgl, hdfs / "deeplog" / "hdfs_train", hdfs / "logdeep" / "robust_log_train.csv"):
        if not needed.is_file():
            raise DataError(f"benchmark data missing: {needed} (expected the shared logs folder, see "
                            "../shared/data/README.md)")
    if not isinstance(seeds, int) or seeds < 1:
        raise DataError(f"seeds must be a whole number >= 1, got {seeds!r}")
    start = time.perf_counter()
    records = []
    table, truth, columns = bgl_stream(bgl)
    print("benchmark: ranking the BGL stream ...", file=sys.stderr, flush=True)
    records += summarise("bgl", [evaluate_stream(table, truth, columns, seed) for seed in range(seeds)])
    scores = hdfs_scores(hdfs, threads)
    runs = []
    for seed in range(seeds):
        print(f"benchmark: ranking the HDFS stream, seed {seed} ...", file=sys.stderr, flush=True)
        runs.append(evaluate_stream(*hdfs_stream(scores, seed), seed))
    records += summarise("hdfs", runs)
    settings = {"history": HISTORY, "feedback": FEEDBACK, "seeds": seeds, "hdfs_alert_fpr": HDFS_ALERT_FPR,
                "hdfs_anomaly_share": HDFS_ANOMALY_SHARE, "seconds": round(time.perf_counter() - start, 1)}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Alert ranking (BGL alerts, HDFS detector alerts)",
                                     COLUMNS, settings)
    return json_out, md_out, records
