"""Structured Streaming with one time-series detector per key, its state in Spark's state store.

`stream(df, model, key, time_col)` turns a streaming DataFrame of readings (key, time, the
model's value columns) into a streaming DataFrame of scores (key, time, score, label, status)
with `groupBy(key).applyInPandasWithState`. Every key has its own detector: it starts from the
fitted model (one model folder for every key, or a `fit_per_group` folder with one model per
key) and goes on, scoring then learning each reading in turn (a micro-batch's readings of a key
in one pass of the detector's own loop, as `score_one` then `learn_one` would), exactly as
`decision_function` would over the key's whole series. Between micro-batches the detector lives
in Spark's state store as two columns, both in normalcy's safe model format and never pickled:
`arrays` (the detector's arrays in safetensors) and `meta` (JSON: its class, parameters,
threshold and metadata, and the key's last reading time). Restoring one checks it as a model
file is checked (`_restore`).

Order and lateness, per key: readings are scored in time order within each micro-batch (ties
broken by the values, so a replayed batch gives the same result); a reading whose time is not
after the last reading the key has scored is *late*: it gets status ``late`` and no score, and
is not learned, so a key's detector only ever sees its readings in time order. With
``watermark`` (a Spark interval such as "30 seconds"; needs a timestamp time column), readings
wait in the key's state until Spark's event-time watermark (the latest time seen less the
delay) passes them, and are then scored in time order: readings up to the delay out of order
are put back in order instead of being late. Spark itself drops readings older than the
watermark before they reach a key (the query's progress counts them as
``numRowsDroppedByWatermark``). The newest readings of a key wait until the watermark passes
them: at the next micro-batch, or the next that has data.

Restart: Spark's checkpoint holds the source offsets, the state store versions and the file
sink's log; a query stopped or killed mid-batch and started again on the same checkpoint
replays the unfinished batch from the state of the last finished one, so its scores equal
those of an uninterrupted run (tests/test_spark_stream.py kills one and compares). Read the
output with Spark (`spark.read.parquet(output)`), which follows the sink's log and skips the
files of a batch that never finished.
"""

from __future__ import annotations

import json
import math
import time as clock
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError, ModelFileError, NormalcyError
from normalcy.core.threads import hold

STATE_SCHEMA = "arrays binary, meta string"
STATE_FORMAT = "normalcy-stream-state"
STATE_VERSION = 1
OUTPUT_COLUMNS = ("score", "label", "status")
_ORDER, _EVENT_TIME = "__normalcy_order", "__normalcy_event_time"


@dataclass(frozen=True)
class _Models:
    """Where each key's first detector comes from: one model folder (shipped with the job, or
    read at a shared path) or a fit_per_group folder."""

    columns: tuple[str, ...]
    single: tuple | None = None       # (where, shipped, digest)
    root: str | None = None           # fit_per_group folder
    folders: dict | None = None       # str(key) -> folder
    failures: dict | None = None      # str(key) -> fit error

    def first(self, key):
        """A fresh detector for a key seen for the first time."""
        from normalcy.spark.score import worker_model

        if self.single is not None:
            base = worker_model(*self.single, threads=0)
        else:
            from normalcy.core.modelfile import load

            name = str(key)
            if name not in self.folders:
                reason = self.failures.get(name)
                raise DataError(f"no model for key {key!r}" + (f": its fit failed ({reason})" if reason else ""))
            base = load(Path(self.root) / self.folders[name])
        arrays, meta = base._get_state()
        return _rebuild(_class_path(base), base.get_params(deep=False), arrays, meta, base.threshold_)


