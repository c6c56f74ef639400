"""One model per key: fit them all with `groupBy(key).applyInPandas`, score each key's data with
its own model. What a key's model is, by `modality`:

- ``timeseries`` (default): a time-series detector on the key's readings (`value_cols`) in time
  order, its threshold from the causal scores of the last `holdout` of them;
- ``tabular`` / ``events``: a table or event detector on the key's rows (`value_cols`: the
  feature or entity columns), its threshold from a random `holdout` of the rows;
- ``logs``: a sequence detector (`entity-sequence`, `deeplog`, `invariants`, ...) on the key's
  event stream: each row is an event, `value_cols` its fields (one integer column is taken as
  the event id; several fields, or text, are hashed together into one), ordered by `time_col`
  and cut into sessions by the `sessions` column, or else into chunks of `chunk` events; the
  threshold from a random `holdout` of the sessions, or the detector's own rule
  (``threshold="own"``).

Rows inside a group reach a worker in no particular order after the shuffle: they are put back
in a fixed order (by `time_col`, ties and tables without one by their values) before anything
random is drawn, so a refit gives the same models and the same thresholds.

Layout of a per-group output folder (a path every executor can write, e.g. an NFS mount, or
local disk in local mode):

    MODELS/
      index.parquet            key, folder, status (ok | failed), error, warning, n_points, threshold, seconds
      settings.json            modality, value columns, time column, sessions, chunk
      <safe name>-<hash>/      an ordinary model folder per key that fitted (manifest.json, arrays)

Folder names are the key with anything but letters, digits, '.', '_' and '-' replaced, cut to 60
characters, plus a hash of the key, so every key gets its own folder whatever its characters.
A group that fails (too few readings, non-numeric values, a detector error) gets a row with
status ``failed`` and the error; the job and the other groups go on. A group's warnings (a
threshold from few held-out readings, a constant variable) go in its row, not on a worker's
stderr once per group.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError
from normalcy.core.threshold import parse_threshold
from normalcy.spark.session import spark_errors
from normalcy.tabular.workflow import write_table_atomic

INDEX = "index.parquet"
SETTINGS = "settings.json"
DEFAULT_DETECTOR = "range-novelty"
DEFAULTS = {"timeseries": DEFAULT_DETECTOR, "tabular": "ensemble", "events": "ape", "logs": "entity-sequence"}
MODALITIES = tuple(DEFAULTS)
CHUNK = 20  # events per session of an entity's stream without a session column
UNIT = {"timeseries": "readings", "tabular": "rows", "events": "events", "logs": "sessions"}


@dataclass(frozen=True)
class Settings:
    """How a per-group folder's models read their data; saved beside the index."""

    modality: str
    value_cols: list
    time_col: str | None
    sessions: str | None = None
    chunk: int = CHUNK

    def save(self, folder: Path) -> None:
        (folder / SETTINGS).write_text(json.dumps(vars(self), indent=2))

    @classmethod
    def read(cls, folder: Path) -> "Settings | None":
        file = folder / SETTINGS
        if not file.is_file():
            return None  # a folder from before settings.json: time series
        try:
            found = json.loads(file.read_text())
            settings = cls(**found)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{file} is not a per-group settings file: {exc}") from None
        if settings.modality not in MODALITIES:
            raise DataError(f"{file}: unknown modality {settings.modality!r}")
        return settings


