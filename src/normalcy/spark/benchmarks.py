"""Benchmarks of the streaming, per-entity sequence and graph workloads on Spark (the table and
per-group scale benchmark is `normalcy.spark.bench`). Each writes JSON plus a Markdown table
(`normalcy.core.benchmark.write_results`) with the load average before and after every timed
run: the development machine is shared, and a figure is honest only with its load.

- `stream`: `keys` x `readings` readings (one file per `readings / files` seconds of every key)
  through `normalcy.spark.stream` on a local master, one file per micro-batch; readings/s
  overall and per batch (the median batch: sustained), RocksDB state store.
- `sequence`: the entity-sequence model against DeepLog on HDFS sessions (logdeep split, the
  log benchmark's protocol, in process), the same fitted with `fit_per_group` and scored with
  `score_per_group` on Spark, and per-entity against one global model on loghub event streams
  with injected sequence anomalies (protocol in `loghub_sequences`).
- `graph`: graph-embedding edge scores against APE and the pairwise-count baseline on the
  loghub injection benchmark (`normalcy.events.benchmark.inject`: the same injected events), in
  process and on Spark with several parts; the grid of dimensions and walk steps with the
  leave-one-stream-out choice; and the scaling of `graph.fit` on generated graphs (10^5 to
  10^7 edges; local[1] against local[2]).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core import metrics
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError

PACKAGES = ("pyspark", "pandas", "pyarrow", "numpy", "scipy", "torch")


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting) since boot: over a run
    on an otherwise quiet machine, the run's own use of every core, JVM threads included."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _spark(master: str, name: str, conf: dict | None = None):
    from normalcy.spark.session import session

    return session(master, name, progress=False, conf={
        "spark.driver.memory": "6g", "spark.executorEnv.OMP_NUM_THREADS": "1",
        "spark.executorEnv.MKL_NUM_THREADS": "1", **(conf or {})})


# --- streaming -------------------------------------------------------------------------------------


STREAM_COLUMNS = ["job", "runner", "keys", "readings", "batches", "seconds", "readings_per_second",
                  "median_batch_readings_per_second", "late", "failed", "load_before", "load_after"]


def stream(json_path, keys: int = 10_000, readings: int = 1_000, files: int = 10, master: str = "local[2]",
           work: Path | None = None, detector: str = "range-novelty", params: dict | None = None, on_record=None):
    """Readings through `normalcy.spark.stream` from a folder of Parquet files (see the module
    docstring)."""
    from normalcy.core.registry import build
    from normalcy.spark.stream import run_files

    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="normalcy-stream-bench-"))
    inputs = _stream_files(work / "in", keys, readings, files)
    params = {"history": 200, "likelihood_window": 100, "averaging": 10} if params is None else params
    rng = np.random.default_rng(0)
    model = build("timeseries", detector, params).fit(np.sin(np.arange(400) / 9) + 0.2 * rng.normal(size=400))
    model.set_threshold(0.5)
    model.save(work / "model")
    for folder in ("out", "ck"):
        shutil.rmtree(work / folder, ignore_errors=True)
    spark = _spark(master, "normalcy stream bench", {
        "spark.sql.shuffle.partitions": str(2 * int(master[6:-1]) if master.startswith("local[") else 8),
        "spark.sql.streaming.stateStore.providerClass":
            "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"})
    try:
        before, start = _load(), time.perf_counter()
        query = run_files(spark, work / "model", inputs, work / "out", "key", "t", work / "ck", once=True, max_files=1)
        seconds, after = time.perf_counter() - start, _load()
        progress = [p for p in query.recentProgress if p["numInputRows"]]
        out = spark.read.parquet(str(work / "out"))
        counts = out.groupBy("status").count().toPandas().set_index("status")["count"]
    finally:
        spark.stop()
    total = keys * readings
    rates = [p["numInputRows"] / max(p["durationMs"]["triggerExecution"] / 1000, 1e-9) for p in progress]
    record = {"job": "stream", "runner": f"Spark {master}", "keys": keys, "readings": total, "batches": len(progress),
              "seconds": round(seconds, 1), "readings_per_second": total / seconds,
              "median_batch_readings_per_second": float(np.median(rates)) if rates else None,
              "ok": int(counts.get("ok", 0)), "late": int(counts.get("late", 0)),
              "failed": int(counts[[s for s in counts.index if str(s).startswith("failed")]].sum()),
              "load_before": before, "load_after": after, "detector": detector, "params": params}
    if on_record:
        on_record(record)
    settings = {"keys": keys, "readings_per_key": readings, "files": files, "detector": detector, "params": params,
                "state_store": "RocksDB", "trigger": "availableNow, one file per micro-batch"}
    return write_results([record], json_path, PACKAGES, "normalcy on Spark: streaming benchmark", STREAM_COLUMNS,
                         settings)


def _stream_files(folder: Path, keys: int, readings: int, files: int) -> Path:
    """`files` Parquet files, each the next readings/files seconds of every key; kept for reuse."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = folder / f"_done-{keys}-{readings}-{files}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    per_file = readings // files
    start = np.datetime64("2024-01-01T00:00:00", "us")
    period = rng.uniform(30, 200, size=keys)
    for i in range(files):
        seconds = np.arange(i * per_file, (i + 1) * per_file)
        values = np.sin(2 * np.pi * seconds[None, :] / period[:, None]) + 0.2 * rng.normal(size=(keys, per_file))
        values[rng.random((keys, per_file)) < 0.001] += 5.0
        table = pa.table({"key": np.repeat([f"k{j:05d}" for j in range(keys)], per_file),
                          "t": np.tile(start + seconds.astype("timedelta64[s]"), keys),
                          "value": values.ravel()})
        pq.write_table(table, folder / f"part-{i:04d}.parquet")
    marker.touch()
    return folder