def stream(df, model: str | Path, key: str, time_col: str, watermark: str | None = None, ship: bool = True,
           threads: int = 1):
    """Scores of a streaming DataFrame of readings: key, time, score (double), label (tinyint, 1
    at or above the key's threshold), status ("ok", "late" or "failed: <reason>"); lazy, write it
    with `writeStream`. `model` is a time-series model folder (every key starts from it) or a
    `fit_per_group` folder (each key from its own model; a key without one gets status failed).
    See the module docstring for order, lateness and `watermark`."""
    from pyspark.sql import functions as F
    from pyspark.sql.streaming.state import GroupStateTimeout
    from pyspark.sql.types import (ByteType, DoubleType, NumericType, StringType, StructField, StructType,
                                   TimestampNTZType, TimestampType)

    models = open_models(df.sparkSession, Path(model), ship)
    types = {f.name: f.dataType for f in df.schema.fields}
    for name in (key, time_col, *models.columns):
        if name not in types:
            raise DataError(f"input has no column {name!r}; columns are {', '.join(types)}")
    for name in models.columns:
        if not isinstance(types[name], NumericType):
            raise DataError(f"value column {name!r} has type {types[name].simpleString()}; expected numbers")
    taken = [c for c in OUTPUT_COLUMNS if c in (key, time_col)]
    if taken:
        raise DataError(f"key or time column is named {taken[0]!r}, an output column; rename it")
    kind = types[time_col]
    timestamps = isinstance(kind, (TimestampType, TimestampNTZType))
    if not timestamps and not isinstance(kind, NumericType):
        raise DataError(f"time column {time_col!r} has type {kind.simpleString()}; expected a timestamp or a number")
    if watermark is not None and not timestamps:
        raise DataError(f"a watermark needs a timestamp time column; {time_col!r} has type {kind.simpleString()}")
    event_time = F.col(time_col).cast("timestamp")
    order = F.unix_micros(event_time) if timestamps else F.col(time_col).cast("double")
    selected = df.select(key, time_col, *models.columns).withColumn(_ORDER, order)
    timeout = GroupStateTimeout.NoTimeout
    if watermark is not None:
        selected = selected.withColumn(_EVENT_TIME, event_time).withWatermark(_EVENT_TIME, watermark)
        timeout = GroupStateTimeout.EventTimeTimeout
    schema = StructType([StructField(key, types[key]), StructField(time_col, kind), StructField("score", DoubleType()),
                         StructField("label", ByteType()), StructField("status", StringType())])
    columns, buffered = list(models.columns), watermark is not None

    def run(group, frames, state):
        # Once per worker process, not per key: entering a limit inspects every loaded library
        # (3 ms, a third of a key's time for 100 readings).
        hold(threads or None)
        yield step(models, key, time_col, columns, timestamps, buffered, group[0], frames, state)

    return selected.groupBy(key).applyInPandasWithState(run, schema, STATE_SCHEMA, "append", timeout)


def open_models(spark, model: Path, ship: bool) -> _Models:
    """Check the model folder on the driver and describe it for the workers."""
    from normalcy.core.modelfile import load, read_manifest
    from normalcy.spark.groups import INDEX, _value_columns
    from normalcy.spark.score import _ship
    from normalcy.timeseries.base import TimeSeriesDetector

    if (model / INDEX).is_file():
        index = pd.read_parquet(model / INDEX)
        ok = index[index.status == "ok"]
        columns = _value_columns(model, ok)
        key = index.columns[0]
        bad = index[index.status != "ok"]
        return _Models(tuple(columns), root=str(model.resolve()), folders=dict(zip(ok[key].astype(str), ok.folder)),
                       failures=dict(zip(bad[key].astype(str), bad.error)))
    digest = read_manifest(model)["manifest_sha256"]
    detector = load(model)
    if not isinstance(detector, TimeSeriesDetector):
        raise DataError(f"{model} holds a {detector.modality} model; streaming scores time-series models "
                        "(normalcy ts fit, or a fit-per-group folder)")
    detector.check_streams()
    detector._require_threshold()
    where = _ship(spark, model, digest) if ship else str(model.resolve())
    return _Models(tuple(detector.columns_), single=(where, ship, digest))


