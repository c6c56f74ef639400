"""`normalcy ts benchmark`: every detector, the baselines and side-by-side peers over every
corpus found under a folder (`corpora`), and the default chosen across corpora.

Each detector learns a series' training part causally (`score_causal`), sets its own
threshold as `normalcy ts fit` does (fpr:0.01 on the causal scores of the last 20 % of the
training part, never below its alert level), then scores the test part as the continuation,
learning as it goes. On NAB the training part is the probationary period, so this is NAB's own
protocol and the NAB scores (three profiles, one threshold for the corpus) are computed too.
Per series: VUS-PR, AUC-PR, PATE (threshold-free), event-wise F1 at the detector's own threshold
and, on series with a single labelled window, whether the top score lies in it (ties share the
hit); and `at_lowest`, the share of readings at the series' lowest score, which the score ranks
no further (an alert-only score is 0 almost everywhere). A corpus's figure is the mean over its
series with labels.

Per-series scores are cached under `cache` (keyed by the detector, its parameters and the source
of the code that computes them), so a rerun only computes what changed.

The default is chosen by the worst corpus among the detectors that stream: each candidate's mean
VUS-PR on a corpus is divided by the best candidate's there, and the candidate whose smallest
such share is largest wins (`choose_default`); leaving each corpus out in turn shows whether the
choice made on the others holds on it.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_atomic, write_results
from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.core.threshold import FalseAlarmRate
from normalcy.timeseries import metrics
from normalcy.timeseries.baselines import BASELINES
from normalcy.timeseries.corpora import Corpus, LabelledSeries, find_corpora
from normalcy.timeseries.nab import nab_scores

PACKAGES = ("numpy", "scipy", "pandas", "scikit-learn", "lightgbm", "numba")
COLUMNS = ["corpus", "detector", "library", "vus_pr", "auc_pr", "pate", "event_f1", "top1_hit", "at_lowest",
           "nab_standard", "seconds_per_1k_points", "n_series"]
CACHE = Path("/tmp/normalcy-ts-benchmark")
HOLDOUT, RATE = 0.2, 0.01  # `ts fit`'s defaults
PROTOCOL = 1  # the version of `score_series`'s protocol: a change invalidates the cached scores
# Each runs in the peer's own environment: `--peer LIBRARY=PYTHON`.
PEER_RUNNERS = {"tsb-ad": Path(__file__).with_name("peer_tsbad.py"), "orion": Path(__file__).with_name("peer_orion.py")}


@dataclass(frozen=True)
class Scored:
    scores: np.ndarray  # of the test part
    threshold: float | None
    seconds: float


def run(root, names: list[str], json_path, cache: Path = CACHE, peers: dict[str, str] | None = None,
        default: str | None = None) -> tuple[Path, Path, list[dict]]:
    """Benchmark `names` (registered detectors and baselines) and the algorithms of `peers`
    (library -> the Python of its own environment) on every corpus under `root`."""
    from normalcy.timeseries import DEFAULT

    default = default or DEFAULT
    corpora = find_corpora(root)
    for name in names:  # the code's digests, taken now, while it is the code that was imported
        code_digest(name)
    records = []
    for corpus in corpora:
        for name in names:
            runs = [_cached(cache, corpus, s, name, lambda s=s: score_series(name, s))
                    for s in progress(corpus.series, desc=f"{corpus.name}: {name}", unit="series")]
            records.append(_record(corpus, name, runs, default=name == default))
        for library, python in (peers or {}).items():
            for algorithm, runs in peer_scores(library, python, corpus, cache).items():
                records.append(_record(corpus, algorithm, runs, library=library))
    choice = choose_default(records, [n for n in names if n not in BASELINES and ":" not in n and streams(n)])
    settings = {"holdout": HOLDOUT, "threshold": f"fpr:{RATE}", "cache": str(cache)}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Time-series benchmark", COLUMNS, settings)
    if choice:
        doc = json.loads(json_out.read_text())
        doc["default_choice"] = choice
        write_atomic(json_out, json.dumps(doc, indent=2) + "\n")
        write_atomic(md_out, md_out.read_text() + "\n" + choice_markdown(choice))
    return json_out, md_out, records


# --- scoring ---------------------------------------------------------------------------------------


def score_series(name: str, series: LabelledSeries) -> Scored:
    """A detector's or baseline's scores of the test part, its threshold and the seconds taken."""
    start = time.perf_counter()
    train, test = series.train.values, series.test.values
    if name in BASELINES:
        score = BASELINES[name]
        split = int(len(train) * (1 - HOLDOUT))
        threshold = FalseAlarmRate(RATE).compute(score(train[:split], train[split:], series.name))
        scores = score(train, test, series.name)
    else:
        from normalcy.core.registry import build
        from normalcy.timeseries.workflow import AtLeast

        base, params = split_variant(name)
        detector = build("timeseries", base, params)
        held_out = detector.score_causal(series.train)[int(len(train) * (1 - HOLDOUT)) :]
        strategy = FalseAlarmRate(RATE)
        alert_level = getattr(detector, "alert_level", None)
        detector.calibrate_scores(held_out, AtLeast(strategy, alert_level) if alert_level is not None else strategy)
        threshold = detector.threshold_
        scores = detector.decision_function(series.test)
    return Scored(np.asarray(scores, dtype=np.float64), threshold, time.perf_counter() - start)


def _cached(cache: Path, corpus: Corpus, series: LabelledSeries, name: str, compute) -> Scored:
    path = cache / "scores" / corpus.name / _slug(name) / f"{_slug(series.name)}-{code_digest(name)}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as f:
            threshold = float(f["threshold"]) if np.isfinite(f["threshold"]) else None
            return Scored(f["scores"], threshold, float(f["seconds"]))
    found = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, scores=found.scores, threshold=np.nan if found.threshold is None else found.threshold,
             seconds=found.seconds)
    tmp.replace(path)
    return found


@functools.lru_cache(maxsize=None)
def code_digest(name: str) -> str:
    """A digest of what computes `name`'s scores: the source of its class and its bases (or the
    baselines), the package's private helper modules, and the protocol's version; read once per
    process, close to when the code was imported."""
    import normalcy.timeseries as package
    from normalcy.core.registry import detectors

    folder = Path(package.__file__).parent
    if name in BASELINES:
        files = [folder / "baselines.py", folder / "join.py"]
    else:
        cls = detectors("timeseries")[split_variant(name)[0]]
        files = {Path(inspect.getsourcefile(c)) for c in cls.__mro__ if c.__module__.startswith("normalcy.")}
    files = sorted({*files, *(f for f in folder.glob("_*.py") if not f.name.startswith("__"))})  # not __init__: imports only
    digest = hashlib.sha1(f"{name} {PROTOCOL}".encode())
    for f in files:
        digest.update(f.read_bytes())
    return digest.hexdigest()[:12]


def split_variant(name: str) -> tuple[str, dict]:
    """"window-pca:window=32:likelihood=false" -> ("window-pca", {"window": 32, "likelihood": False}):
    a detector with some parameters changed, benchmarked under that name."""
    from normalcy.core.registry import parse_params

    base, *pairs = name.split(":")
    return base, parse_params(pairs)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.removesuffix(".csv"))


# --- figures -------------------------------------------------------------------------------------


def series_metrics(series: LabelledSeries, run: Scored) -> dict | None:
    """The per-series figures; None for a series without labelled windows in its test part."""
    y = series.labels()
    if not y.any() or y.all():
        return None
    s = run.scores
    # the share of readings at the lowest score, which ranks them no further (0 for most)
    out = {"at_lowest": float(np.mean(s == s.min())), "vus_pr": metrics.vus_pr(y, s), "auc_pr": metrics.auc_pr(y, s), "pate": metrics.pate(y, s),
           "event_f1": None if run.threshold is None else metrics.event_f1(y, (s >= run.threshold).astype(np.int8))}
    if len(series.windows) == 1:
        top = s == s.max()
        out["top1_hit"] = float(np.mean(y[top]))  # ties share the hit: a constant score earns its chance
    return out


def _record(corpus: Corpus, name: str, runs: list[Scored], default: bool = False, library: str | None = None) -> dict:
    per_series = [series_metrics(s, r) for s, r in zip(corpus.series, runs)]
    found = [p for p in per_series if p is not None]
    record = {"detector": name, "dataset": corpus.name, "corpus": corpus.name}
    if library:
        record["library"] = library
    if default:
        record["default"] = True
    for key in ("vus_pr", "auc_pr", "pate", "event_f1", "top1_hit", "at_lowest"):
        values = [p[key] for p in found if p.get(key) is not None]
        record[key] = float(np.mean(values)) if values else None
    record["n_single"] = sum("top1_hit" in p for p in found)
    if corpus.kind == "nab":
        full = [(np.concatenate([np.zeros(len(s.train)), r.scores]), s.full_windows) for s, r in zip(corpus.series, runs)]
        nab = nab_scores(full)
        record |= {"nab_standard": nab["standard"]["score"], "nab_low_fp": nab["reward_low_FP_rate"]["score"],
                   "nab_low_fn": nab["reward_low_FN_rate"]["score"]}
    n_points = sum(len(s.train) + len(s.test) for s in corpus.series)
    record |= {"seconds_per_1k_points": 1000.0 * sum(r.seconds for r in runs) / n_points,
               "n_series": len(found), "n_points": n_points,
               "series": {s.name: p for s, p in zip(corpus.series, per_series) if p is not None}}
    return record


# --- the default ---------------------------------------------------------------------------------


def streams(name: str) -> bool:
    """Whether a registered detector scores a stream; the default must (`ts stream`, Spark
    streaming and the HTTP service run it), so one that scores only whole files is no candidate."""
    from normalcy.core.registry import detectors

    return detectors("timeseries")[split_variant(name)[0]].streams


def choose_default(records: list[dict], candidates: list[str], key: str = "vus_pr") -> dict | None:
    """The candidate whose worst corpus is best: per corpus, each candidate's mean `key` as a
    share of the best candidate's; the largest smallest share wins. With each corpus left out
    in turn, the candidate so chosen on the others and how it fares on the one left out."""
    table = {}
    for r in records:
        if r["detector"] in candidates and "library" not in r and r.get(key) is not None:
            table.setdefault(r["detector"], {})[r["corpus"]] = r[key]
    corpora = sorted({c for row in table.values() for c in row})
    table = {d: row for d, row in table.items() if set(row) == set(corpora)}
    if not table or not corpora:
        return None
    best = {c: max(row[c] for row in table.values()) for c in corpora}
    share = {d: {c: row[c] / best[c] if best[c] > 0 else 0.0 for c in corpora} for d, row in table.items()}

    def pick(among):
        return max(share, key=lambda d: (min(share[d][c] for c in among), np.mean([share[d][c] for c in among])))

    chosen = pick(corpora)
    left_out = {}
    if len(corpora) > 1:
        for c in corpora:
            d = pick([o for o in corpora if o != c])
            left_out[c] = {"chosen_on_the_others": d, key: table[d][c], "share_of_best": share[d][c],
                           "best_there": max(table, key=lambda e: table[e][c])}
    return {"metric": key, "chosen": chosen, "worst_share": min(share[chosen].values()),
            "by_corpus": {d: {c: {key: table[d][c], "share_of_best": share[d][c]} for c in corpora} for d in table},
            "leave_one_corpus_out": left_out}


def choice_markdown(choice: dict) -> str:
    key = choice["metric"]
    corpora = sorted(next(iter(choice["by_corpus"].values())))
    lines = [f"## The default by the worst corpus ({key} as a share of the best candidate's)", "",
             "| detector | " + " | ".join(corpora) + " | worst |", "|---|" + "---|" * (len(corpora) + 1)]
    rows = sorted(choice["by_corpus"].items(), key=lambda kv: -min(v["share_of_best"] for v in kv[1].values()))
    for d, row in rows:
        cells = [f"{row[c][key]:.3f} ({row[c]['share_of_best']:.2f})" for c in corpora]
        mark = " (chosen)" if d == choice["chosen"] else ""
        lines.append(f"| {d}{mark} | " + " | ".join(cells) + f" | {min(v['share_of_best'] for v in row.values()):.2f} |")
    if choice["leave_one_corpus_out"]:
        lines += ["", "Leaving one corpus out: chosen on the others, then measured on it.", "",
                  f"| left out | chosen on the others | its {key} there | share of the best there | best there |",
                  "|---|---|---|---|---|"]
        for c, v in choice["leave_one_corpus_out"].items():
            lines.append(f"| {c} | {v['chosen_on_the_others']} | {v[key]:.3f} | {v['share_of_best']:.2f} | "
                         f"{v['best_there']} |")
    return "\n".join(lines) + "\n"


# --- peers ---------------------------------------------------------------------------------------


def peer_scores(library: str, python: str, corpus: Corpus, cache: Path) -> dict[str, list[Scored]]:
    """algorithm -> its scores of each series' test part, computed by the peer's runner in its
    own environment (`python`) on the series exported as .npy, and cached; with python
    "cached", only what the cache holds (an algorithm missing a series is left out)."""
    if library not in PEER_RUNNERS:
        raise DataError(f"unknown peer library {library!r}; expected one of {', '.join(PEER_RUNNERS)}")
    data = cache / "data" / corpus.name
    for s in corpus.series:
        folder = data / _slug(s.name)
        if not (folder / "test.npy").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / "train.npy", s.train.values)
            np.save(folder / "test.npy", s.test.values)
    out = cache / "peers" / library / corpus.name
    if python != "cached":
        print(f"benchmark: {library} on {corpus.name} ({python}) ...", file=sys.stderr, flush=True)
        done = subprocess.run([python, str(PEER_RUNNERS[library]), str(data), str(out)], check=False)
        if done.returncode != 0:
            raise DataError(f"the {library} runner failed on {corpus.name} (exit status {done.returncode}); "
                            "see its output above")
    found = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")) if out.is_dir() else []:
        runs = []
        for s in corpus.series:
            path = folder / f"{_slug(s.name)}.npz"
            if not path.is_file():
                break
            with np.load(path, allow_pickle=False) as f:
                runs.append(Scored(np.nan_to_num(f["scores"].astype(np.float64)), None, float(f["seconds"])))
        if len(runs) == len(corpus.series):
            found[folder.name] = runs
        else:
            print(f"benchmark: {library} {folder.name} has scores for {len(runs)} of the {len(corpus.series)} series "
                  f"of {corpus.name}; left out", file=sys.stderr, flush=True)
    return found


# --- cost against the number of variables ---------------------------------------------------------


SCALING_VARIABLES = (1, 5, 25, 50)


def scaling(names: list[str], json_path, readings: int = 8000, variables=SCALING_VARIABLES) -> tuple[Path, Path, list[dict]]:
    """Seconds to learn `readings` readings of d variables and then score as many more (what
    `ts fit` then `ts evaluate` do), for each d; the series are random walks with a daily
    cycle, so every variable has a period and nothing is constant."""
    from normalcy.core.registry import build
    from normalcy.timeseries.data import TimeSeries

    rng = np.random.default_rng(0)
    d_max = max(variables)
    t = np.arange(2 * readings)
    values = np.cumsum(rng.normal(size=(2 * readings, d_max)), axis=0) * 0.1 + np.sin(2 * np.pi * t / 288)[:, None]
    records = []
    for name in names:
        base, params = split_variant(name)
        for d in progress(variables, desc=f"scaling: {name}", unit="size"):
            train = TimeSeries(values[:readings, :d], [f"x{j}" for j in range(d)])
            test = TimeSeries(values[readings:, :d], train.columns)
            start, cpu = time.perf_counter(), time.process_time()
            detector = build("timeseries", base, params).fit(train)
            fitted, fit_cpu = time.perf_counter(), time.process_time()
            detector.decision_function(test)
            done, done_cpu = time.perf_counter(), time.process_time()
            records.append({"detector": name, "dataset": f"random walks {readings} + {readings} x {d}", "variables": d,
                            "readings": readings, "fit_seconds": fitted - start, "score_seconds": done - fitted,
                            "fit_cpu_seconds": fit_cpu - cpu, "score_cpu_seconds": done_cpu - fit_cpu,
                            "cpu_seconds_per_variable": (done_cpu - cpu) / d})
    # CPU seconds as well as wall-clock ones: on a shared machine the wall clock measures the load
    columns = ["detector", "variables", "readings", "fit_seconds", "score_seconds", "fit_cpu_seconds",
               "score_cpu_seconds", "cpu_seconds_per_variable"]
    return (*write_results(records, json_path, PACKAGES, "Time-series cost against variables", columns,
                           {"readings": readings}), records)
