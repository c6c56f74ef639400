"""Reading time series: CSV, Parquet, a pandas DataFrame/Series or an Arrow table.

The policy, applied in this order (docs/timeseries.md repeats it for users):

- file formats: CSV, TSV, a UCR-archive style `.txt` (numbers separated by commas, spaces or
  lines), Parquet and NumPy `.npy` (1-d: one variable; 2-d: readings x variables, named x0,
  x1, ...). A text file whose first line is all numbers has no header: that line is a reading
  (columns are then named ``value``, or x0, x1, ...).
- label and index columns: a column named ``label``, ``is_anomaly`` or ``anomaly`` holds
  answers, not readings, and an integer column named ``index``, ``sample`` or ``Unnamed: 0`` (a
  saved row index) numbers the rows: neither is ever taken as a variable unless named in
  `columns`; an index column left out is said with an `IndexColumnWarning`.
- time: the column named by `time_column`, else a column called ``timestamp`` (or ``time``,
  ``date``, ``datetime``), else a DatetimeIndex; without any of these rows are taken in file
  order and positions stand in for time. Unparseable timestamps are an error.
- non-monotonic time: rows are sorted by time (stable), which loses nothing.
- duplicate timestamps: an error by default, because which of two readings is right is the
  user's call; ``duplicates="first" | "last" | "mean"`` makes it.
- gaps: kept as they are (detectors work on the sequence of readings); with ``freq`` the
  series is put on a regular grid and the inserted rows are missing values.
- missing values (NaN, empty cells): ``missing="ffill"`` (default) carries the last reading
  forward, which uses only the past; leading gaps take the first reading. ``"error"`` refuses.
- non-numeric values, an all-missing column, an unknown column or an empty series: an error
  naming the column (and a bad value).
- infinite values, and finite ones beyond MAX_READING (1e30) in magnitude: an error naming the column and
  row. Detectors square and sum differences of readings and forecast in single precision;
  within this bound none of it can overflow, so a detector's state and scores stay finite.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError

TIME_NAMES = ("timestamp", "time", "date", "datetime")
LABEL_NAMES = ("label", "is_anomaly", "anomaly")  # answers, never model inputs
INDEX_NAMES = ("index", "sample", "unnamed: 0")  # row numbers, never model inputs
DUPLICATES = ("error", "first", "last", "mean")
# The largest reading magnitude accepted (see the module docstring): far beyond any measured
# quantity, far enough inside float64 that squares of sums of differences stay finite, and
# inside float32 (3.4e38), in which LightGBM holds its training targets.
MAX_READING = 1e30
READING_RULE = (f"readings must be finite numbers between {-MAX_READING:g} and {MAX_READING:g} "
                "(a missing value is empty or NaN)")
MISSING = ("ffill", "error")


class IndexColumnWarning(UserWarning):
    """An integer column that numbers the rows was left out of the variables."""


def is_label_column(name) -> bool:
    return str(name).strip().lower() in LABEL_NAMES


@dataclass(frozen=True)
class TimeSeries:
    """n readings of d variables: values n x d float64 without NaN, aligned timestamps
    (datetime64[ns]) or None when the source had no time, and one name per variable."""

    values: np.ndarray
    columns: list[str]
    timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def index(self) -> pd.Index:
        return pd.DatetimeIndex(self.timestamps) if self.timestamps is not None else pd.RangeIndex(len(self))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.values, columns=self.columns, index=self.index)


def load_series(source, time_column: str | None = None, columns: list[str] | None = None,
                duplicates: str = "error", missing: str = "ffill", freq: str | None = None) -> TimeSeries:
    """Read and clean a series by the policy above; `columns` picks the variables (default:
    every column but time)."""
    if duplicates not in DUPLICATES:
        raise DataError(f"duplicates must be one of {', '.join(DUPLICATES)}, got {duplicates!r}")
    if missing not in MISSING:
        raise DataError(f"missing must be one of {', '.join(MISSING)}, got {missing!r}")
    frame, name = _read(source)
    frame, times = _split_time(frame, time_column, name)
    frame = _select(frame, columns, name)
    if times is not None:
        frame.index = times
        frame = frame.sort_index(kind="stable")
        frame = _deduplicate(frame, duplicates, name)
        if freq is not None:
            frame = _regular(frame, freq, name)
    elif freq is not None:
        raise DataError(f"{name}: freq={freq!r} needs timestamps, but the data has no time column")
    values = _numeric(frame, name)
    values = _fill(values, list(frame.columns), frame.index, missing, name)
    timestamps = frame.index.to_numpy(dtype="datetime64[ns]") if times is not None else None
    return TimeSeries(values, [str(c) for c in frame.columns], timestamps)


def as_series(X) -> TimeSeries:
    """A TimeSeries from anything a detector accepts: a TimeSeries, an n or n x d array, a
    DataFrame, Series or Arrow table (read by the policy above)."""
    if isinstance(X, TimeSeries):
        check_readings(X.values, X.columns, "series")
        return X
    if isinstance(X, (np.ndarray, list, tuple)):
        try:
            a = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"series values must be numbers: {exc}") from exc
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise DataError(f"a series array must be n or n x d, got shape {a.shape}")
        return load_series(pd.DataFrame(a, columns=_default_names(a.shape[1])))
    return load_series(X)


# --- steps ------------------------------------------------------------------------------------


def _read(source) -> tuple[pd.DataFrame, str]:
    if isinstance(source, pd.DataFrame):
        return source.copy(), "data frame"
    if isinstance(source, pd.Series):
        return source.to_frame(name=source.name if source.name is not None else "value"), "series"
    if type(source).__module__.startswith("pyarrow"):
        return source.to_pandas(), "arrow table"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"series file {path} does not exist")
        suffix = path.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                frame = pd.read_parquet(path)
            elif suffix == ".npy":
                frame = _read_npy(path)
            elif suffix in (".csv", ".txt", ".tsv"):
                frame = _read_text(path, suffix)
            else:
                raise DataError(f"{path}: unknown series format {suffix!r}; expected .csv, .tsv, .txt, .parquet or .npy")
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
        return frame, str(path)
    raise DataError(f"cannot read a series from a {type(source).__name__}; give a path, DataFrame or Arrow table")


def _read_text(path: Path, suffix: str) -> pd.DataFrame:
    """A delimited text file; without a header when its first line is all numbers."""
    sep = {".tsv": "\t", ".txt": r"[\s,]+"}.get(suffix, ",")
    engine = "python" if suffix == ".txt" else "c"
    with open(path, encoding="utf-8") as fh:
        first = next((line for line in fh if line.strip()), "")
    fields = [f for f in re.split(sep, first.strip()) if f != ""]
    numeric = bool(fields) and all(_is_number(f) for f in fields)
    frame = pd.read_csv(path, sep=sep, engine=engine, header=None if numeric else "infer")
    if numeric:
        if suffix == ".txt" and len(frame) == 1 and frame.shape[1] > 1:  # all readings on one line
            frame = frame.T.reset_index(drop=True)
        frame.columns = _default_names(frame.shape[1])
    return frame


def _read_npy(path: Path) -> pd.DataFrame:
    a = np.load(path, allow_pickle=False)
    if a.ndim not in (1, 2) or a.dtype.kind not in "biuf":
        raise DataError(f"{path}: a .npy series must be a 1-d or 2-d array of numbers, got {a.ndim}-d {a.dtype}")
    a = a.reshape(len(a), -1).astype(np.float64)
    return pd.DataFrame(a, columns=_default_names(a.shape[1]))


def _default_names(d: int) -> list[str]:
    return ["value"] if d == 1 else [f"x{j}" for j in range(d)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _split_time(frame: pd.DataFrame, time_column: str | None, name: str):
    if len(frame) == 0:
        raise DataError(f"{name}: the series is empty")
    if time_column is not None and time_column not in frame.columns:
        raise DataError(f"{name}: no time column {time_column!r}; columns are {', '.join(map(str, frame.columns))}")
    column = time_column or next((c for c in frame.columns if str(c).lower() in TIME_NAMES), None)
    if column is not None:
        raw = frame[column]
        frame = frame.drop(columns=[column])
    elif isinstance(frame.index, pd.DatetimeIndex):
        raw, column = frame.index.to_series(), frame.index.name or "index"
        frame = frame.reset_index(drop=True)
    else:
        return frame.reset_index(drop=True), None
    try:
        times = pd.DatetimeIndex(pd.to_datetime(raw, format="mixed" if raw.dtype == object else None))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}: time column {column!r} has values that are not timestamps: {exc}".splitlines()[0]) from exc
    if times.hasnans:
        at = int(np.flatnonzero(times.isna())[0])
        raise DataError(f"{name}: time column {column!r} is missing a timestamp at row {at}")
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    return frame.reset_index(drop=True), times


def _select(frame: pd.DataFrame, columns: list[str] | None, name: str) -> pd.DataFrame:
    if columns:
        unknown = [c for c in columns if c not in frame.columns]
        if unknown:
            raise DataError(f"{name}: unknown column(s) {', '.join(unknown)}; "
                            f"columns are {', '.join(map(str, frame.columns)) or '(none)'}")
        frame = frame[list(columns)]
    else:
        labels = [c for c in frame.columns if is_label_column(c)]
        index = [c for c in frame.columns if str(c).strip().lower() in INDEX_NAMES and _counts_rows(frame[c])]
        if index:
            warnings.warn(f"{name}: column(s) {', '.join(map(repr, index))} number the rows and are not used as "
                          "variables (name them in columns to use them)", IndexColumnWarning, stacklevel=3)
        frame = frame.drop(columns=labels + index)
    if frame.shape[1] == 0:
        raise DataError(f"{name}: no value columns besides time")
    return frame


def _counts_rows(column: pd.Series) -> bool:
    """Whether a column holds integers that rise with the rows, as a saved row index does."""
    values = pd.to_numeric(column, errors="coerce")
    if values.isna().any() or len(values) < 2:
        return False
    a = values.to_numpy(dtype=np.float64)
    return bool(np.all(a == np.round(a)) and np.all(np.diff(a) > 0))


def _deduplicate(frame: pd.DataFrame, duplicates: str, name: str) -> pd.DataFrame:
    dup = frame.index.duplicated(keep=False)
    if not dup.any():
        return frame
    if duplicates == "error":
        raise DataError(f"{name}: {int(dup.sum())} rows share a timestamp (first {frame.index[dup][0]}); "
                        "choose duplicates=first, last or mean")
    if duplicates == "mean":
        return frame.apply(pd.to_numeric, errors="coerce").groupby(level=0, sort=False).mean()
    return frame[~frame.index.duplicated(keep=duplicates)]


def _regular(frame: pd.DataFrame, freq: str, name: str) -> pd.DataFrame:
    try:
        grid = pd.date_range(frame.index[0], frame.index[-1], freq=freq)
    except ValueError as exc:
        raise DataError(f"{name}: freq {freq!r} is not a pandas frequency: {exc}") from exc
    off_grid = ~frame.index.isin(grid)
    if off_grid.any():
        raise DataError(f"{name}: timestamp {frame.index[off_grid][0]} is not on the {freq} grid from {frame.index[0]}")
    return frame.reindex(grid)


def _numeric(frame: pd.DataFrame, name: str) -> np.ndarray:
    out = np.empty(frame.shape, dtype=np.float64)
    for j, column in enumerate(frame.columns):
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        bad = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            raise DataError(f"{name}: column {column!r} has a non-numeric value {raw[bad].iloc[0]!r} "
                            f"at row {int(np.flatnonzero(bad.to_numpy())[0])}")
        out[:, j] = values.to_numpy(dtype=np.float64, na_value=np.nan)
    check_readings(out, list(frame.columns), name, frame.index)
    return out


def check_readings(values: np.ndarray, columns: list, name: str, index: pd.Index | None = None) -> None:
    """Refuse readings that are infinite or beyond MAX_READING in magnitude, naming the first
    one's column and time (or row); NaN is a missing value and passes."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > MAX_READING
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        at = f"{index[i]}" if isinstance(index, pd.DatetimeIndex) else f"row {i}"
        raise DataError(f"{name}: column {columns[j]!r} has {values[i, j]:g} at {at}; {READING_RULE}")


def _fill(values: np.ndarray, columns: list, index: pd.Index, missing: str, name: str) -> np.ndarray:
    nan = np.isnan(values)
    if not nan.any():
        return values
    for j in np.flatnonzero(nan.all(axis=0)):
        raise DataError(f"{name}: column {columns[j]!r} has no values (all missing)")
    if missing == "error":
        i, j = (int(v) for v in np.argwhere(nan)[0])
        raise DataError(f"{name}: column {columns[j]!r} is missing a value at {index[i]}; "
                        "use missing=ffill to carry the last reading forward")
    return pd.DataFrame(values).ffill().bfill().to_numpy()