def step(models: _Models, key: str, time_col: str, columns: list[str], timestamps: bool, buffered: bool,
         value, frames, state) -> pd.DataFrame:
    """One call for one key: restore its detector (or start one), take the new readings (and,
    with a watermark, the waiting ones the watermark has passed) in time order, score and learn
    them, save the state back. Returns the output rows."""
    new = [f for f in frames if len(f)]
    if len(new) == 1:
        frame = new[0]
    else:
        frame = pd.concat(new, ignore_index=True) if new else pd.DataFrame(columns=[key, time_col, *columns, _ORDER])
    try:
        if state.exists:
            detector, last, pending = decode_state(*state.get)
        else:
            detector, last, pending = models.first(value), None, None
        detector.check_streams()
    except NormalcyError as exc:  # no model for the key, or a damaged state: the rows say so
        return _output(key, time_col, value, frame[time_col], np.full(len(frame), np.nan), None,
                       [f"failed: {exc}"] * len(frame))
    times = _times(frame[time_col], timestamps)
    order = frame[_ORDER].to_numpy(dtype=np.int64 if timestamps else np.float64)
    values = np.column_stack([frame[c].to_numpy(dtype=np.float64) for c in columns]).reshape(len(frame), len(columns))
    if pending is not None:
        times = np.concatenate([pending["time"], times])
        order = np.concatenate([pending["order"], order])
        values = np.concatenate([pending["values"], values])
    sort = np.lexsort((*values.T[::-1], order))  # time, then the values: the same order on a replay
    times, order, values = times[sort], order[sort], values[sort]
    ready = len(order)
    if buffered:
        mark = state.getCurrentWatermarkMs()
        ready = int(np.searchsorted(order, mark * 1000, side="right")) if mark > 0 else 0
    scores, status = np.full(ready, np.nan), np.full(ready, "late", dtype=object)
    head = order[:ready]
    # In time order, a reading is scored when it is after the key's last scored reading and not
    # a second reading at the same time: the key's detector sees a strictly increasing series.
    keep = np.ones(ready, dtype=bool)
    keep[1:] = head[1:] != head[:-1]
    if last is not None:
        keep &= head > last
    fresh = np.flatnonzero(keep)
    if len(fresh):
        scores[fresh], status[fresh] = _learn(detector, values[fresh], times[fresh] if timestamps else None)
        done = fresh[status[fresh] == "ok"]
        if len(done):
            last = int(order[done[-1]]) if timestamps else float(order[done[-1]])
    waiting = {"time": times[ready:], "order": order[ready:], "values": values[ready:]} if ready < len(order) else None
    state.update(encode_state(detector, last, waiting, timestamps))
    if waiting is not None:
        # Called again (with no rows) once the watermark passes the earliest waiting reading.
        state.setTimeoutTimestamp(int(math.floor(waiting["order"][0] / 1000)) + 1)
    threshold = detector.threshold_
    labels = np.where(np.isnan(scores), np.nan, (scores >= threshold).astype(np.float64))
    out_times = times[:ready].astype("datetime64[ns]") if timestamps else times[:ready]
    return _output(key, time_col, value, out_times, scores, labels, status)


