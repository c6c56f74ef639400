"""One time-series model per key: fit them all with `groupBy(key).applyInPandas`, score each
key's readings with its own model.

Layout of a per-group output folder (a path every executor can write, e.g. an NFS mount, or
local disk in local mode):

    MODELS/
      index.parquet            key, folder, status (ok | failed), error, warning, n_points, threshold, seconds
      <safe name>-<hash>/      an ordinary model folder per key that fitted (manifest.json, arrays)

Folder names are the key with anything but letters, digits, '.', '_' and '-' replaced, cut to 60
characters, plus a hash of the key, so every key gets its own folder whatever its characters.
A group that fails (too few readings, non-numeric values, a detector error) gets a row with
status ``failed`` and the error; the job and the other groups go on. A group's warnings (a
threshold from few held-out readings, a constant variable) go in its row, not on a worker's
stderr once per group. Rows inside a group reach a worker in no particular order after the
shuffle, so a time column (timestamps or any sortable number) puts them back in order.
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError
from normalcy.core.threshold import parse_threshold
from normalcy.spark.session import spark_errors
from normalcy.tabular.workflow import write_table_atomic

INDEX = "index.parquet"
DEFAULT_DETECTOR = "range-novelty"


def fit_per_group(df, key: str, time_col: str, value_cols: list[str], output: str | Path,
                  detector: str = DEFAULT_DETECTOR, params: dict | None = None, threshold: str = "fpr:0.01",
                  holdout: float = 0.2) -> pd.DataFrame:
    """Fit `detector` on each key's series (its `value_cols`, ordered by `time_col`), set its
    threshold as `normalcy ts fit` does from the last `holdout` of the readings, and save it under
    `output`. Returns the index (one row per key), also written to `output`/index.parquet."""
    from normalcy.core.registry import build

    build("timeseries", detector, params)  # an unknown detector or parameter fails here, not once per group
    parse_threshold(threshold)  # a bad spec fails here, not once per group
    _check_columns(df.schema, key, time_col, value_cols)
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    key_type = df.schema[key].dataType.simpleString()
    schema = (f"`{key}` {key_type}, folder string, status string, error string, warning string, n_points long, "
              "threshold double, seconds double")
    value_cols, where, params = list(value_cols), str(output), params or {}

    def fit(frame):  # a closure, not a partial: Spark reads the function's type hints and warns on a partial
        return fit_group(key, time_col, value_cols, where, detector, params, threshold, holdout, frame)

    selected = df.select(key, time_col, *value_cols)
    with spark_errors():
        index = selected.groupBy(key).applyInPandas(fit, schema).toPandas()
    if index.empty:
        raise DataError("input has no rows; no series to fit")
    write_table_atomic(index, output / INDEX)
    return index


def score_per_group(df, key: str, time_col: str, models: str | Path):
    """Each key's readings scored, in time order, by the model `fit_per_group` saved for that key,
    continuing from the end of its training series. Columns: key, time, the model's value columns,
    score, label, status, error. A key without a model (or whose model failed to fit or to score)
    gets one row with status ``failed``, null scores and the reason, never silence."""
    models = Path(models).resolve()
    index_file = models / INDEX
    if not index_file.is_file():
        raise DataError(f"{models} has no {INDEX}; write it with fit_per_group")
    index = pd.read_parquet(index_file)
    ok = index[index.status == "ok"]
    value_cols = _value_columns(models, ok)
    _check_columns(df.schema, key, time_col, value_cols)
    folders = dict(zip(ok[key].astype(str), ok.folder))
    failures = dict(zip(index.loc[index.status != "ok", key].astype(str), index.loc[index.status != "ok", "error"]))
    fields = df.schema
    schema = (f"`{key}` {fields[key].dataType.simpleString()}, `{time_col}` {fields[time_col].dataType.simpleString()}, "
              + "".join(f"`{c}` double, " for c in value_cols)
              + "score double, label tinyint, status string, error string")
    where = str(models)

    def run(frame):
        return _score_group(key, time_col, value_cols, where, folders, failures, frame)

    return df.select(key, time_col, *value_cols).groupBy(key).applyInPandas(run, schema)


def folder_name(key) -> str:
    """A folder name for a key: readable, safe on any file system, and unique per key."""
    text = str(key)
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60].lstrip(".") or "key"
    return f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def group_series(frame: pd.DataFrame, time_col: str, value_cols: list[str]):
    """A group's readings as a TimeSeries in time order: timestamps go through the series reader
    (sorting, duplicate check); a numeric time column only orders the readings."""
    from normalcy.timeseries.data import load_series

    if pd.api.types.is_numeric_dtype(frame[time_col]):
        return load_series(frame.sort_values(time_col, kind="stable")[value_cols], columns=value_cols)
    return load_series(frame[[time_col, *value_cols]], time_column=time_col, columns=value_cols)


def fit_group(key, time_col, value_cols, output, detector, params, threshold, holdout, frame) -> pd.DataFrame:
    """Fit and save one group's model (the rows of `frame`); its index row, ok or failed."""
    from normalcy.timeseries.workflow import fit_model

    value = frame[key].iloc[0]
    folder = folder_name(value)
    start = time.perf_counter()
    row = {key: [value], "folder": [folder], "status": ["ok"], "error": [None], "warning": [None],
           "n_points": [len(frame)], "threshold": [None]}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            series = group_series(frame, time_col, value_cols)
            model = fit_model(series, detector, parse_threshold(threshold), holdout, params)
            model.save(Path(output) / folder)
            row["threshold"] = [model.threshold_]
        except Exception as exc:  # one group's failure is that group's record, not the job's end
            row.update(status=["failed"], error=[f"{type(exc).__name__}: {exc}"], folder=[None])
    if caught:
        row["warning"] = ["; ".join(dict.fromkeys(str(w.message) for w in caught))]
    row["seconds"] = [time.perf_counter() - start]
    return pd.DataFrame(row)