# --- per-entity sequence models --------------------------------------------------------------------


SEQUENCE_COLUMNS = ["detector", "dataset", "runner", "threshold_rule", "precision", "recall", "f1", "auroc",
                    "fit_seconds", "n_test", "load_before", "load_after"]
# The entity whose event stream each loghub system is cut into: the column of its event table
# (normalcy.events.benchmark.SYSTEMS) that names who or what emits the events.
ENTITIES = {"OpenSSH": "address", "Linux": "component", "OpenStack": "component", "Hadoop": "process",
            "HDFS": "component", "Zookeeper": "node", "HPC": "node", "BGL": "midplane", "Thunderbird": "node",
            "Mac": "component"}
CHUNK, MIN_EVENTS, TRAIN_SHARE = 10, 60, 0.7


def sequence(json_path, data: Path, master: str = "local[2]", seeds: int = 3, systems: list[str] | None = None,
             on_record=None):
    """HDFS and loghub sequence benchmarks (module docstring); `systems` limits the loghub part
    (default: every system of ENTITIES; an empty list skips it)."""
    systems = list(ENTITIES) if systems is None else list(systems)
    unknown = [s for s in systems if s not in ENTITIES]
    if unknown:
        raise DataError(f"unknown loghub system {unknown[0]!r}; known: {', '.join(ENTITIES)}")
    from normalcy.logs import benchmark as logs_bench

    data = Path(data)
    hdfs = data / "hdfs_sessions" / "logdeep"
    if not (hdfs / "robust_log_train.csv").is_file() or not (data / "loghub").is_dir():
        raise DataError(f"benchmark data missing under {data} (expected hdfs_sessions/logdeep and loghub)")
    records = []

    def add(r):
        records.append(r)
        if on_record:
            on_record(r)

    templates = logs_bench.read_hdfs_templates(data / "loghub" / "HDFS" / "HDFS_templates.csv")
    for name in ("entity-sequence", "deeplog"):
        before = _load()
        for r in logs_bench.hdfs_logdeep(hdfs, [name], 1, templates):
            if r["detector"] == name or name == "entity-sequence":  # the trivial baselines once
                add({**r, "runner": "in process", "load_before": before, "load_after": _load()})
    spark = _spark(master, "normalcy sequence bench", {"spark.sql.shuffle.partitions": "8"})
    try:
        for r in hdfs_on_spark(spark, hdfs, data / "tmp-sequence-bench"):
            add(r)
        for r in loghub_sequences(spark, data / "loghub", seeds, systems):
            add(r)
    finally:
        spark.stop()
    settings = {"hdfs": "fit on the 6,000 normal sessions of robust_log_train.csv, test robust_log_valid.csv",
                "loghub": f"per-entity streams, chunks of {CHUNK} events, first {TRAIN_SHARE:.0%} train, "
                          "half the test chunks with one foreign event", "systems": systems, "seeds": seeds}
    return write_results(records, json_path, PACKAGES, "Per-entity sequence models on Spark", SEQUENCE_COLUMNS,
                         settings)


