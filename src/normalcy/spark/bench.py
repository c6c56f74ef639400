"""The Spark scale benchmark: the same jobs in one Python process, on local[1] and on local[2].

1. Table scoring: `rows` rows (8 numeric columns and one categorical, fixed seed) scored by ECOD,
   a member of the default ensemble that is parameter-free and linear in the rows, fitted on
   100,000 rows of the same distribution; Parquet in, Parquet out in every runner.
2. Fit-per-group: `series` series of `points` readings, one range-novelty model each (the
   fastest time-series detector per reading, see docs/spark.md), on local[2]; and the first
   `scaling_series` of them in one process, on local[1] and on local[2] for the scaling ratio.

Data are generated into Parquet before any clock starts; a Spark session's start-up is outside
the timing, its Python workers' start-up is inside. Workers run with one BLAS/OpenMP thread.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.benchmark import write_results
from normalcy.core.threshold import FalseAlarmRate
from normalcy.spark.groups import DEFAULT_DETECTOR, fit_group, fit_per_group
from normalcy.core.threads import thread_limit
from normalcy.spark.score import score as spark_score

COLUMNS = ["job", "runner", "detector", "items", "unit", "seconds", "per_second", "vs_local_1", "errors"]
TABLE_DETECTOR = "ecod"
ROWS_PER_GROUP = 250_000  # Parquet row groups: Spark's unit of splitting a file into tasks
TARGET_ROWS_PER_HOUR = 1_000_000_000


def run(json_path, rows: int, series: int, points: int, scaling_series: int, work: Path | None,
        batch_rows: int, on_record=None, table_detector: str = TABLE_DETECTOR) -> tuple[Path, Path, list[dict]]:
    """The benchmark; `on_record(record)` is called as each figure is measured. With `series`
    0, only the table job runs."""
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix="normalcy-spark-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    table, model = _table_data(work, rows, table_detector)
    records = []

    def add(record: dict) -> None:
        records.append(record)
        if on_record is not None:
            on_record(record)

    start = time.perf_counter()
    with thread_limit(1):  # as each Spark worker: one BLAS/OpenMP thread
        _score_in_process(model, table, work / "scored-single", batch_rows)
    add(_record("table score", "single process", table_detector, rows, "rows", time.perf_counter() - start))
    for cores in (1, 2):
        seconds = _spark_job(cores, batch_rows, table, lambda spark: spark_score(
            spark.read.parquet(str(table)), model).write.mode("overwrite").parquet(str(work / f"scored-{cores}")))
        add(_record("table score", f"Spark local[{cores}]", table_detector, rows, "rows", seconds))

    if series > 0:
        _fit_per_group_jobs(work, series, points, min(scaling_series, series), batch_rows, add)

    for r in records:
        same = [b for b in records if b["job"] == r["job"] and b["runner"] == "Spark local[1]" and b["items"] == r["items"]]
        r["vs_local_1"] = r["per_second"] / same[0]["per_second"] if same else None
    settings = {"rows": rows, "series": series, "points": points,
                "series_detector_params": {"history": points} if series else None,
                "scaling_series": min(scaling_series, series), "arrow_batch_rows": batch_rows,
                "load_average_before": "/".join(f"{v:.2f}" for v in load_before),
                "load_average_after": "/".join(f"{v:.2f}" for v in os.getloadavg()),
                **cluster_estimate(records)}
    for scored in work.glob("scored-*"):  # a gigabyte each at full size
        shutil.rmtree(scored, ignore_errors=True)
    return (*write_results(records, json_path, ("pyspark", "pandas", "pyarrow", "numpy"),
                           "normalcy on Spark: scale benchmark", COLUMNS, settings), records)


def _fit_per_group_jobs(work: Path, series: int, points: int, subset: int, batch_rows: int, add) -> None:
    """Fit-per-group in one process and on local[1] for `subset` series, on local[2] for `subset`
    and for all `series`."""
    readings = _series_data(work, series, points)
    frame = pd.read_parquet(readings, filters=[("key", "<", subset)])
    start = time.perf_counter()
    # history = the series length: on 2,000-reading series the same scores as the default 8,000,
    # with a quarter of the buffer to shift at each reading.
    params = {"history": points}
    with thread_limit(1):
        index = pd.concat([fit_group("key", "t", ["v"], str(work / "models-single"), DEFAULT_DETECTOR, params,
                                     "fpr:0.01", 0.2, g) for _, g in frame.groupby("key")])
    add(_record("fit per group", "single process", DEFAULT_DETECTOR, subset, "series",
                time.perf_counter() - start, int((index.status != "ok").sum())))
    for cores, n in ((1, subset), (2, subset), (2, series)):
        found = {}

        def fit(spark, n=n, found=found):
            data = spark.read.parquet(str(readings)).filter(f"key < {n}")
            found["index"] = fit_per_group(data, "key", "t", ["v"], work / f"models-{cores}-{n}", DEFAULT_DETECTOR, params)

        seconds = _spark_job(cores, batch_rows, readings, fit)
        add(_record("fit per group", f"Spark local[{cores}]", DEFAULT_DETECTOR, n, "series", seconds,
                    int((found["index"].status != "ok").sum())))


def cluster_estimate(records: list[dict]) -> dict:
    """Cores (and 16-core executors) for a billion table rows an hour, from the rows/s per core of
    local[2], assuming executors scale as local[1] -> local[2] did and input splits into enough tasks."""
    two = next(r for r in records if r["job"] == "table score" and r["runner"] == "Spark local[2]")
    per_core = two["per_second"] / 2
    cores = int(np.ceil(TARGET_ROWS_PER_HOUR / 3600 / per_core))
    return {"rows_per_second_per_core_local_2": round(per_core), "cores_for_1e9_rows_per_hour": cores,
            "executors_16_cores_for_1e9_rows_per_hour": int(np.ceil(cores / 16))}


def _record(job, runner, detector, items, unit, seconds, errors=0) -> dict:
    return {"job": job, "runner": runner, "detector": detector, "dataset": f"synthetic {items} {unit}", "items": items,
            "unit": unit, "seconds": round(seconds, 2), "per_second": items / seconds, "errors": errors}


def _spark_job(cores: int, batch_rows: int, data: Path, job) -> float:
    """Seconds `job(spark)` takes on a fresh local[cores] session, whose files are split into
    about 4 tasks per core, so that the last task does not leave a core idle for long."""
    from normalcy.spark.session import session

    size = sum(f.stat().st_size for f in Path(data).rglob("*.parquet")) if Path(data).is_dir() else Path(data).stat().st_size
    spark = session(f"local[{cores}]", f"normalcy bench local[{cores}]", progress=False, batch_rows=batch_rows, conf={
        "spark.sql.files.maxPartitionBytes": str(max(size // (4 * cores), 1 << 20)),
        "spark.sql.shuffle.partitions": str(8 * cores),
        "spark.executorEnv.OMP_NUM_THREADS": "1", "spark.executorEnv.MKL_NUM_THREADS": "1",
    })
    try:
        start = time.perf_counter()
        job(spark)
        return time.perf_counter() - start
    finally:
        spark.stop()


def _score_in_process(model: Path, table: Path, out: Path, batch_rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from normalcy.core.modelfile import load
    from normalcy.core.results import Prediction

    detector = load(model)
    out.mkdir(exist_ok=True)
    writer = None
    try:
        for batch in pq.ParquetFile(table).iter_batches(batch_size=batch_rows):
            frame = batch.to_pandas()
            prediction = Prediction.from_scores(detector.decision_function(frame), detector.threshold_)
            result = pa.Table.from_pandas(frame.assign(score=prediction.scores, label=prediction.labels),
                                          preserve_index=False)
            writer = writer or pq.ParquetWriter(out / "part-0.parquet", result.schema)
            writer.write_table(result)
    finally:
        if writer is not None:
            writer.close()


def _table_data(work: Path, rows: int, detector_name: str) -> tuple[Path, Path]:
    """`rows` rows to score and a model fitted on 100,000 others, from a fixed seed."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from normalcy.core.registry import build

    rng = np.random.default_rng(0)
    table, model = work / "table.parquet", work / f"{detector_name}.model"
    if not table.exists():
        writer = None
        for start in range(0, rows, ROWS_PER_GROUP):
            chunk = pa.Table.from_pandas(_table_rows(rng, min(ROWS_PER_GROUP, rows - start)), preserve_index=False)
            writer = writer or pq.ParquetWriter(work / ".table.tmp", chunk.schema)
            writer.write_table(chunk, row_group_size=ROWS_PER_GROUP)
        writer.close()
        os.replace(work / ".table.tmp", table)
    fitting = _table_rows(np.random.default_rng(1), 110_000)
    detector = build("tabular", detector_name).fit(fitting.iloc[:100_000])
    detector.calibrate(fitting.iloc[100_000:], FalseAlarmRate(0.01)).save(model)
    return table, model