def fit_per_group(df, key: str, time_col: str | None, value_cols: list[str], output: str | Path,
                  detector: str | None = None, params: dict | None = None, threshold: str = "fpr:0.01",
                  holdout: float = 0.2, modality: str = "timeseries", sessions: str | None = None,
                  chunk: int = CHUNK, seed: int = 0) -> pd.DataFrame:
    """Fit one `modality` detector per key on its rows (see the module docstring), set its
    threshold from a `holdout` of them, and save it under `output`. Returns the index (one row
    per key), also written to `output`/index.parquet."""
    from normalcy.core.registry import build

    if modality not in MODALITIES:
        raise DataError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    detector = detector or DEFAULTS[modality]
    build(modality, detector, params)  # an unknown detector or parameter fails here, not once per group
    if not (modality == "logs" and threshold == "own"):
        parse_threshold(threshold)  # a bad spec fails here, not once per group
    if modality == "timeseries" and time_col is None:
        raise DataError("a time series needs its time column")
    if modality == "logs" and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise DataError(f"chunk must be a whole number of events >= 1, got {chunk!r}")
    _check_columns(df.schema, key, time_col, value_cols, numeric=modality == "timeseries",
                   extra=[sessions] if sessions else [])
    output = Path(output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    key_type = df.schema[key].dataType.simpleString()
    schema = (f"`{key}` {key_type}, folder string, status string, error string, warning string, n_points long, "
              "threshold double, seconds double")
    settings = Settings(modality, list(value_cols), time_col, sessions, chunk)
    where, params = str(output), params or {}

    def fit(frame):  # a closure, not a partial: Spark reads the function's type hints and warns on a partial
        return fit_group(key, time_col, settings.value_cols, where, detector, params, threshold, holdout, frame,
                         settings, seed)

    selected = df.select(*dict.fromkeys(c for c in (key, time_col, sessions, *value_cols) if c))
    with spark_errors():
        index = selected.groupBy(key).applyInPandas(fit, schema).toPandas()
    if index.empty:
        raise DataError("input has no rows; no series to fit")
    settings.save(output)
    write_table_atomic(index, output / INDEX)
    return index


def score_per_group(df, key: str, time_col: str | None, models: str | Path):
    """Each key's data scored by the model `fit_per_group` saved for that key. Time series: the
    readings in time order, continuing from the end of the training series; columns key, time,
    the value columns, score, label, status, error. Tables and events: each row; columns key,
    time (if given), the value columns, score, label, status, error. Event streams (logs): each
    session; columns key, session, events, first_time, score, label, status, error. A key without
    a model (or whose model failed to fit or to score) gets one row with status ``failed``, null
    scores and the reason, never silence."""
    models = Path(models).resolve()
    index_file = models / INDEX
    if not index_file.is_file():
        raise DataError(f"{models} has no {INDEX}; write it with fit_per_group")
    index = pd.read_parquet(index_file)
    ok = index[index.status == "ok"]
    settings = Settings.read(models)
    if settings is not None and settings.modality != "timeseries":
        return _score_other(df, key, time_col, models, index, settings)
    value_cols = _value_columns(models, ok)
    if time_col is None:
        raise DataError("time-series models score readings in time order: name the time column")
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


def fit_group(key, time_col, value_cols, output, detector, params, threshold, holdout, frame,
              settings: Settings | None = None, seed: int = 0) -> pd.DataFrame:
    """Fit and save one group's model (the rows of `frame`); its index row, ok or failed."""
    value = frame[key].iloc[0]
    folder = folder_name(value)
    start = time.perf_counter()
    row = {key: [value], "folder": [folder], "status": ["ok"], "error": [None], "warning": [None],
           "n_points": [len(frame)], "threshold": [None]}
    modality = "timeseries" if settings is None else settings.modality
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if modality == "timeseries":
                from normalcy.timeseries.workflow import fit_model

                series = group_series(frame, time_col, value_cols)
                model = fit_model(series, detector, parse_threshold(threshold), holdout, params)
            else:
                model = _fit_other(frame, settings, detector, params, threshold, holdout, seed)
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


# --- tables, events and event streams ------------------------------------------------------------


def ordered_rows(frame: pd.DataFrame, time_col: str | None, value_cols: list[str]) -> pd.DataFrame:
    """The group's rows in a fixed order: by time, then by the values (as text, so any type
    sorts), whatever order the shuffle delivered them in."""
    keys = [frame[c].astype(str).to_numpy() for c in reversed(value_cols)]
    if time_col is not None:
        keys.append(frame[time_col].to_numpy())
    return frame.iloc[np.lexsort(keys)].reset_index(drop=True)


def event_ids(frame: pd.DataFrame, value_cols: list[str]) -> np.ndarray:
    """One integer event id per row: the value of a single integer column, else a 63-bit hash
    of the fields' text (pandas' hash, fixed key: the same id in every process and run)."""
    if len(value_cols) == 1 and pd.api.types.is_integer_dtype(frame[value_cols[0]]):
        return frame[value_cols[0]].to_numpy(dtype=np.int64)
    text = frame[value_cols].astype(str)
    return (pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64) >> np.uint64(1)).astype(np.int64)


