"""`normalcy study thresholds`: false-alarm-rate thresholds from few held-out normal items,
measured on the score distributions of every reference corpus (docs/thresholds.md).

Scores. For each dataset of each corpus, the modality's default detector (from the registry,
on one thread) is fitted on some normal items and scores the others (the pool) and the
anomalies; the scores are cached (`cache`), keyed by corpus, dataset, seed and detector.

Draws. For each held-out count n and requested rate, `reps` times (fixed seeds): n pool scores
are drawn at random as the held-out items, each candidate rule sets a threshold from them
alone, and the false-alarm rate is measured on the rest of the pool (the new normal items) and
the recall on the anomalies. A cell needs at least MIN_REST pool items beside the n drawn.

Figures, per rule, corpus, n and rate: the achieved false-alarm rate (mean over datasets, each
the mean of its draws; the 90th percentile and the worst over all draws), the mean recall,
and the mean outlier pull: how far the threshold moves when the largest held-out score moves
by d, over d (1 for the largest-score rule). The loss of a cell is how far the mean rate lies
outside [attainable, rate] in doublings, counted twice above the rate: `attainable` is the
largest share of the pool one threshold can flag without exceeding the rate (below the rate
only where scores tie). A corpus's loss is the mean over its cells.

Selection. Among the rules whose mean outlier pull is at most PULL_LIMIT, the one with the
smallest worst-corpus loss; leave-one-out: for each corpus, the rule picked on the others and
its loss on the one left out, so a rule tuned to one corpus shows.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from normalcy.core import threshold as core_threshold
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.progress import progress

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "faiss-cpu", "pandas")
CORPORA = ("adbench", "odds", "nab", "msl", "hdfs", "bgl", "mvtec-bottle", "bgl-text")
SIZES = (5, 10, 20, 50, 100, 200)
RATES = (0.01, 0.05)
REPS = 500
MIN_REST = 50  # pool items beside the held-out ones, to measure a rate on
PULL_LIMIT = 0.5  # a picked rule's threshold moves at most this share of an outlying held-out score's move
MAX_FIT, MAX_POOL, MAX_ANOMALIES = 2000, 5000, 2000
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "normalcy-study-scores"
COLUMNS = ["rule", "corpus", "n", "rate", "far_mean", "far_p90", "far_worst", "recall", "outlier_pull",
           "loss", "datasets"]


@dataclass(frozen=True)
class Scores:
    """One dataset's scores: `normal` from normal items the detector was not fitted on (the pool
    held-out items are drawn from), `anomalous` from its anomalies; `source` names the detector."""

    corpus: str
    dataset: str
    normal: np.ndarray
    anomalous: np.ndarray
    source: str


# --- scores ----------------------------------------------------------------------------------------


def default_detector(modality: str) -> str:
    """The name of the modality's default detector in the registry: its package's DEFAULT, or
    the only detector it has."""
    import importlib

    from normalcy.core.registry import detectors

    found = detectors(modality)
    name = getattr(importlib.import_module(f"normalcy.{modality}"), "DEFAULT", None)
    if name is None and len(found) == 1:
        name = next(iter(found))
    if name not in found:
        raise DataError(f"the {modality} detectors ({', '.join(found) or 'none'}) name no default")
    return name


def _source(modality: str) -> str:
    return f"normalcy {modality}/{default_detector(modality)}"


def _build(modality: str):
    """The default detector, on one thread where it takes a `threads` setting."""
    from normalcy.core.registry import build, detector_class, parameter_names

    name = default_detector(modality)
    one_thread = {"threads": 1} if "threads" in parameter_names(detector_class(modality, name)) else {}
    return build(modality, name, one_thread)


def _cached(cache: Path | None, corpus: str, dataset: str, source: str, seed: int,
            compute: Callable[[], tuple[np.ndarray, np.ndarray]]) -> Scores:
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{corpus}__{dataset}__{seed}__{source}")[:200]
    path = cache / f"{key}.npz" if cache is not None else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return Scores(corpus, dataset, stored["normal"], stored["anomalous"], source)
    normal, anomalous = compute()
    normal, anomalous = np.asarray(normal, dtype=np.float64), np.asarray(anomalous, dtype=np.float64)
    if not (np.isfinite(normal).all() and np.isfinite(anomalous).all()):
        raise DataError(f"{corpus}/{dataset}: the detector gave non-finite scores")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, normal=normal, anomalous=anomalous)
        tmp.replace(path)
    return Scores(corpus, dataset, normal, anomalous, source)


def _split(n: int, fit_share: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random indices to fit on (at most MAX_FIT) and to pool (at most MAX_POOL)."""
    order = rng.permutation(n)
    n_fit = min(MAX_FIT, int(round(fit_share * n)))
    return np.sort(order[:n_fit]), np.sort(order[n_fit:n_fit + MAX_POOL])


