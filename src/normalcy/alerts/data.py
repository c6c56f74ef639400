"""Reading alert tables: one row per alert, with its time, the entities it concerns (host,
user, node, detector ...), its type, optionally the raw score of the detector that raised it
and an analyst's verdict. docs/alerts.md repeats this policy for users:

- a CSV is read with every column as text (entity names keep their spelling, "007" stays
  "007"); a Parquet file or DataFrame keeps its types and numbers become their decimal text.
- `time`: seconds since 1970 (a number) or a date and time (ISO 8601, e.g.
  "2005-06-03 15:42:50" or with a UTC offset; without one it is UTC). A time that cannot be read
  is an error naming the row.
- the type and entity cells are text; an empty one is an error naming the column and row.
- the raw score, where given, is a finite number on every row.
- a verdict is 1 (a true alert: yes, true, tp, malicious) or 0 (a false positive: no, false,
  fp, benign), or empty for an alert nobody has reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError
from normalcy.events.data import entity_text, not_unicode, read_events

TRUE_WORDS = ("1", "1.0", "true", "yes", "y", "tp", "true_positive", "true positive", "malicious", "attack", "anomaly")
FALSE_WORDS = ("0", "0.0", "false", "no", "n", "fp", "false_positive", "false positive", "benign", "normal")
NO_VERDICT = -1


@dataclass(frozen=True)
class Alerts:
    """An alert table checked against a ranker's columns, rows in their input order.

    times: seconds (float64); types and entities: text (entities n x m, in `entity_columns`
    order); streams: the text of the stream column; scores: the raw detector scores or None;
    verdicts: 1, 0 or NO_VERDICT per row, None without a verdict column."""

    frame: pd.DataFrame
    name: str
    times: np.ndarray
    types: np.ndarray
    entities: np.ndarray
    streams: np.ndarray
    scores: np.ndarray | None
    verdicts: np.ndarray | None

    def __len__(self) -> int:
        return len(self.times)

    def content(self, entity_columns: list[str], type_column: str) -> pd.DataFrame:
        """The categorical attributes the content model embeds: the entities and the type."""
        data = {c: self.entities[:, j] for j, c in enumerate(entity_columns)}
        data[type_column] = self.types
        return pd.DataFrame(data, dtype=object)


def read_alerts(source, time_column: str, type_column: str, entity_columns: list[str], stream_column: str,
                score_column: str | None, verdict_column: str | None, need_score: bool = True) -> Alerts:
    """The checked alerts of a file (.csv, .tsv, .parquet), DataFrame or Arrow table. The verdict
    column is optional (None where absent); the score column is required when `need_score`."""
    frame, name = read_events(source)
    if not len(frame):
        raise DataError(f"{name}: the alert table has no rows")
    needed = [time_column, type_column, *entity_columns] + ([score_column] if score_column and need_score else [])
    missing = [c for c in dict.fromkeys(needed) if c not in frame.columns]
    if missing:
        raise DataError(f"{name}: missing alert column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(str, frame.columns))}")
    times = read_times(frame[time_column], time_column, name)
    types = _text(frame[type_column], type_column, name)
    entities = np.stack([_text(frame[c], c, name) for c in entity_columns], axis=1) if entity_columns \
        else np.empty((len(frame), 0), dtype=object)
    streams = _text(frame[stream_column], stream_column, name)
    scores = None
    if score_column and score_column in frame.columns:
        scores = read_numbers(frame[score_column], score_column, name)
    verdicts = None
    if verdict_column and verdict_column in frame.columns:
        verdicts = read_verdicts(frame[verdict_column], verdict_column, name)
    return Alerts(frame, name, times, types, entities, streams, scores, verdicts)


def read_times(series: pd.Series, column: str, name: str) -> np.ndarray:
    """Seconds since 1970: numbers as they are, text as numbers or ISO 8601 dates (UTC unless
    they carry an offset)."""
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    text = series.notna() & np.isnan(values)
    if text.any():
        try:
            parsed = pd.to_datetime(series[text].astype(str), utc=True, errors="coerce", format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            parsed = pd.Series(pd.NaT, index=series[text].index)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
        values[np.flatnonzero(text.to_numpy())] = seconds.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) > 1e12))
    if bad.size:
        i = bad[0]
        raise DataError(f"{name}: column {column!r} at row {series.index[i]} holds {series.iloc[i]!r}, which is no "
                        "time: give seconds since 1970 or an ISO 8601 date and time (e.g. 2024-05-01 13:55:36)")
    return values


def read_numbers(series: pd.Series, column: str, name: str) -> np.ndarray:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = bad[0]
        raise DataError(f"{name}: column {column!r} at row {series.index[i]} holds {series.iloc[i]!r}; the raw "
                        "score must be a finite number on every row")
    return values


def read_verdicts(series: pd.Series, column: str, name: str) -> np.ndarray:
    """1 (true alert), 0 (false positive) or NO_VERDICT (empty) per row."""
    out = np.full(len(series), NO_VERDICT, dtype=np.int64)
    for i, value in enumerate(series.to_numpy(dtype=object)):
        if value is None or (isinstance(value, float) and np.isnan(value)) or (
                isinstance(value, str) and not value.strip()):
            continue
        word = str(value).strip().lower()
        if isinstance(value, (bool, np.bool_)):
            out[i] = int(value)
        elif word in TRUE_WORDS:
            out[i] = 1
        elif word in FALSE_WORDS:
            out[i] = 0
        else:
            raise DataError(f"{name}: verdict column {column!r} at row {series.index[i]} holds {value!r}; expected "
                            "1 (a true alert: true, yes, tp), 0 (a false positive: false, no, fp) or an empty cell")
    return out


def _text(series: pd.Series, column: str, name: str) -> np.ndarray:
    text = entity_text(series)
    bad = not_unicode(text.to_numpy())
    if bad is not None:
        raise DataError(f"{name}: column {column!r} at row {text.index[bad]} is not valid Unicode text")
    missing = np.flatnonzero(text.isna().to_numpy())
    if missing.size:
        raise DataError(f"{name}: column {column!r} is empty at row {text.index[missing[0]]} ({missing.size} empty "
                        "in all); every alert needs a value there")
    return text.to_numpy(dtype=object)