def hdfs_on_spark(spark, folder: Path, work: Path) -> list[dict]:
    """entity-sequence fitted with fit_per_group (one group: HDFS has no entity above the block;
    the sessions are the blocks, threshold fpr:0.01 on a random 10 % of them, as the in-process
    rule) and scored with score_per_group."""
    from normalcy.logs.benchmark import read_sessions_csv
    from normalcy.spark.groups import fit_per_group, score_per_group

    train_x, train_y = read_sessions_csv(folder / "robust_log_train.csv")
    test_x, test_y = read_sessions_csv(folder / "robust_log_valid.csv")
    train = [s for s, y in zip(train_x, train_y) if y == 0]

    def table(seqs, offset):
        rows = [(f"s{offset + i:06d}", (offset + i) * 10_000 + j, int(e)) for i, s in enumerate(seqs) for j, e in enumerate(s)]
        return pd.DataFrame(rows, columns=["session", "t", "event"]).assign(entity="hdfs")

    before, start = _load(), time.perf_counter()
    shutil.rmtree(work, ignore_errors=True)
    index = fit_per_group(spark.createDataFrame(table(train, 0)), "entity", "t", ["event"], work, "entity-sequence",
                          {"threads": 1}, threshold="fpr:0.01", holdout=0.1, modality="logs", sessions="session")
    fit_seconds = time.perf_counter() - start
    if (index.status != "ok").any():
        raise DataError(f"the HDFS fit failed on Spark: {index.error.iloc[0]}")
    scored = score_per_group(spark.createDataFrame(table(test_x, len(train))), "entity", "t", work).toPandas()
    scored = scored.sort_values("first_time")
    found = metrics.binary_scores(test_y, scored.score.to_numpy(), float(index.threshold.iloc[0]))
    shutil.rmtree(work, ignore_errors=True)
    return [{"detector": "entity-sequence", "dataset": "hdfs_logdeep", "runner": "Spark fit_per_group",
             "threshold_rule": "fpr:0.01", **{k: found[k] for k in ("precision", "recall", "f1")},
             "auroc": metrics.auroc(test_y, scored.score.to_numpy()), "fit_seconds": fit_seconds,
             "n_test": len(test_y), "load_before": before, "load_after": _load()}]


def loghub_chunks(frame: pd.DataFrame, entity: str, seed: int):
    """Per entity with >= MIN_EVENTS events: its stream (log order) cut into chunks of CHUNK
    events; the first TRAIN_SHARE of the chunks train, the rest test, and half the test chunks,
    at random, get one event replaced by a *foreign* one (an event of the system this entity
    never emits in the whole log). Returns (train rows, test rows, labels by (entity, chunk))."""
    rng = np.random.default_rng(seed)
    train, test, labels = [], [], {}
    vocabulary = frame.event.unique()
    for name, rows in frame.groupby(entity, sort=True):
        if len(rows) < MIN_EVENTS:
            continue
        events = rows.event.to_numpy()
        own = set(events)
        foreign = np.array([e for e in vocabulary if e not in own])
        chunks = [events[i:i + CHUNK] for i in range(0, len(events) - CHUNK + 1, CHUNK)]
        cut = int(round(TRAIN_SHARE * len(chunks)))
        for c, chunk in enumerate(chunks):
            chunk = chunk.copy()
            label = 0
            if c >= cut and len(foreign) and rng.random() < 0.5:
                chunk[rng.integers(len(chunk))] = foreign[rng.integers(len(foreign))]
                label = 1
            part = pd.DataFrame({"entity": name, "session": f"{c:05d}", "t": c * CHUNK + np.arange(len(chunk)),
                                 "event": chunk})
            (train if c < cut else test).append(part)
            if c >= cut:
                labels[(name, f"{c:05d}")] = label
    return pd.concat(train), pd.concat(test), labels