def _some(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.permutation(n)[:cap])


def _table_sets(data_dir: Path, corpus: str) -> list[Path]:
    folder = data_dir / "tabular" / ("adbench_classical" if corpus == "adbench" else "odds")
    found = sorted(folder.glob("*.npz" if corpus == "adbench" else "*.mat"))
    if not found:
        raise DataError(f"no {corpus} data in {folder} (see the shared data README)")
    return found


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path) as data:
            return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).reshape(-1).astype(int)
    from scipy.io import loadmat

    data = loadmat(path)
    return np.asarray(data["X"], dtype=np.float64), np.asarray(data["y"]).reshape(-1).astype(int)


def table_scores(data_dir: Path, corpus: str, cache: Path | None, seed: int) -> Iterator[Scores]:
    """Each table: fitted on half its normal rows (at most MAX_FIT), pooled from the rest."""
    source = _source("tabular")
    for path in progress(_table_sets(data_dir, corpus), desc=f"scores {corpus}", unit="set"):
        def compute(path=path):
            import pandas as pd

            X, y = _read_table(path)
            rng = np.random.default_rng(seed)
            normal, anomalous = X[y == 0], X[y == 1]
            fit, pool = _split(len(normal), 0.5, rng)

            def frame(rows):
                return pd.DataFrame(rows, columns=[f"x{j}" for j in range(X.shape[1])])

            detector = _build("tabular").fit(frame(normal[fit]))
            some = _some(len(anomalous), MAX_ANOMALIES, rng)
            return detector.decision_function(frame(normal[pool])), detector.decision_function(frame(anomalous[some]))

        yield _cached(cache, corpus, path.stem, source, seed, compute)


