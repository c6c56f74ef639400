"""Reading tables and turning mixed columns into the numbers detectors work on.

Sources: a numpy array (columns are named x0, x1, ...), a pandas DataFrame, an Arrow table,
or a CSV / TSV / Parquet file. docs/tabular.md repeats this policy for users:

- column kinds are fixed at fit: numeric dtypes are numeric; strings, booleans and pandas
  categoricals are categorical. Dates and other types are an error naming the column.
- numeric: a missing value (NaN, empty cell) is replaced by the column's training median, so
  one gap does not drop a row; infinity is an error. Columns are then scaled robustly
  (median, and the interquartile range as a standard deviation), so one extreme value does
  not squash the rest of the column.
- categorical: each value becomes its frequency in the training data, one number per column,
  so every detector and every attribution stays one-to-one with the input columns; a rare
  category is a small number, as it should be for anomaly detection. A category never seen
  in training falls in the explicit 'unseen' bucket, frequency 0, rarer than any seen one.
  A missing value is its own category, ``<missing>``.
- at score time the fitted columns must be present (extra ones are ignored); a numeric
  column holding text, or an empty table, is an error naming the column and value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError

MISSING = "<missing>"
NUMERIC, CATEGORICAL = "numeric", "categorical"
IQR_TO_STD = 1.349  # the interquartile range of a standard normal distribution


def read_table(source) -> tuple[pd.DataFrame, str]:
    """A DataFrame with string column names from any supported source, and a name for errors."""
    if isinstance(source, pd.DataFrame):
        frame, name = source, "data frame"
    elif isinstance(source, np.ndarray):
        frame, name = _from_array(source), "array"
    elif type(source).__module__.startswith("pyarrow"):
        try:
            frame, name = source.to_pandas(), "arrow table"
        except AttributeError:
            raise DataError(f"cannot read a table from a {type(source).__name__}") from None
    elif isinstance(source, (str, Path)):
        frame, name = _read_file(Path(source)), str(source)
    else:
        raise DataError(f"cannot read a table from a {type(source).__name__}; give an array, "
                        "DataFrame, Arrow table or a .csv/.tsv/.parquet path")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{name}: the table is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)")
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: duplicate column name(s) {', '.join(duplicated)}")
    return frame.set_axis(columns, axis=1).reset_index(drop=True), name


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """CSV, TSV or Parquet by extension (see `output_format`)."""
    if output_format(path) == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")


def output_format(path: Path) -> str:
    """"csv" or "parquet" by the file's extension; anything else is an error naming the file."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise DataError(f"{path}: unknown table format {suffix!r}; expected .csv, .tsv or .parquet")