def loghub_sequences(spark, root: Path, seeds: int, systems: list[str]) -> list[dict]:
    """Per-entity entity-sequence models (fit_per_group by entity) against one global model
    (every entity's sessions in one group) and the unseen-event baseline, per loghub system."""
    from normalcy.events.benchmark import streams
    from normalcy.spark.groups import fit_per_group, score_per_group

    records = []
    for system, frame in (streams(root, systems) if systems else {}).items():
        results: dict[tuple, list] = {}
        for seed in range(seeds):
            train, test, labels = loghub_chunks(frame, ENTITIES[system], seed)
            y = np.array([labels[(e, s)] for e, s in zip(test.entity, test.session)])
            for runner, detector, per_entity in (("per entity", "entity-sequence", True),
                                                  ("one global model", "entity-sequence", False),
                                                  ("per entity", "unseen", True)):
                work = Path(tempfile.mkdtemp(prefix="normalcy-seq-"))
                key_train = train if per_entity else train.assign(group="all", session=train.entity + "\x1f" + train.session)
                key_test = test if per_entity else test.assign(group="all", session=test.entity + "\x1f" + test.session)
                key = "entity" if per_entity else "group"
                before, start = _load(), time.perf_counter()
                fit_per_group(spark.createDataFrame(key_train), key, "t", ["event"], work, detector,
                              {"threads": 1, "seed": seed} if detector == "entity-sequence" else {},
                              threshold="own", modality="logs", sessions="session")
                seconds = time.perf_counter() - start
                scored = score_per_group(spark.createDataFrame(key_test), key, "t", work).toPandas()
                shutil.rmtree(work, ignore_errors=True)
                ok = scored[scored.status == "ok"]
                names = (ok[key].astype(str) + "\x1f" + ok.session) if per_entity else ok.session
                score_of = dict(zip(names, ok.score))
                s = np.array([score_of.get(f"{e}\x1f{c}", np.inf) for e, c in zip(test.entity, test.session)])
                # one score per chunk: the rows of a chunk share it
                chunk = pd.DataFrame({"k": test.entity + "\x1f" + test.session, "s": s, "y": y}).drop_duplicates("k")
                chunk.s = chunk.s.replace(np.inf, chunk.s[np.isfinite(chunk.s)].max() + 1)
                results.setdefault((runner, detector), []).append(
                    (metrics.auroc(chunk.y, chunk.s), seconds, before, _load(), len(chunk), int(chunk.y.sum())))
        for (runner, detector), runs in results.items():
            records.append({"detector": detector, "dataset": f"loghub {system} by {ENTITIES[system]}", "runner": runner,
                            "threshold_rule": "-", "auroc": float(np.mean([r[0] for r in runs])),
                            "fit_seconds": float(np.mean([r[1] for r in runs])), "n_test": runs[0][4],
                            "n_anomalous": runs[0][5], "load_before": runs[0][2], "load_after": runs[-1][3]})
    return records


# --- graph embeddings ------------------------------------------------------------------------------


GRAPH_COLUMNS = ["job", "detector", "dataset", "runner", "auroc", "auroc_std", "edges", "parts", "seconds",
                 "edges_per_second", "busy_cores", "load_before", "load_after"]
GRID = [(d, s) for d in (8, 16, 32) for s in (1, 3, 10)]


def graph(json_path, data: Path | None, sizes: tuple[int, ...] = (100_000, 1_000_000, 10_000_000),
          seeds: int = 3, work: Path | None = None, part_edges: int | None = None, one_core_sizes=None,
          on_record=None):
    """The loghub comparison (when `data` is given) and the scaling runs (module docstring)."""
    records = []

    def add(r):
        records.append(r)
        if on_record:
            on_record(r)

    if data is not None:
        for r in graph_loghub(Path(data) / "loghub", seeds):
            add(r)
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="normalcy-graph-bench-"))
    one_core = set(sizes[-1:] if one_core_sizes is None else one_core_sizes)
    for size in sizes:
        for cores in ((1, 2) if size in one_core else (2,)):
            add(graph_scaling(work, size, cores, part_edges))
    settings = {"seeds": seeds, "sizes": list(sizes), "part_edges": part_edges, "grid": GRID}
    return write_results(records, json_path, PACKAGES, "Graph embeddings on Spark", GRAPH_COLUMNS, settings)


