"""Scoring a Spark DataFrame with a fitted model folder, row by row, with the same results as
scoring in-process.

The driver reads the model once to check the DataFrame against it (a missing or wrongly typed
column, or a model without a threshold, fails before any task runs), then ships the folder to
the executors once with `SparkContext.addFile` (or, with ``ship=False``, every executor reads it
from the same shared path). Each Python worker loads it once and keeps it for every batch and
every later task, keyed by the folder and its manifest checksum. Batches arrive as Arrow record
batches through `mapInPandas` and go through the modality's own reader and encoder, so there is
no second copy of the encoding logic to drift from the local one.

What is scored, by the kind of model:
- table detectors: the columns the model was fitted on (others pass through), as
  `normalcy table score`;
- event detectors: the entity columns the model was fitted on;
- image detectors: one column of image file paths (string) or encoded image files (binary);
- text detectors: one string column;
- log models (`normalcy logs fit`): a string column of raw log lines, scored per session, window
  or line (`normalcy.spark.logs`): one output row per group;
- time-series models: the readings of one series, or of one series per `key`, each ordered by
  `time` and scored as the continuation of the fitted model, as `normalcy ts score` scores a
  file (one model for every key; `score_per_group` gives each key its own).
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load, read_manifest
from normalcy.core.results import Prediction
from normalcy.core.threads import thread_limit

OUTPUT_COLUMNS = ("score", "label")
IMAGE_BATCH = 32  # images decoded and scored together inside one Arrow batch

# Worker side: models loaded in this Python process, by (where, manifest checksum).
_MODELS: dict[tuple[str, str], Detector] = {}
# Driver side: model folders already shipped, by (Spark application, manifest checksum).
_SHIPPED: dict[tuple[str, str], str] = {}


def score(df, model_dir: str | Path, column: str | None = None, ship: bool = True, threads: int = 1,
          key: str | None = None, time: str | None = None):
    """`df` with `score` (double) and `label` (tinyint, 1 = anomalous at the model's threshold)
    added; lazy, like any Spark transformation. `column` names the image, text or log-line column
    (default ``image``, ``path``, ``text``, ``line`` or ``value``, whichever exists). A log model
    gives one row per group instead: group, lines, first_line, score, label. A time-series model
    needs `time` (the column ordering the readings) and takes `key` (the column naming each
    series; default: all rows are one series). `threads` caps BLAS/OpenMP/torch threads in each
    worker (Spark already runs one worker per core)."""
    from pyspark.sql.types import ByteType, DoubleType, StructField, StructType

    model_dir = Path(model_dir)
    digest = read_manifest(model_dir)["manifest_sha256"]
    detector = load(model_dir)
    kind = modality(detector)
    detector._require_threshold()
    if kind != "timeseries":
        column = check_schema(df.schema, detector, kind, column)
    where = _ship(df.sparkSession, model_dir, digest) if ship else str(model_dir.resolve())
    if kind == "timeseries":
        return _score_series(df, detector, (where, ship, digest), key, time)
    if kind == "logs":
        from normalcy.spark.logs import score_logs

        return score_logs(df, detector, where, ship, digest, column, threads)
    schema = StructType([*df.schema.fields, StructField("score", DoubleType()), StructField("label", ByteType())])
    return df.mapInPandas(partial(_score_batches, where, ship, digest, kind, column, threads), schema)


SCORED = ("tabular", "events", "image", "text", "logs", "timeseries")


def modality(detector: Detector) -> str:
    """Which reader scores this detector's rows: its modality, one of SCORED."""
    kind = detector.modality
    if kind not in SCORED:
        raise DataError(f"{type(detector).__name__} models ({kind}) cannot be scored on Spark yet; "
                        f"Spark scores {', '.join(SCORED)} models")
    return kind


def check_schema(schema, detector: Detector, kind: str, column: str | None) -> str | None:
    """Fail on the driver, naming the column, when the DataFrame cannot be scored by the model;
    returns the image/text column to read."""
    from pyspark.sql.types import BinaryType, BooleanType, NumericType, StringType

    types = {f.name: f.dataType for f in schema.fields}
    taken = [c for c in OUTPUT_COLUMNS if c in types]
    if taken:
        raise DataError(f"input already has column(s) {', '.join(taken)}; rename them before scoring")

    def need(name: str, allowed: tuple, what: str) -> None:
        if name not in types:
            raise DataError(f"input has no column {name!r}, which the model needs; columns are {', '.join(types)}")
        if not isinstance(types[name], allowed):
            raise DataError(f"input column {name!r} has type {types[name].simpleString()}; the model expects {what}")

    if kind == "tabular":
        for name, numeric in zip(detector.encoder_.columns_, (k == "numeric" for k in detector.encoder_.kinds_)):
            if numeric:
                need(name, (NumericType,), "numbers")
            else:
                need(name, (StringType, BooleanType), "categories (strings or booleans)")
        return None
    if kind == "events":
        for name in detector.columns_:
            need(name, (StringType, NumericType, BooleanType), "entity values")
        return None
    if column is None:
        defaults = {"image": ("image", "path"), "text": ("text",), "logs": ("line", "value")}[kind]
        column = next((c for c in defaults if c in types), defaults[0])
    if kind == "image":
        need(column, (StringType, BinaryType), "image file paths (string) or encoded image files (binary)")
    else:
        need(column, (StringType,), "text (string)" if kind == "text" else "raw log lines (string)")
    return column


def _score_series(df, detector, shipped: tuple, key: str | None, time: str | None):
    """Each series (all rows, or each `key`'s) in `time` order, scored by the one model as the
    continuation of its fitted state; the rows come back in that order with score and label."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ByteType, DoubleType, StructField, StructType

    from normalcy.spark.groups import _check_columns

    if time is None:
        raise DataError("a time-series model scores readings in time order: name the time column (time=, --time)")
    series_key = key or "__normalcy_series"
    if key is None:
        df = df.withColumn(series_key, F.lit(0))
    _check_columns(df.schema, series_key, time, list(detector.columns_))
    if "score" in df.columns or "label" in df.columns:
        raise DataError("input already has column(s) score or label; rename them before scoring")
    fields = [f for f in df.schema.fields if f.name != "__normalcy_series"]
    schema = StructType([*fields, StructField("score", DoubleType()), StructField("label", ByteType())])
    names = [f.name for f in fields]

    def run(frame):  # a closure, not a partial: Spark reads the function's type hints
        return _score_one_series(worker_model(*shipped, threads=0), time, names, frame)

    return df.groupBy(series_key).applyInPandas(run, schema)


def _score_one_series(detector, time, names, frame):
    from normalcy.spark.groups import group_series

    ordered = frame.sort_values(time, kind="stable")
    series = group_series(ordered, time, list(detector.columns_))
    prediction = Prediction.from_scores(detector.decision_function(series), detector.threshold_)
    return ordered[names].assign(score=prediction.scores, label=prediction.labels)


def _ship(spark, model_dir: Path, digest: str) -> str:
    """Add the model folder to the job's files once per application; returns its name there. The
    copy is named by its checksum, so two models called `model` do not collide."""
    sc = spark.sparkContext
    key = (sc.applicationId, digest)
    if key not in _SHIPPED:
        name = f"normalcy-model-{digest[:16]}"
        staging = Path(tempfile.mkdtemp(prefix="normalcy-spark-"))
        atexit.register(shutil.rmtree, staging, True)  # Spark reads it until the application ends
        shutil.copytree(model_dir, staging / name)
        sc.addFile(str(staging / name), recursive=True)
        _SHIPPED[key] = name
    return _SHIPPED[key]


def worker_model(where: str, shipped: bool, digest: str, threads: int) -> Detector:
    """The model, loaded once per Python worker process."""
    key = (where, digest)
    if key not in _MODELS:
        if shipped:
            from pyspark import SparkFiles

            path = SparkFiles.get(where)
        else:
            path = where
        detector = load(path)
        if threads and "threads" in detector.get_params():  # image and text detectors run torch
            detector.set_params(threads=threads)
        _MODELS[key] = detector
    return _MODELS[key]


def _score_batches(where, shipped, digest, kind, column, threads, batches):
    detector = worker_model(where, shipped, digest, threads)
    for frame in batches:
        if len(frame) == 0:
            continue
        # Spark runs one worker per core: each scores with `threads` BLAS/OpenMP threads.
        with thread_limit(threads or None):
            scores = _SCORERS[kind](detector, frame, column)
        prediction = Prediction.from_scores(scores, detector.threshold_)
        yield frame.assign(score=prediction.scores, label=prediction.labels)


def _score_table(detector, frame, column):
    return detector.decision_function(frame)


def _score_events(detector, frame, column):
    return detector.decision_frame(frame, "Spark batch")


def _score_text(detector, frame, column):
    texts = frame[column]
    if texts.isna().any():
        raise DataError(f"column {column!r} has a missing text at batch row {int(np.flatnonzero(texts.isna())[0])}")
    return detector.decision_function(texts.tolist())


def _score_image(detector, frame, column):
    items = frame[column].tolist()
    scores = [detector.decision_function([_image(item) for item in items[i : i + IMAGE_BATCH]])
              for i in range(0, len(items), IMAGE_BATCH)]
    return np.concatenate(scores)


def _image(item) -> np.ndarray:
    """An image from its path or its encoded bytes, through the file reader's checks."""
    from normalcy.image.io import decode_image, read_image

    if item is None:
        raise DataError("an image cell is missing (null)")
    if isinstance(item, str):
        return read_image(item)
    return decode_image(bytes(item), "binary image cell")


_SCORERS = {"tabular": _score_table, "events": _score_events, "text": _score_text, "image": _score_image}
