"""`normalcy events benchmark`: categorical event streams from real system logs (loghub), with
anomalous combinations of real entities injected at a known rate.

Streams (one event per log line, from each system's `*_structured.csv`; lines without the
fields are left out):

- OpenSSH: event template x user x source address (user and address parsed from the message;
  "-" where the message names no user)
- Linux: event template x component x remote host x user (remote host from rhost= /
  "connection from" / "FROM"; user from user=)
- OpenStack: event template x service (log file) x component x process id x user (the
  request's user id, "-" where none)
- Hadoop: event template x level x process x component
- HDFS: event template x level x component
- Zookeeper: event template x level x node x component
- HPC: event template x node x component x state
- BGL: event template x midplane (rack-midplane of the node) x component x level
- Thunderbird: event template x node x component
- Mac: event template x user x component

Protocol, per stream and seed: a random 70% of the events train every detector; the other 30%
are the normal test events. Anomalies are added to the test set until they make up `rate` of it:
each copies a random normal test event and replaces one or two of its entities by entities of
random training events (real entities, drawn with their training frequencies), and is kept only
if a replaced entity now sits beside an entity it never appears with anywhere in the stream.
Each entity's frequency is unchanged by this, so the marginal frequency baseline should see
little; a model of which entities go together should.

Records say which share of the normal test events hold an entity never seen in training
(`unseen_share`): those are real, and a detector that flags every new entity pays for them.

Detectors: every registered event detector (APE, "ape"; the marginal frequency baseline,
"frequency"), the pairwise frequency baseline ("frequency-pairs", `Frequency(pairs=True)`), and
the tabular default ensemble on one-hot encodings ("table-onehot").
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from normalcy.core import metrics
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.registry import build, detectors, parameter_names
from normalcy.events.base import type_pairs

PACKAGES = ("numpy", "pandas", "scikit-learn", "faiss-cpu")
COLUMNS = ["detector", "dataset", "auroc", "auroc_std", "auprc", "auprc_std", "fit_seconds", "score_seconds",
           "n_train", "n_test", "n_anomalies", "unseen_share", "entity_types"]
PROTOCOL = "fit on 70% of the events; score the other 30% plus injected never-seen-together combinations"
# Benchmark entries beside the registered detectors: a registered one with other parameters.
VARIANTS = {"frequency-pairs": ("frequency", {"pairs": True})}
MEAN = "mean over streams"

IPV4 = r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})"


def _read(root: Path, system: str) -> pd.DataFrame:
    files = sorted((root / system).glob("*_structured.csv"))
    if not files:
        raise DataError(f"{root / system}: no *_structured.csv file")
    return pd.read_csv(files[0], dtype=str, keep_default_na=False)


def _openssh(d: pd.DataFrame) -> pd.DataFrame:
    user = d.Content.str.extract(r"(?:password for (?:invalid user )?|none for invalid user |[Ii]nvalid user "
                                 r"|for user |\buser=)(\S+)")[0]
    return pd.DataFrame({"event": d.EventId, "user": user.fillna("-"),
                         "address": d.Content.str.extract(IPV4)[0]}).dropna()


def _linux(d: pd.DataFrame) -> pd.DataFrame:
    host = d.Content.str.extract(r"(?:rhost=|connection from |FROM |failed from )([^\s,]+)")[0]
    user = d.Content.str.extract(r"\buser=(\S+)")[0]
    return pd.DataFrame({"event": d.EventId, "component": d.Component, "host": host,
                         "user": user.fillna("-")}).dropna()


def _openstack(d: pd.DataFrame) -> pd.DataFrame:
    user = d.ADDR.str.split(" ").str[1].fillna("-")
    return pd.DataFrame({"event": d.EventId, "service": d.Logrecord.str.split(".").str[0],
                         "component": d.Component, "pid": d.Pid, "user": user})


def _columns(**mapping: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda d: pd.DataFrame({name: d[source] for name, source in mapping.items()})


def _bgl(d: pd.DataFrame) -> pd.DataFrame:
    midplane = d.Node.str.extract(r"^(R\d+-M\d+)")[0]
    return pd.DataFrame({"event": d.EventId, "midplane": midplane, "component": d.Component,
                         "level": d.Level}).dropna()


SYSTEMS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "OpenSSH": _openssh,
    "Linux": _linux,
    "OpenStack": _openstack,
    "Hadoop": _columns(event="EventId", level="Level", process="Process", component="Component"),
    "HDFS": _columns(event="EventId", level="Level", component="Component"),
    "Zookeeper": _columns(event="EventId", level="Level", node="Node", component="Component"),
    "HPC": _columns(event="EventId", node="Node", component="Component", state="State"),
    "BGL": _bgl,
    "Thunderbird": _columns(event="EventId", node="User", component="Component"),
    "Mac": _columns(event="EventId", user="User", component="Component"),
}


def streams(root: str | Path, systems: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Event tables (all columns text, no gaps) from a loghub folder, by system name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is not a folder (expected loghub's, with <System>/*_structured.csv)")
    names = list(SYSTEMS) if systems is None else systems
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown:
        raise DataError(f"unknown log system(s) {', '.join(unknown)}; expected some of {', '.join(SYSTEMS)}")
    out = {}
    for name in names:
        frame = SYSTEMS[name](_read(root, name))
        frame = frame[(frame != "").all(axis=1)].reset_index(drop=True)
        out[name] = frame.astype(str)
    return out


def inject(frame: pd.DataFrame, rate: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train, test, labels): see the module docstring for the protocol."""
    if not 0.0 < rate < 1.0:
        raise DataError(f"anomaly rate must be in (0, 1), got {rate}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(frame))
    n_train = int(round(0.7 * len(frame)))
    train = frame.iloc[np.sort(order[:n_train])].reset_index(drop=True)
    test = frame.iloc[np.sort(order[n_train:])].reset_index(drop=True)
    values = frame.to_numpy(dtype=object)
    m = values.shape[1]
    seen = {(i, j, a, b) for i, j in type_pairs(m) for a, b in zip(values[:, i], values[:, j])}
    seen |= {(j, i, b, a) for i, j, a, b in seen}
    pool = train.to_numpy(dtype=object)
    n_anomalies = int(round(rate / (1 - rate) * len(test)))
    anomalies, tries = [], 0
    while len(anomalies) < n_anomalies and tries < 200 * n_anomalies:
        tries += 1
        event = test.iloc[rng.integers(len(test))].to_numpy(dtype=object).copy()
        fields = rng.choice(m, size=rng.integers(1, 3), replace=False)
        for f in fields:
            event[f] = pool[rng.integers(len(pool)), f]
        if any((f, j, event[f], event[j]) not in seen for f in fields for j in range(m) if j != f):
            anomalies.append(event)
    if len(anomalies) < n_anomalies:
        raise DataError(f"could inject only {len(anomalies)} of {n_anomalies} never-seen combinations")
    scored = pd.concat([test, pd.DataFrame(anomalies, columns=frame.columns)], ignore_index=True)
    labels = np.r_[np.zeros(len(test)), np.ones(len(anomalies))].astype(int)
    return train, scored, labels


class OneHotTable:
    """The tabular default detector on one-hot encoded entities: the comparator a team would get
    from a general-purpose table model. Entities unseen in training encode as all zeros."""

    def fit(self, frame: pd.DataFrame) -> "OneHotTable":
        from sklearn.preprocessing import OneHotEncoder

        from normalcy.tabular import Ensemble

        self.encoder_ = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(frame)
        self.detector_ = Ensemble().fit(self.encoder_.transform(frame))
        return self

    def decision_function(self, frame: pd.DataFrame) -> np.ndarray:
        return self.detector_.decision_function(self.encoder_.transform(frame))


COMPARATORS = {"table-onehot": OneHotTable}


def names() -> list[str]:
    """Every benchmark entry: the registered detectors, their variants and the comparators."""
    return [*detectors("events"), *VARIANTS, *COMPARATORS]


def make(name: str, seed: int):
    """A fresh detector for one run; a registered one gets `seed` where it takes one."""
    if name in COMPARATORS:
        return COMPARATORS[name]()
    registered, params = VARIANTS.get(name, (name, {}))
    if registered not in detectors("events"):
        raise DataError(f"unknown detector {name!r}; expected some of {', '.join(names())}")
    if "seed" in parameter_names(detectors("events")[registered]):
        params = {**params, "seed": seed}
    return build("events", registered, params)


def run(root: str | Path, json_path: str | Path, detectors: list[str] | None = None,
        systems: list[str] | None = None, seeds: int = 5, rate: float = 0.05) -> tuple[Path, Path, list[dict]]:
    detectors = names() if detectors is None else detectors
    for name in detectors:
        make(name, 0)  # unknown names fail before any work
    if seeds < 1:
        raise DataError(f"seeds must be >= 1, got {seeds}")
    records = []
    for dataset, frame in streams(root, systems).items():
        runs: dict[str, list[dict]] = {name: [] for name in detectors}
        unseen = []
        for seed in range(seeds):
            train, test, labels = inject(frame, rate, seed)
            normal = test[labels == 0]
            unseen.append(float((~np.column_stack([normal[c].isin(train[c]) for c in frame.columns]).all(axis=1)).mean()))
            for name in detectors:
                print(f"benchmark: {name} on {dataset} seed {seed} ({len(train)} train events) ...",
                      file=sys.stderr, flush=True)
                detector = make(name, seed)
                start = time.perf_counter()
                detector.fit(train)
                fit_seconds = time.perf_counter() - start
                start = time.perf_counter()
                scores = detector.decision_function(test)
                score_seconds = time.perf_counter() - start
                runs[name].append({"auroc": metrics.auroc(labels, scores), "auprc": metrics.auprc(labels, scores),
                                   "fit_seconds": fit_seconds, "score_seconds": score_seconds})
        for name in detectors:
            records.append({"detector": name, "dataset": dataset, "library": "normalcy", "protocol": PROTOCOL,
                            **_summary(runs[name]), "n_train": len(train), "n_test": len(test),
                            "n_anomalies": int(labels.sum()), "unseen_share": float(np.mean(unseen)),
                            "entity_types": ",".join(frame.columns)})
    for name in detectors:
        mine = [r for r in records if r["detector"] == name]
        records.append({"detector": name, "dataset": MEAN, "library": "normalcy", "protocol": PROTOCOL,
                        **{k: float(np.mean([r[k] for r in mine])) for k in ("auroc", "auprc")},
                        **{k: float(np.sum([r[k] for r in mine])) for k in ("fit_seconds", "score_seconds")}})
    settings = {"seeds": seeds, "anomaly_rate": rate, "train_fraction": 0.7, "protocol": PROTOCOL,
                "std": "over seeds", "seconds": "mean per seed; mean-over-streams rows sum them"}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Event benchmark (loghub)", COLUMNS, settings)
    return json_out, md_out, records


def _summary(runs: list[dict]) -> dict:
    out = {}
    for key in ("auroc", "auprc"):
        values = np.array([r[key] for r in runs])
        out[key], out[f"{key}_std"] = float(values.mean()), float(values.std())
    for key in ("fit_seconds", "score_seconds"):
        out[key] = float(np.mean([r[key] for r in runs]))
    return out