def graph_loghub(root: Path, seeds: int) -> list[dict]:
    """AUROC per stream: graph embedding (in process; on Spark with several parts), APE, the
    pairwise-count baseline, on the same injected events; and the grid with its
    leave-one-stream-out choice."""
    from normalcy.events.benchmark import inject, make, streams
    from normalcy.spark import graph as g

    runs: dict[tuple, list[float]] = {}
    parts: dict[str, int] = {}  # parts of the Spark embedding, by stream (the last seed's)
    spark = _spark("local[2]", "normalcy graph bench (loghub)", {"spark.sql.shuffle.partitions": "4"})
    try:
        for name, frame in streams(root).items():
            for seed in range(seeds):
                train, test, labels = inject(frame, 0.05, seed)
                columns = list(frame.columns)
                for dim, steps in GRID:
                    embedding = g.fit_local(train, columns, dim, steps, seed)
                    runs.setdefault(("grid", f"graph dim={dim} steps={steps}", name), []).append(
                        metrics.auroc(labels, g.score_local(embedding, test)))
                for detector in ("ape", "frequency-pairs"):
                    model = make(detector, seed).fit(train)
                    runs.setdefault(("compare", detector, name), []).append(
                        metrics.auroc(labels, model.decision_function(test)))
                local = g.fit_local(train, columns, seed=seed)
                runs.setdefault(("compare", "graph (in process, 1 part)", name), []).append(
                    metrics.auroc(labels, g.score_local(local, test)))
                # Parts of about a quarter of the graph, so that the merge is exercised.
                embedding = g.fit(spark.createDataFrame(train), columns, max_part_edges=max(50, local.info["edges"] // 4),
                                  seed=seed)
                scored = g.score(spark.createDataFrame(test.assign(__row=np.arange(len(test)))), embedding)
                scores = scored.orderBy("__row").select("score").toPandas().score.to_numpy()
                runs.setdefault(("compare", "graph (Spark, parts of ~1/4 the graph)", name), []).append(
                    metrics.auroc(labels, scores))
                parts[name] = embedding.info["parts"]
    finally:
        spark.stop()
    records = [{"job": job, "detector": detector, "dataset": dataset, "runner": "local[2]" if "Spark" in detector
                else "in process", "auroc": float(np.mean(v)), "auroc_std": float(np.std(v)),
                "parts": parts[dataset] if "Spark" in detector else 1}
               for (job, detector, dataset), v in runs.items()]
    grid = pd.DataFrame([r for r in records if r["job"] == "grid"])
    loo = {}
    for held in grid.dataset.unique():
        worst = grid[grid.dataset != held].groupby("detector").auroc.min()
        loo[held] = worst.idxmax()
    for held, choice in loo.items():
        records.append({"job": "grid choice (leave this stream out, best worst stream)", "detector": choice,
                        "dataset": held})
    for job in ("compare", "grid"):
        for detector in sorted({r["detector"] for r in records if r["job"] == job}):
            mine = [r["auroc"] for r in records if r["job"] == job and r["detector"] == detector]
            records.append({"job": job, "detector": detector, "dataset": "mean over streams", "auroc": float(np.mean(mine))})
    return records


def graph_scaling(work: Path, edges: int, cores: int, part_edges: int | None) -> dict:
    """Seconds of `graph.fit` (graph, partition, per-part embedding, merge; the node table
    computed) on a generated graph of about `edges` distinct edges."""
    from normalcy.spark import graph as g

    data = _graph_data(work, edges)
    spark = _spark(f"local[{cores}]", f"normalcy graph bench local[{cores}]",
                   {"spark.sql.shuffle.partitions": str(max(4, 4 * cores)),
                    "spark.sql.files.maxPartitionBytes": str(max(data.stat().st_size // (4 * cores), 1 << 20))})
    try:
        before, start, busy = _load(), time.perf_counter(), _busy_seconds()
        embedding = g.fit(spark.read.parquet(str(data)), ["user", "host"],
                          max_part_edges=part_edges or g.DEFAULT_PART_EDGES)
        seconds, after, busy = time.perf_counter() - start, _load(), _busy_seconds() - busy
    finally:
        spark.stop()
    info = embedding.info
    return {"job": "scaling", "detector": "graph", "dataset": f"generated {edges:,} edges", "runner": f"Spark local[{cores}]",
            "edges": info["edges"], "parts": info["parts"], "nodes": info["nodes"], "boundary_nodes": info["boundary_nodes"],
            "seconds": round(seconds, 1), "edges_per_second": info["edges"] / seconds,
            "seconds_graph": round(info["seconds_graph"], 1), "seconds_embed": round(info["seconds_embed"], 1),
            "seconds_merge": round(info["seconds_merge"], 1), "busy_cores": round(busy / seconds, 2),
            "load_before": before, "load_after": after}


def _graph_data(work: Path, edges: int) -> Path:
    """A user-host event table with about `edges` distinct edges: users in communities of hosts,
    each user on ~10 hosts, 90 % of them in its community (fixed seed); kept for reuse."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = work / f"graph-{edges}.parquet"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(edges)
    users, hosts = max(edges // 10, 10), max(edges // 50, 10)
    communities = max(hosts // 20, 1)
    writer, chunk = None, 1_000_000
    for start in range(0, edges, chunk):
        n = min(chunk, edges - start)
        user = rng.integers(0, users, n)
        community = user % communities
        inside = rng.random(n) < 0.9
        host = np.where(inside, community + communities * rng.integers(0, max(hosts // communities, 1), n),
                        rng.integers(0, hosts, n)) % hosts
        table = pa.table({"user": pa.array([f"u{u}" for u in user]), "host": pa.array([f"h{h}" for h in host])})
        writer = writer or pq.ParquetWriter(work / ".graph.tmp", table.schema)
        writer.write_table(table)
    writer.close()
    os.replace(work / ".graph.tmp", path)
    return path