def group_sessions(frame: pd.DataFrame, settings: Settings) -> tuple[list[str], list[np.ndarray], list]:
    """An entity's event stream cut into sessions: (session names, event-id sequences, first
    times). By the sessions column (sessions in the order of their first event), else chunks of
    `chunk` consecutive events named by their position ("0", "1", ...)."""
    frame = ordered_rows(frame, settings.time_col, settings.value_cols)
    ids = event_ids(frame, settings.value_cols)
    times = frame[settings.time_col].to_numpy() if settings.time_col else np.arange(len(frame))
    if settings.sessions is None:
        starts = np.arange(0, len(ids), settings.chunk)
        return ([str(i) for i in range(len(starts))], [ids[s:s + settings.chunk] for s in starts],
                [times[s] for s in starts])
    names = frame[settings.sessions].astype(str).to_numpy()
    _, first, inverse = np.unique(names, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    return ([names[first[g]] for g in order], [ids[inverse == g] for g in order], [times[first[g]] for g in order])


def _fit_other(frame, settings: Settings, detector: str, params: dict, threshold: str, holdout: float, seed: int):
    from normalcy.core.holdout import fit_with_holdout
    from normalcy.core.registry import build

    model = build(settings.modality, detector, params)
    if settings.modality == "logs":
        _, items, _ = group_sessions(frame, settings)
        if threshold == "own":
            return model.fit(items)
    else:
        items = ordered_rows(frame, settings.time_col, settings.value_cols)[settings.value_cols]
    return fit_with_holdout(model, items, parse_threshold(threshold), holdout, seed, unit=UNIT[settings.modality],
                            name="the group")


def _score_other(df, key, time_col, models: Path, index: pd.DataFrame, settings: Settings):
    if settings.modality != "logs" and time_col is not None and time_col != settings.time_col:
        raise DataError(f"the models were fitted with time column {settings.time_col!r}, not {time_col!r}")
    time_col = settings.time_col
    _check_columns(df.schema, key, time_col, settings.value_cols, numeric=False,
                   extra=[settings.sessions] if settings.sessions else [])
    ok = index[index.status == "ok"]
    folders = dict(zip(ok[key].astype(str), ok.folder))
    failures = dict(zip(index.loc[index.status != "ok", key].astype(str), index.loc[index.status != "ok", "error"]))
    fields = df.schema
    key_type = fields[key].dataType.simpleString()
    columns = list(dict.fromkeys(c for c in (key, time_col, settings.sessions, *settings.value_cols) if c))
    if settings.modality == "logs":
        first = "string" if time_col is None else fields[time_col].dataType.simpleString()
        schema = (f"`{key}` {key_type}, session string, events long, first_time {first}, score double, "
                  "label tinyint, status string, error string")
    else:
        schema = (", ".join(f"`{c}` {fields[c].dataType.simpleString()}" for c in columns)
                  + ", score double, label tinyint, status string, error string")
    where = str(models)

    def run(frame):
        return _score_group_other(key, columns, settings, where, folders, failures, frame)

    return df.select(*columns).groupBy(key).applyInPandas(run, schema)


def _score_group_other(key, columns, settings: Settings, models, folders, failures, frame):
    from normalcy.core.modelfile import load
    from normalcy.core.results import Prediction

    value = frame[key].iloc[0]
    logs = settings.modality == "logs"
    try:
        if str(value) not in folders:
            reason = failures.get(str(value))
            raise DataError(f"no model for key {value!r}" + (f": its fit failed ({reason})" if reason else ""))
        model = load(Path(models) / folders[str(value)])
        if logs:
            names, seqs, firsts = group_sessions(frame, settings)
            prediction = Prediction.from_scores(model.decision_function(seqs), model.threshold_)
            return pd.DataFrame({key: value, "session": names, "events": [len(s) for s in seqs],
                                 "first_time": firsts if settings.time_col else None, "score": prediction.scores,
                                 "label": prediction.labels, "status": "ok", "error": None})
        rows = ordered_rows(frame, settings.time_col, settings.value_cols)
        prediction = Prediction.from_scores(model.decision_function(rows[settings.value_cols]), model.threshold_)
        return rows[columns].assign(score=prediction.scores, label=prediction.labels, status="ok", error=None)
    except Exception as exc:  # reported in the group's row; the other groups go on
        error = f"{type(exc).__name__}: {exc}"
        if logs:
            return pd.DataFrame({key: [value], "session": [None], "events": [0], "first_time": [None],
                                 "score": [np.nan], "label": [None], "status": ["failed"], "error": [error]})
        failed = {c: [None] for c in columns}
        failed[key] = [value]
        return pd.DataFrame({**failed, "score": [np.nan], "label": [None], "status": ["failed"], "error": [error]})


def _value_columns(models: Path, ok: pd.DataFrame) -> list[str]:
    """The value columns the models were fitted on (the same for every key)."""
    from normalcy.core.modelfile import read_manifest

    if ok.empty:
        raise DataError(f"{models}/{INDEX} lists no model that fitted; nothing to score with")
    return list(read_manifest(models / ok.folder.iloc[0])["state"]["columns"])


def _check_columns(schema, key: str, time_col: str | None, value_cols: list[str], numeric: bool = True,
                   extra: list[str] = ()) -> None:
    from pyspark.sql.types import DateType, NumericType, TimestampNTZType, TimestampType

    types = {f.name: f.dataType for f in schema.fields}
    if not value_cols:
        raise DataError("give at least one value column")
    for name in (key, *([time_col] if time_col else []), *value_cols, *extra):
        if name not in types:
            raise DataError(f"input has no column {name!r}; columns are {', '.join(types)}")
    if time_col is not None and not isinstance(types[time_col], (NumericType, TimestampType, TimestampNTZType, DateType)):
        raise DataError(f"time column {time_col!r} has type {types[time_col].simpleString()}; "
                        "expected a timestamp, a date or a sortable number")
    for name in value_cols if numeric else ():
        if not isinstance(types[name], NumericType):
            raise DataError(f"value column {name!r} has type {types[name].simpleString()}; expected numbers")