def _learn(detector, values: np.ndarray, nanos: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Score then learn each reading in turn, as `decision_function` does over a series (in one
    `_run`, so a detector with a batch form scores the batch at once): scores and statuses. A
    bad reading (a DataError) makes the batch go again one reading at a time, from the state
    before it, so that reading alone is failed and never learned."""
    from normalcy.timeseries.data import TimeSeries

    stamps = None if nanos is None else nanos.astype("datetime64[ns]")
    saved = detector._snapshot()
    try:
        series = TimeSeries(values, list(detector.columns_), stamps)
        return detector._run(series)[0], np.full(len(values), "ok", dtype=object)
    except DataError:
        detector._restore(saved)
    seconds = np.full(len(values), np.nan) if nanos is None else nanos / 1e9  # as _seconds gives them
    scores, status = np.full(len(values), np.nan), np.full(len(values), "ok", dtype=object)
    for i in range(len(values)):
        try:
            scores[i] = detector._step(values[i], learn=True, t=seconds[i])[0]
        except DataError as exc:
            status[i] = f"failed: {exc}"
    return scores, status


def _output(key, time_col, value, times, scores, labels, status) -> pd.DataFrame:
    n = len(status)
    label = (pd.array([None] * n, dtype="Int8") if labels is None else
             pd.arrays.IntegerArray(np.nan_to_num(labels).astype(np.int8), np.isnan(labels)))
    # Object columns: Arrow takes them as they are (pandas' own string type would convert twice).
    return pd.DataFrame({key: pd.Series(np.full(n, value, dtype=object), dtype=object, copy=False),
                         time_col: np.asarray(times), "score": np.asarray(scores, dtype=np.float64), "label": label,
                         "status": pd.Series(np.asarray(status, dtype=object), dtype=object, copy=False)}, copy=False)


def _times(column: pd.Series, timestamps: bool) -> np.ndarray:
    """Times as numbers that survive the state: int64 nanoseconds of the (naive) timestamps
    Spark hands over, or the numbers themselves."""
    if timestamps:
        return np.asarray(column, dtype="datetime64[ns]").view(np.int64)
    return column.to_numpy(dtype=np.float64)


# --- the state: arrays in safetensors, metadata in JSON -------------------------------------------


def encode_state(detector, last, waiting: dict | None, timestamps: bool) -> tuple[bytes, str]:
    """(arrays, meta) for the state store: the detector's `_get_state` arrays (prefixed
    ``detector.``) and the readings waiting for the watermark (``waiting.``) as safetensors
    bytes; class, parameters, threshold, the detector's metadata and the last reading time as
    JSON."""
    from safetensors.numpy import save

    arrays, meta = detector._get_state()
    blob = {f"detector.{k}": np.ascontiguousarray(v) for k, v in arrays.items()}
    if waiting is not None:
        blob.update({f"waiting.{k}": np.ascontiguousarray(v) for k, v in waiting.items()})
    record = {"format": STATE_FORMAT, "version": STATE_VERSION, "class": _class_path(detector),
              "params": detector.get_params(deep=False), "threshold": detector.threshold_, "detector": meta,
              "last": last, "timestamps": timestamps}
    return save(blob), json.dumps(record, allow_nan=False, sort_keys=True)


def decode_state(blob: bytes, text: str):
    """(detector, last time, waiting readings or None) from what `encode_state` stored; a
    ModelFileError for anything that is not such a state."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        record = json.loads(text, parse_constant=_no_constant)
        arrays = load(bytes(blob))
    except (ValueError, SafetensorError, RecursionError) as exc:
        raise ModelFileError(f"stream state cannot be read: {type(exc).__name__}: {exc}"[:300]) from None
    if not isinstance(record, dict) or record.get("format") != STATE_FORMAT or record.get("version") != STATE_VERSION:
        raise ModelFileError(f"stream state is not a {STATE_FORMAT} version {STATE_VERSION}")
    detector = _rebuild(record.get("class"), record.get("params"),
                        {k[len("detector."):]: v for k, v in arrays.items() if k.startswith("detector.")},
                        record.get("detector"), record.get("threshold"))
    waiting = {k[len("waiting."):]: v for k, v in arrays.items() if k.startswith("waiting.")} or None
    if waiting is not None and set(waiting) != {"time", "order", "values"}:
        raise ModelFileError("stream state: the waiting readings are incomplete")
    return detector, record.get("last"), waiting