class TableEncoder:
    """Fits the column policy above on a training table; `transform` gives an n x d float64
    matrix with one column per input column, in the fitted order."""

    def fit(self, frame: pd.DataFrame, name: str = "data") -> "TableEncoder":
        self.columns_ = list(frame.columns)
        self.kinds_ = [_kind(frame[c], c, name) for c in self.columns_]
        self.fill_ = np.zeros(len(self.columns_))
        self.categories_: dict[str, dict[str, float]] = {}
        raw = np.empty((len(frame), len(self.columns_)))
        for j, (column, kind) in enumerate(zip(self.columns_, self.kinds_)):
            if kind == NUMERIC:
                values = _numeric(frame[column], column, name)
                if np.isnan(values).all():
                    raise DataError(f"{name}: numeric column {column!r} has no values, only missing ones")
                self.fill_[j] = np.nanmedian(values)
                raw[:, j] = np.where(np.isnan(values), self.fill_[j], values)
            else:
                labels = _labels(frame[column])
                self.categories_[column] = labels.value_counts(normalize=True, sort=False).to_dict()
                raw[:, j] = labels.map(self.categories_[column]).to_numpy(dtype=np.float64)
        self.center_ = np.median(raw, axis=0)
        q75, q25 = np.percentile(raw, [75, 25], axis=0)
        scale = (q75 - q25) / IQR_TO_STD
        # A column that is mostly one value has no spread between its quartiles: fall back to
        # its standard deviation, and to 1 for a constant column.
        scale = np.where(scale > 0, scale, raw.std(axis=0))
        self.scale_ = np.where(scale > 0, scale, 1.0)
        return self

    def transform(self, frame: pd.DataFrame, name: str = "data") -> np.ndarray:
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise DataError(f"{name}: missing column(s) {', '.join(missing)}; the model was fitted on "
                            f"{', '.join(self.columns_)}")
        out = np.empty((len(frame), len(self.columns_)))
        for j, (column, kind) in enumerate(zip(self.columns_, self.kinds_)):
            if kind == NUMERIC:
                values = _numeric(frame[column], column, name)
                out[:, j] = np.where(np.isnan(values), self.fill_[j], values)
            else:
                # Unseen categories map to NaN here and become the 'unseen' bucket, frequency 0.
                freq = _labels(frame[column]).map(self.categories_[column])
                out[:, j] = freq.to_numpy(dtype=np.float64, na_value=0.0)
        return (out - self.center_) / self.scale_

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {"encoder.fill": self.fill_, "encoder.center": self.center_, "encoder.scale": self.scale_}
        meta = {"columns": self.columns_, "kinds": self.kinds_,
                "categories": {c: list(levels) for c, levels in self.categories_.items()}}
        for j, column in enumerate(self.columns_):
            if self.kinds_[j] == CATEGORICAL:
                arrays[f"encoder.freq.{j}"] = np.array(list(self.categories_[column].values()))
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "TableEncoder":
        try:
            columns, kinds, categories = meta["columns"], meta["kinds"], meta["categories"]
            if not (isinstance(columns, list) and isinstance(kinds, list) and len(columns) == len(kinds)
                    and set(kinds) <= {NUMERIC, CATEGORICAL} and isinstance(categories, dict)):
                raise TypeError
        except (KeyError, TypeError):
            raise ModelFileError("model state: the table encoder's columns are missing or malformed") from None
        d = len(columns)
        shapes = {"encoder.fill": (d,), "encoder.center": (d,), "encoder.scale": (d,)}
        shapes.update({f"encoder.freq.{j}": (len(categories.get(c, [])),)
                       for j, c in enumerate(columns) if kinds[j] == CATEGORICAL})
        expect_arrays(arrays, shapes)
        encoder = cls()
        encoder.columns_, encoder.kinds_ = list(columns), list(kinds)
        encoder.fill_, encoder.center_ = arrays["encoder.fill"], arrays["encoder.center"]
        encoder.scale_ = arrays["encoder.scale"]
        encoder.categories_ = {
            c: dict(zip(categories[c], arrays[f"encoder.freq.{j}"].tolist()))
            for j, c in enumerate(columns) if kinds[j] == CATEGORICAL
        }
        return encoder


def _from_array(a: np.ndarray) -> pd.DataFrame:
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(f"a table array must be n x d (or n), got shape {a.shape}")
    frame = pd.DataFrame(a, columns=[f"x{j}" for j in range(a.shape[1])])
    # An object array (mixed numbers and text) gets a dtype per column, as a CSV would.
    return frame.infer_objects() if a.dtype == object else frame


def _read_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"table file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv", ".txt"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    raise DataError(f"{path}: unknown table format {suffix!r}; expected .csv, .tsv or .parquet")


def _kind(series: pd.Series, column: str, name: str) -> str:
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(dtype):
        return NUMERIC
    if (pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)
            or dtype == object):
        return CATEGORICAL
    raise DataError(f"{name}: column {column!r} has type {dtype}, neither numbers nor categories; "
                    "convert it (e.g. a date to a number of days) or drop it")


def _numeric(series: pd.Series, column: str, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError(f"{name}: column {column!r} holds true/false values but the model expects numbers")
    values = pd.to_numeric(series, errors="coerce")
    # Only the values that failed to parse are looked at as text (blank text is a missing value):
    # turning a whole numeric column into text costs more than all the rest of scoring.
    suspect = np.flatnonzero((values.isna() & series.notna()).to_numpy())
    bad = suspect[(series.iloc[suspect].astype(str).str.strip() != "").to_numpy()]
    if len(bad):
        row = int(bad[0])
        raise DataError(f"{name}: column {column!r} has a non-numeric value {series.iloc[row]!r} at row {row}")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        row = int(np.flatnonzero(np.isinf(out))[0])
        raise DataError(f"{name}: column {column!r} contains infinity at row {row}")
    return out


def _labels(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), MISSING).astype(str)