def _series_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Scores of the `test` readings: the detector runs causally over train then test, learning
    as it goes, as `normalcy ts fit` scores its held-out tail."""
    return _build("timeseries").score_causal(np.concatenate([train, test]).reshape(-1, 1))[len(train):]


NAB_TRAIN_SHARE = 0.4


def nab_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """Each NAB series: the readings after its first NAB_TRAIN_SHARE, outside and inside the
    labelled anomaly windows."""
    import pandas as pd

    root = data_dir / "timeseries" / "nab"
    labels_file = root / "labels" / "combined_windows.json"
    if not labels_file.is_file():
        raise DataError(f"NAB labels missing: {labels_file} (see the shared data README)")
    windows = json.loads(labels_file.read_text())
    source = _source("timeseries")
    for name in progress(sorted(windows), desc="scores nab", unit="series"):
        def compute(name=name):
            frame = pd.read_csv(root / "data" / name)
            times = pd.to_datetime(frame["timestamp"]).to_numpy()
            values = frame["value"].to_numpy(dtype=np.float64)
            inside = np.zeros(len(values), dtype=bool)
            for start, end in windows[name]:
                inside |= (times >= np.datetime64(pd.Timestamp(start))) & (times <= np.datetime64(pd.Timestamp(end)))
            cut = int(NAB_TRAIN_SHARE * len(values))
            scores = _series_scores(values[:cut], values[cut:])
            return scores[~inside[cut:]], scores[inside[cut:]]

        yield _cached(cache, "nab", name.replace("/", "-").removesuffix(".csv"), source, seed, compute)


def msl_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """Each MSL channel's telemetry value: its test readings outside and inside the labelled
    anomaly sequences, scored after its training readings."""
    import csv

    root = data_dir / "timeseries" / "msl"
    table = root / "labeled_anomalies.csv"
    if not table.is_file():
        raise DataError(f"MSL labels missing: {table} (see the shared data README)")
    with open(table, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["spacecraft"] == "MSL"]
    source = _source("timeseries")
    for row in progress(rows, desc="scores msl", unit="channel"):
        def compute(row=row):
            train = np.load(root / "train" / f"{row['chan_id']}.npy")[:, 0]
            test = np.load(root / "test" / f"{row['chan_id']}.npy")[:, 0]
            inside = np.zeros(len(test), dtype=bool)
            for start, end in json.loads(row["anomaly_sequences"]):
                inside[start:end + 1] = True
            scores = _series_scores(train, test)
            return scores[~inside], scores[inside]

        yield _cached(cache, "msl", row["chan_id"], source, seed, compute)


def _log_scores(fit: list, normal: list, anomalous: list):
    detector = _build("logs").fit(fit)
    return detector.decision_function(normal), detector.decision_function(anomalous)


def hdfs_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """HDFS block sessions (logdeep's train and valid files): fitted on half the normal sessions
    (at most MAX_FIT), pooled from the rest."""
    import csv

    folder = data_dir / "logs" / "hdfs_sessions" / "logdeep"
    files = [folder / "robust_log_train.csv", folder / "robust_log_valid.csv"]
    for f in files:
        if not f.is_file():
            raise DataError(f"HDFS sessions missing: {f} (see the shared data README)")

    def compute():
        seqs, labels = [], []
        for f in files:
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    seqs.append(np.array(row["Sequence"].split(), dtype=np.int64))
                    labels.append(int(row["label"]))
        rng = np.random.default_rng(seed)
        normal = [s for s, y in zip(seqs, labels) if y == 0]
        anomalous = [s for s, y in zip(seqs, labels) if y == 1]
        fit, pool = _split(len(normal), 0.5, rng)
        some = _some(len(anomalous), MAX_ANOMALIES, rng)
        return _log_scores([normal[i] for i in fit], [normal[i] for i in pool], [anomalous[i] for i in some])

    yield _cached(cache, "hdfs", "logdeep-sessions", _source("logs"), seed, compute)


BGL_WINDOW = 3600
_MASK = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+")


def _bgl_lines(data_dir: Path) -> list[list[str]]:
    path = data_dir / "logs" / "bgl_20k" / "BGL_20k.log"
    if not path.is_file():
        raise DataError(f"BGL log missing: {path} (see the shared data README)")
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [parts for parts in (line.rstrip("\n").split(None, 9) for line in fh) if len(parts) >= 2]


def bgl_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """Fixed one-hour windows of BGL lines as event sequences (templates: the content with
    numbers masked); a window with an alert line is anomalous; half the normal windows fit."""

    def compute():
        ids: dict[str, int] = {}
        windows: dict[int, tuple[list[int], list[bool]]] = {}
        for parts in _bgl_lines(data_dir):
            events, alerts = windows.setdefault(int(parts[1]) // BGL_WINDOW, ([], []))
            events.append(ids.setdefault(_MASK.sub("#", " ".join(parts[6:])), len(ids)))
            alerts.append(parts[0] != "-")
        seqs = [np.array(e) for e, _ in windows.values()]
        bad = np.array([any(a) for _, a in windows.values()])
        normal = [s for s, b in zip(seqs, bad) if not b]
        fit, pool = _split(len(normal), 0.5, np.random.default_rng(seed))
        return _log_scores([normal[i] for i in fit], [normal[i] for i in pool], [s for s, b in zip(seqs, bad) if b])

    yield _cached(cache, "bgl", "windows-1h", _source("logs"), seed, compute)


def bgl_text_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """BGL lines as text (type, component, level, content): fitted on normal lines of the first
    60% of the file (at most MAX_FIT), pooled from the normal lines of the rest."""

    def compute():
        lines = _bgl_lines(data_dir)
        texts = [" ".join(parts[6:]) for parts in lines]
        alert = np.array([parts[0] != "-" for parts in lines])
        cut = int(0.6 * len(lines))
        rng = np.random.default_rng(seed)
        early = np.flatnonzero(~alert[:cut])
        late_normal, late_alert = cut + np.flatnonzero(~alert[cut:]), cut + np.flatnonzero(alert[cut:])
        fit = early[_some(len(early), MAX_FIT, rng)]
        pool = late_normal[_some(len(late_normal), MAX_POOL, rng)]
        bad = late_alert[_some(len(late_alert), MAX_ANOMALIES, rng)]
        detector = _build("text").fit([texts[i] for i in fit])
        return detector.decision_function([texts[i] for i in pool]), detector.decision_function([texts[i] for i in bad])

    yield _cached(cache, "bgl-text", "lines", _source("text"), seed, compute)


IMAGE_FIT = 100


def image_scores(data_dir: Path, cache: Path | None, seed: int) -> Iterator[Scores]:
    """MVTec AD bottle: fitted once on IMAGE_FIT random train/good images; the pool is the other
    train/good images and test/good, the anomalies every defective test image."""
    root = data_dir / "images" / "mvtec_ad" / "bottle"
    if not (root / "train" / "good").is_dir():
        raise DataError(f"MVTec bottle missing: {root} (see the shared data README)")

    def compute():
        from normalcy.image.io import list_images, load_images

        train = list_images(root / "train" / "good")
        defects = [p for d in sorted((root / "test").iterdir()) if d.is_dir() and d.name != "good"
                   for p in list_images(d)]
        order = np.random.default_rng(seed).permutation(len(train))
        pool = [train[i] for i in np.sort(order[IMAGE_FIT:])] + list_images(root / "test" / "good")
        detector = _build("image").fit(load_images([train[i] for i in np.sort(order[:IMAGE_FIT])])[0])
        return detector.decision_function(load_images(pool)[0]), detector.decision_function(load_images(defects)[0])

    yield _cached(cache, "mvtec-bottle", "bottle", _source("image"), seed, compute)


LOADERS = {
    "adbench": lambda d, c, s: table_scores(d, "adbench", c, s),
    "odds": lambda d, c, s: table_scores(d, "odds", c, s),
    "nab": nab_scores,
    "msl": msl_scores,
    "hdfs": hdfs_scores,
    "bgl": bgl_scores,
    "mvtec-bottle": image_scores,
    "bgl-text": bgl_text_scores,
}


def load_scores(data_dir: str | Path, corpora=CORPORA, cache: Path | None = DEFAULT_CACHE,
                seed: int = 0) -> list[Scores]:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"reference data folder {data_dir} does not exist (see the shared data README)")
    unknown = sorted(set(corpora) - set(LOADERS))
    if unknown:
        raise DataError(f"unknown corpus {', '.join(unknown)}; expected some of {', '.join(LOADERS)}")
    return [s for corpus in corpora for s in LOADERS[corpus](data_dir, cache, seed)]


# --- rules -----------------------------------------------------------------------------------------
# Each rule maps held-out scores, sorted ascending one draw per row (R x n), and a rate to R
# thresholds; an item is flagged when its score is >= the threshold.


def _above(x):
    return np.nextafter(x, np.inf)


def rule_max(S, rate):
    """The largest held-out score (flags about 1 / (n + 1) of new normals whatever the rate)."""
    return _above(S[:, -1])


def rule_empirical(S, rate):
    """Flag floor(rate * n) held-out items; the largest score when that is none (the old rule)."""
    n = S.shape[1]
    allowed = core_threshold.allowed_count(n, rate)
    return _above(S[:, n - allowed - 1])


def rule_conformal(S, rate):
    """Split-conformal: above the ceil((n + 1)(1 - rate))-th smallest score, which flags at most
    `rate` of new normal items in expectation for exchangeable scores; nothing (infinity) when
    that order statistic does not exist (n < 1 / rate - 1)."""
    n = S.shape[1]
    k = math.ceil((n + 1) * (1 - rate) - 1e-9)
    return np.full(len(S), np.inf) if k > n else _above(S[:, k - 1])


def rule_gauss_mad(S, rate):
    """Robust Gaussian: median + z(1 - rate) * 1.4826 * MAD (the largest score when MAD is 0)."""
    from scipy.stats import norm

    centre = np.median(S, axis=1)
    mad = 1.4826 * np.median(np.abs(S - centre[:, None]), axis=1)
    return np.where(mad > 0, centre + norm.ppf(1 - rate) * mad, _above(S[:, -1]))


def rule_provisional(S, rate):
    """The provisional rule: an exponential fitted to the excesses over the median, plug-in
    quantile, below n * rate < 1; the empirical rule above."""
    n = S.shape[1]
    if n * rate >= 1 - 1e-9:
        return rule_empirical(S, rate)
    centre = np.median(S, axis=1)
    above = S > centre[:, None]
    count = above.sum(axis=1)
    excess = np.where(count > 0, np.where(above, S - centre[:, None], 0).sum(axis=1) / np.maximum(count, 1), 0.0)
    share = count / n
    ok = (excess > 0) & (share > rate)
    return np.where(ok, centre + excess * np.log(np.maximum(share, rate) / rate), _above(S[:, -1]))


def tail_rule(top: float, censor: int = 0, predictive: bool = True, shape: bool = False):
    """An exponential (or, with `shape`, generalised Pareto) tail over the k = round(top * n)
    largest held-out scores: u is the score just below them and the excesses are theirs over u,
    counting only those strictly above u (ties at u carry no scale); the `censor` largest
    excesses are known only to be at least the next largest (type-II censoring: those largest
    scores do not move the threshold). Predictive: the multiple of the scale at which, for
    scores whose tail above u is exponential, a new normal item is flagged with probability
    exactly `rate` averaged over held-out draws; plug-in: the fitted distribution's quantile."""

    def rule(S, rate):
        n = S.shape[1]
        k = min(n - 1, max(int(round(top * n)), censor + 1 + int(shape), 1))
        u = S[:, n - k - 1]
        excess = S[:, n - k:] - u[:, None]
        above = (excess > 0).sum(axis=1)
        dof = above - censor
        total = excess[:, :k - censor].sum(axis=1)
        if censor:
            total = total + censor * excess[:, k - censor - 1]
        usable = (dof >= 1) & (total > 0)
        scale = np.where(usable, total / np.maximum(dof, 1), 0.0)
        if shape and k >= 10:
            xi, sigma = _gpd_pwm(excess)
            p = np.maximum(above / n, rate)
            q = np.where(np.abs(xi) > 1e-6, sigma / np.where(xi == 0, 1, xi) * ((p / rate) ** xi - 1),
                         sigma * np.log(p / rate))
            return np.where(usable, np.maximum(u + q, _above(u)), _above(S[:, -1]))
        if predictive:
            c = core_threshold.predictive_multiple(n, above, np.maximum(dof, 1), rate)
        else:
            c = np.log(np.maximum(above / n, rate) / rate)
        return np.where(usable, np.maximum(u + c * scale, _above(u)), _above(S[:, -1]))

    return rule


def _gpd_pwm(excess):
    """Generalised Pareto shape and scale from probability-weighted moments (Hosking & Wallis
    1987), per row of sorted excesses; the shape is kept within [-0.5, 0.5]."""
    k = excess.shape[1]
    weights = 1 - (np.arange(1, k + 1) - 0.35) / k
    a0 = excess.mean(axis=1)
    a1 = (excess * weights).mean(axis=1)
    denom = np.where(a0 - 2 * a1 > 0, a0 - 2 * a1, np.nan)
    xi = np.clip(np.nan_to_num(2 - a0 / denom, nan=0.0), -0.5, 0.5)
    sigma = np.nan_to_num(2 * a0 * a1 / denom, nan=0.0)
    sigma = np.where(sigma > 0, sigma, a0 * (1 - xi))
    return xi, sigma


def rule_interpolated(S, rate):
    """The order statistic at plotting position (n + 1)(1 - rate), interpolated (its expected
    share above is `rate` for continuous scores); just above a tie; needs (n + 1) rate >= 1."""
    return core_threshold.interpolated_quantile(S, rate)


def switched(tail, at: float, resolved=rule_empirical):
    """`tail` while n * rate < at, `resolved` from there on."""

    def rule(S, rate):
        return tail(S, rate) if S.shape[1] * rate < at - 1e-9 else resolved(S, rate)

    return rule


def larger(a, b):
    def rule(S, rate):
        return np.maximum(a(S, rate), b(S, rate))

    return rule


def rule_chosen(S, rate):
    """What `FalseAlarmRate.compute` does (normalcy.core.threshold), row by row."""
    return core_threshold.thresholds_of_sorted(S, rate)


BASELINES = ("old (max below n*rate<1)", "max of held-out", "conformal", "gauss median+z*MAD",
             "provisional exp>median plug-in", "max(old, provisional)", "exp>q75 plug-in, n*r<1",
             "gpd>q75 (pwm) plug-in, n*r<1")


def candidate_rules() -> dict[str, Callable]:
    """name -> rule: the old rule and the trivial baselines (BASELINES), then every tail model
    and switch point considered, then the rule as implemented in the core."""
    rules = {
        BASELINES[0]: rule_empirical,
        BASELINES[1]: rule_max,
        BASELINES[2]: rule_conformal,
        BASELINES[3]: rule_gauss_mad,
        BASELINES[4]: rule_provisional,
        BASELINES[5]: larger(rule_empirical, rule_provisional),
        BASELINES[6]: switched(tail_rule(0.25, predictive=False), 1),
        BASELINES[7]: switched(tail_rule(0.25, predictive=False, shape=True), 1),
    }
    # The interpolated quantile never flags more than floor(n * rate) held-out items: capped by
    # the floor rule (on this grid of n and rates the cap never binds, so it costs nothing here).
    resolved = {"floor": rule_empirical, "interpolated": larger(rule_interpolated, rule_empirical)}
    for top, where in ((0.5, "median"), (0.25, "q75"), (0.1, "q90")):
        for censor in (0, 1):
            tail = tail_rule(top, censor)
            for at in (1, 2, 5, 10):
                for how, rule in resolved.items():
                    if at <= 2 or how == "interpolated":  # from n * rate >= 5 on the three hardly differ
                        name = f"exp>{where} predictive{' censor-1' if censor else ''}, n*r<{at} then {how}"
                        rules[name] = switched(tail, at, rule)
    rules["chosen (core)"] = rule_chosen
    return rules


# --- measurement -----------------------------------------------------------------------------------


def _loss(far_mean: float, attainable: float, rate: float) -> float:
    """How far the mean achieved rate lies outside [attainable, rate], in doublings, above
    counted twice (means below rate / 32 count as rate / 32)."""
    if far_mean > rate:
        return 2 * math.log2(far_mean / rate)
    floor = max(attainable, rate / 32)
    return math.log2(floor / max(far_mean, rate / 32)) if far_mean < floor else 0.0


def _attainable(pool: np.ndarray, rate: float) -> float:
    """The largest share of the (sorted) pool that one threshold flags without exceeding `rate`:
    the rate itself for continuous scores, less where ties leave no threshold in between."""
    values, first = np.unique(pool, return_index=True)
    shares = (len(pool) - first) / len(pool)  # flagged at each distinct value
    within = shares[shares <= rate + 1e-12]
    return float(within.max()) if within.size else 0.0


def measure(scores: list[Scores], rules: dict[str, Callable], sizes=SIZES, rates=RATES, reps: int = REPS,
            seed: int = 0) -> list[dict]:
    """One record per (rule, corpus, n, rate): the achieved false-alarm rate on the new normal
    items (mean, 90th percentile and worst over every dataset and draw), the mean recall on
    anomalies, the mean outlier pull and the loss."""
    cells: dict[tuple, dict[str, list]] = {}
    work = [(i, s, n) for i, s in enumerate(scores) for n in sizes if len(s.normal) >= n + MIN_REST]
    for i, s, n in progress(work, desc="threshold draws", unit="cell"):
        pool = np.sort(s.normal)
        anomalous = np.sort(s.anomalous)
        rng = np.random.default_rng([seed, i, n])
        picks = np.argpartition(rng.random((reps, len(pool))), n - 1, axis=1)[:, :n]
        S = np.sort(pool[picks], axis=1)
        moved = S.copy()
        jump = 10 * (S[:, -1] - S[:, 0])
        moved[:, -1] += jump
        for rate in rates:
            attainable = _attainable(pool, rate)
            for name, rule in rules.items():
                t = rule(S, rate)
                flagged_pool = len(pool) - np.searchsorted(pool, t, side="left")
                flagged_held = (S >= t[:, None]).sum(axis=1)
                far = (flagged_pool - flagged_held) / (len(pool) - n)
                recall = ((len(anomalous) - np.searchsorted(anomalous, t, side="left")) / len(anomalous)
                          if len(anomalous) else None)
                with np.errstate(invalid="ignore"):
                    pull = np.where(jump > 0, (rule(moved, rate) - t) / np.where(jump > 0, jump, 1), np.nan)
                cell = cells.setdefault((name, s.corpus, n, rate), {"far": [], "far_means": [], "recall": [],
                                                                    "pull": [], "attainable": [], "datasets": 0})
                cell["far"].append(far)
                cell["attainable"].append(attainable)
                cell["far_means"].append(float(far.mean()))
                cell["pull"].append(pull[np.isfinite(pull)])
                cell["datasets"] += 1
                if recall is not None:
                    cell["recall"].append(float(recall.mean()))
    records = []
    for (name, corpus, n, rate), cell in cells.items():
        far = np.concatenate(cell["far"])
        far_mean = float(np.mean(cell["far_means"]))  # each dataset weighs the same
        attainable = float(np.mean(cell["attainable"]))
        pull = np.concatenate(cell["pull"])
        records.append({
            "rule": name, "corpus": corpus, "n": n, "rate": rate, "attainable": attainable,
            "far_mean": far_mean, "far_p90": float(np.quantile(far, 0.9)), "far_worst": float(far.max()),
            "worst_dataset_far_mean": float(np.max(cell["far_means"])),
            "recall": float(np.mean(cell["recall"])) if cell["recall"] else None,
            "outlier_pull": float(pull.mean()) if pull.size else None,
            "loss": _loss(far_mean, attainable, rate), "datasets": cell["datasets"],
        })
    return records


def corpus_losses(records: list[dict]) -> dict[str, dict[str, float]]:
    """rule -> corpus -> mean loss over the corpus's (n, rate) cells."""
    found: dict[str, dict[str, list[float]]] = {}
    for r in records:
        found.setdefault(r["rule"], {}).setdefault(r["corpus"], []).append(r["loss"])
    return {rule: {c: float(np.mean(v)) for c, v in by.items()} for rule, by in found.items()}


def mean_pulls(records: list[dict]) -> dict[str, float]:
    """rule -> mean outlier pull over every cell."""
    found: dict[str, list[float]] = {}
    for r in records:
        if r["outlier_pull"] is not None:
            found.setdefault(r["rule"], []).append(r["outlier_pull"])
    return {rule: float(np.mean(v)) for rule, v in found.items()}


def select(records: list[dict], exclude: tuple[str, ...] = ("chosen (core)",)) -> dict:
    """Among the rules whose mean outlier pull is at most PULL_LIMIT (one outlying held-out score
    moves the threshold at most that fraction of its own move), the one with the smallest
    worst-corpus loss; and the leave-one-out check: per corpus, the rule picked on the others
    and its loss on the one left out."""
    pulls = mean_pulls(records)
    losses = {rule: by for rule, by in corpus_losses(records).items() if rule not in exclude}
    admissible = [rule for rule in losses if pulls.get(rule, 0.0) <= PULL_LIMIT]
    corpora = sorted({c for by in losses.values() for c in by})

    def best(on: list[str]) -> str:
        return min(admissible, key=lambda rule: (max(losses[rule][c] for c in on), sum(losses[rule][c] for c in on)))

    picked = best(corpora)
    folds = {}
    for left_out in corpora if len(corpora) > 1 else ():
        rule = best([c for c in corpora if c != left_out])
        folds[left_out] = {"picked": rule, "loss_left_out": losses[rule][left_out]}
    ranking = sorted((max(by.values()), rule) for rule, by in losses.items())
    return {"picked": picked, "worst_corpus_loss": max(losses[picked].values()), "leave_one_out": folds,
            "ranking": [{"rule": rule, "worst_corpus_loss": loss, "outlier_pull": pulls.get(rule),
                         "admissible": rule in admissible} for loss, rule in ranking]}


# --- the benchmark ---------------------------------------------------------------------------------

CHOSEN = "chosen (core)"
SHOWN_TOP = 5  # best-ranked candidates shown beside the baselines and the chosen rule


def run(data_dir: str | Path, json_path: str | Path, corpora=CORPORA, sizes=SIZES, rates=RATES, reps: int = REPS,
        seed: int = 0, cache: Path | None = DEFAULT_CACHE) -> tuple[Path, Path, Path, dict]:
    """Score every corpus (or read the cached scores), measure every candidate rule, pick one;
    write the records of the rules shown (baselines, the best candidates, the core's rule) as
    JSON and a Markdown table, and a summary beside them (.summary.md). Returns the three paths
    and the selection."""
    start = time.perf_counter()
    print(f"study: scores of {', '.join(corpora)} (cache {cache or 'off'}) ...", file=sys.stderr, flush=True)
    scores = load_scores(data_dir, corpora, cache, seed)
    sources = {s.corpus: s.source for s in scores}
    print(f"study: {len(candidate_rules())} rules on {len(scores)} score sets, {reps} draws per cell ...",
          file=sys.stderr, flush=True)
    records = measure(scores, candidate_rules(), sizes, rates, reps, seed)
    selection = select(records)
    shown = list(BASELINES) + [r["rule"] for r in selection["ranking"] if r["admissible"]][:SHOWN_TOP]
    shown += [r["rule"] for r in selection["ranking"][:SHOWN_TOP]] + [selection["picked"], CHOSEN]
    shown = list(dict.fromkeys(shown))
    kept = sorted((r for r in records if r["rule"] in shown),
                  key=lambda r: (shown.index(r["rule"]), CORPORA.index(r["corpus"]), r["rate"], r["n"]))
    for r in kept:
        r["dataset"], r["detector"] = r["corpus"], sources[r["corpus"]]
    seconds = time.perf_counter() - start
    settings = {"sizes": list(sizes), "rates": list(rates), "reps": reps, "seed": seed, "min_rest": MIN_REST,
                "pull_limit": PULL_LIMIT, "picked": selection["picked"],
                "worst_corpus_loss": round(selection["worst_corpus_loss"], 4), "wall_seconds": round(seconds, 1),
                "leave_one_out": {c: fold["picked"] for c, fold in selection["leave_one_out"].items()}}
    json_out, md_out = write_results(kept, json_path, PACKAGES, "False-alarm-rate thresholds from few held-out items",
                                     COLUMNS, settings)
    summary_out = Path(json_out).with_suffix(".summary.md")
    from normalcy.core.benchmark import write_atomic

    write_atomic(summary_out, summary_markdown(kept, records, selection, sources, settings))
    return json_out, md_out, summary_out, selection


def summary_markdown(kept: list[dict], records: list[dict], selection: dict, sources: dict, settings: dict) -> str:
    """Three tables: the selection (loss per corpus), the achieved rates and recall of the old,
    provisional and chosen rules per corpus, and the leave-one-out check."""
    losses = corpus_losses(records)
    pulls = mean_pulls(records)
    corpora = [c for c in CORPORA if c in sources]
    lines = ["# False-alarm-rate thresholds from few held-out items: summary", "",
             f"{settings['reps']} draws per dataset, held-out size n and rate; picked: **{selection['picked']}** "
             f"(worst-corpus loss {selection['worst_corpus_loss']:.2f}); {settings['wall_seconds']} s.", "",
             "Scores: " + "; ".join(f"{c}: {sources[c]}" for c in corpora) + ".", "",
             "## Loss per corpus (0 = mean rate within [attainable, requested]; doublings above count twice)", "",
             "| rule | worst | " + " | ".join(corpora) + " | outlier pull |", "|---" * (len(corpora) + 3) + "|"]
    rules = list(dict.fromkeys(r["rule"] for r in kept))
    for rule in rules:
        by = losses[rule]
        lines.append(f"| {rule} | {max(by.values()):.2f} | " + " | ".join(f"{by[c]:.2f}" for c in corpora)
                     + f" | {pulls.get(rule, float('nan')):.2f} |")
    cells = {(r["rule"], r["corpus"], r["n"], r["rate"]): r for r in kept}
    sizes = settings["sizes"]
    for rate in settings["rates"]:
        lines += ["", f"## fpr:{rate:g}: achieved false-alarm rate on new normal items, % (mean / 90th percentile / "
                      "worst draw), and recall", "",
                  "| corpus | rule | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---" * (len(sizes) + 2) + "|"]
        for corpus in corpora:
            for rule in (BASELINES[0], BASELINES[4], BASELINES[2], CHOSEN):
                row = []
                for n in sizes:
                    r = cells.get((rule, corpus, n, rate))
                    row.append("" if r is None else
                               f"{100 * r['far_mean']:.1f} / {100 * r['far_p90']:.1f} / {100 * r['far_worst']:.1f}"
                               + (f"; {r['recall']:.2f}" if r["recall"] is not None else ""))
                lines.append(f"| {corpus} | {rule} | " + " | ".join(row) + " |")
    if not selection["leave_one_out"]:
        return "\n".join(lines) + "\n"
    lines += ["", "## Leave one corpus out", "", "| left out | rule picked on the others | its loss there |",
              "|---|---|---|"]
    for corpus, fold in selection["leave_one_out"].items():
        lines.append(f"| {corpus} | {fold['picked']} | {fold['loss_left_out']:.2f} |")
    return "\n".join(lines) + "\n"