def _rebuild(path, params, arrays, meta, threshold):
    """A time-series detector from its class path, parameters and state, checked as loading a
    model file checks them (only registered classes, known parameters, the detector's own
    state checks)."""
    from normalcy.core import registry
    from normalcy.timeseries.base import TimeSeriesDetector

    cls = registry.resolve(path) if isinstance(path, str) else None
    if cls is None or not issubclass(cls, TimeSeriesDetector):
        raise ModelFileError(f"stream state names {path!r}, not a registered time-series detector")
    if not isinstance(params, dict) or not isinstance(meta, dict):
        raise ModelFileError("stream state: parameters or detector state missing")
    try:
        registry.check_params(cls, params)
        detector = cls(**params)
        detector._check_params()
        detector._set_state(arrays, meta)
    except NormalcyError as exc:
        raise ModelFileError(f"stream state: {exc}") from exc
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise ModelFileError(f"stream state does not fit {cls.__name__}: {type(exc).__name__}: {exc}"[:300]) from exc
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ModelFileError(f"stream state: threshold {threshold!r} is not a number")
    detector.threshold_ = None if threshold is None else float(threshold)
    return detector


def _class_path(detector) -> str:
    from normalcy.core.registry import class_path

    return class_path(type(detector))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


# --- files in, files out ----------------------------------------------------------------------


def read_stream(spark, input: str | Path, fmt: str | None = None, max_files: int | None = None):
    """A streaming DataFrame of the Parquet or CSV files arriving in the folder `input`; the
    schema is read from the files already there (at least one is needed)."""
    folder = Path(input)
    if not folder.is_dir():
        raise DataError(f"input {folder} is not a folder; the stream reads the files arriving in one")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if fmt is None:
        suffixes = {p.suffix.lower() for p in files}
        fmt = "csv" if suffixes and suffixes <= {".csv"} else "parquet"
    if fmt not in ("parquet", "csv"):
        raise DataError(f"input format must be parquet or csv, got {fmt!r}")
    if not files:
        raise DataError(f"input {folder} holds no file yet; the stream reads its schema from the first one")
    reader = spark.read.option("header", True).option("inferSchema", True) if fmt == "csv" else spark.read
    try:
        schema = getattr(reader, fmt)(str(folder)).schema
    except Exception as exc:  # an unreadable first file: one line naming the folder
        raise DataError(f"cannot read the files in {folder} as {fmt}: {str(exc).strip().splitlines()[0]}") from None
    stream_reader = spark.readStream.schema(schema)
    if fmt == "csv":
        stream_reader = stream_reader.option("header", True)
    if max_files:
        stream_reader = stream_reader.option("maxFilesPerTrigger", int(max_files))
    return getattr(stream_reader, fmt)(str(folder))


def run_files(spark, model, input, output, key: str, time_col: str, checkpoint, once: bool = True,
              trigger: str | None = None, watermark: str | None = None, fmt: str | None = None,
              max_files: int | None = None, ship: bool = True, timeout: float | None = None, on_progress=None):
    """Score the files arriving in `input` into Parquet files under `output`, keeping the
    query's progress in `checkpoint`. With `once`, everything there now is processed and the
    call returns; otherwise micro-batches run every `trigger` (e.g. "10 seconds") until the query
    is stopped (Ctrl-C) or `timeout` seconds pass. Returns the query."""
    source = read_stream(spark, input, fmt, max_files)
    scored = stream(source, model, key, time_col, watermark=watermark, ship=ship)
    writer = (scored.writeStream.format("parquet").option("path", str(output))
              .option("checkpointLocation", str(checkpoint)).outputMode("append"))
    writer = writer.trigger(availableNow=True) if once else writer.trigger(processingTime=trigger or "10 seconds")
    query = writer.start()
    try:
        if once:
            query.awaitTermination()
        else:
            start = clock.monotonic()
            while query.isActive and (timeout is None or clock.monotonic() - start < timeout):
                query.awaitTermination(1.0)
                if on_progress is not None and query.lastProgress:
                    on_progress(query.lastProgress)
            query.stop()
    except KeyboardInterrupt:
        query.stop()
    if query.exception() is not None:
        from normalcy.spark.session import _normalcy_error

        found = _normalcy_error(str(query.exception()))
        raise found if found is not None else DataError(f"the streaming query failed: "
                                                        f"{str(query.exception()).strip().splitlines()[0]}")
    return query