def _table_rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame(rng.normal(size=(n, 8)) * np.arange(1, 9), columns=[f"x{j}" for j in range(8)])
    frame["kind"] = rng.choice(np.array(["a", "b", "c", "d", "e"]), size=n, p=[0.4, 0.3, 0.2, 0.09, 0.01])
    return frame


def _series_data(work: Path, series: int, points: int) -> Path:
    """`series` series of `points` readings: a daily-like cycle, noise and, in one in ten, a level
    shift near the end; sorted by key, 1,000 series to a row group."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = work / "series.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(2)
    t = np.arange(points)
    writer = None
    for first in range(0, series, 1000):
        keys = np.arange(first, min(first + 1000, series))
        period = rng.uniform(50, 300, size=(len(keys), 1))
        values = np.sin(2 * np.pi * t / period) + 0.2 * rng.normal(size=(len(keys), points))
        shifted = rng.random(len(keys)) < 0.1
        values[shifted, int(points * 0.9):] += 3.0
        chunk = pa.table({"key": np.repeat(keys, points), "t": np.tile(t, len(keys)), "v": values.ravel()})
        writer = writer or pq.ParquetWriter(work / ".series.tmp", chunk.schema)
        writer.write_table(chunk)
    writer.close()
    os.replace(work / ".series.tmp", path)
    return path