def _score_group(key, time_col, value_cols, models, folders, failures, frame):
    from normalcy.timeseries.base import TimeSeriesDetector

    value = frame[key].iloc[0]
    try:
        if str(value) not in folders:
            reason = failures.get(str(value))
            raise DataError(f"no model for key {value!r}" + (f": its fit failed ({reason})" if reason else ""))
        model = TimeSeriesDetector.load(Path(models) / folders[str(value)])
        ordered = frame.sort_values(time_col, kind="stable")
        series = group_series(ordered, time_col, model.columns_)
        prediction = model.detect(series)
    except Exception as exc:  # reported in the group's row; the other groups go on
        failed = {key: [value], time_col: [None], **{c: [np.nan] for c in value_cols}, "score": [np.nan],
                  "label": [None], "status": ["failed"], "error": [f"{type(exc).__name__}: {exc}"]}
        return pd.DataFrame(failed)
    out = ordered[[key, time_col]].reset_index(drop=True)
    for j, c in enumerate(value_cols):
        out[c] = series.values[:, j]
    return out.assign(score=prediction.scores, label=prediction.labels, status="ok", error=None)


def _value_columns(models: Path, ok: pd.DataFrame) -> list[str]:
    """The value columns the models were fitted on (the same for every key)."""
    from normalcy.core.modelfile import read_manifest

    if ok.empty:
        raise DataError(f"{models}/{INDEX} lists no model that fitted; nothing to score with")
    return list(read_manifest(models / ok.folder.iloc[0])["state"]["columns"])


def _check_columns(schema, key: str, time_col: str, value_cols: list[str]) -> None:
    from pyspark.sql.types import DateType, NumericType, TimestampNTZType, TimestampType

    types = {f.name: f.dataType for f in schema.fields}
    if not value_cols:
        raise DataError("give at least one value column")
    for name in (key, time_col, *value_cols):
        if name not in types:
            raise DataError(f"input has no column {name!r}; columns are {', '.join(types)}")
    if not isinstance(types[time_col], (NumericType, TimestampType, TimestampNTZType, DateType)):
        raise DataError(f"time column {time_col!r} has type {types[time_col].simpleString()}; "
                        "expected a timestamp, a date or a sortable number")
    for name in value_cols:
        if not isinstance(types[name], NumericType):
            raise DataError(f"value column {name!r} has type {types[name].simpleString()}; expected numbers")
