"""Reading tables and turning mixed columns into the numbers detectors work on.

Sources: a numpy array (columns are named x0, x1, ...), a pandas DataFrame, an Arrow table,
or a CSV / TSV / Parquet file. docs/tabular.md repeats this policy for users:

- column kinds are fixed at fit: numeric dtypes are numeric; strings, booleans and pandas
  categoricals are categorical. Dates and other types are an error naming the column. A text
  column that is mostly numbers (one stray cell) is read as categorical with a warning naming
  the cell (`mixed_columns`; the CLI's --strict refuses it).
- columns that cannot describe normal rows are refused at fit, naming the column and --drop:
  dates or times stored as text, and identifiers: a text column whose values are all
  different, or an integer column whose values all differ and only rise (or only fall), such
  as a row number or a time stamp. Left in, every new row would look unseen in that column.
- numeric: a missing value (NaN, empty cell) is replaced by the column's training median, so
  one gap does not drop a row. Infinity (also a number too large for a 64-bit float, such as
  1e999) is an error naming the column and row; so is a training value beyond
  ±MAX_MAGNITUDE, whose squares would overflow. Columns are then scaled robustly (median,
  and the interquartile range as a standard deviation), so one extreme value does not squash
  the rest of the column; a spread within rounding of the values (NUMERIC_NOISE) is none.
  Encoded values are clipped to ±ENCODED_LIMIT scaled units, so that a huge value met when
  scoring still gives a finite score (the most anomalous one can get).
- categorical: each value becomes its frequency in the training data, one number per column,
  so every detector and every attribution stays one-to-one with the input columns; a rare
  category is a small number, as it should be for anomaly detection. A category never seen
  in training falls in the explicit 'unseen' bucket, frequency 0, rarer than any seen one.
  A missing value is its own category, ``<missing>``.
- at score time the fitted columns must be present (extra ones are ignored); a numeric
  column holding text, or an empty table, is an error naming the column and value.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError

MISSING = "<missing>"
NUMERIC, CATEGORICAL = "numeric", "categorical"
IQR_TO_STD = 1.349  # the interquartile range of a standard normal distribution
# Training values beyond this magnitude are refused: detectors square and sum them.
MAX_MAGNITUDE = 1e100
# Encoded values are clipped here (in robust standard deviations): finite squares and sums,
# float32 included, and still the most anomalous value a column can hold.
ENCODED_LIMIT = 1e12
# A spread below this share of a column's magnitude is rounding (e.g. the standard deviation
# of n copies of 1/n), not variation: the column is constant.
NUMERIC_NOISE = 1e-12
# Fewer values than this are too few to call a column an identifier.
MIN_IDENTIFIER_VALUES = 10
# A date, with a 4-digit year first or last, optionally followed by a time.
DATE_LIKE = re.compile(r"^\s*(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})"
                       r"([T ]\d{1,2}:\d{2}(:\d{2}([.,]\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?\s*$")
DATE_SAMPLE = 1000  # distinct values looked at to call a column date-like
# Where read_table records a frame's file, so that errors about a frame read from a file
# name the file (pandas keeps `attrs` through row selections).
SOURCE = "source"


class MixedColumnWarning(UserWarning):
    """A column of numbers with some text cells is read as categorical."""


def read_table(source) -> tuple[pd.DataFrame, str]:
    """A DataFrame with string column names from any supported source, and a name for errors."""
    if isinstance(source, pd.DataFrame):
        frame, name = source, str(source.attrs.get(SOURCE, "data frame"))
    elif isinstance(source, np.ndarray):
        frame, name = _from_array(source), "array"
    elif type(source).__module__.startswith("pyarrow"):
        try:
            frame, name = source.to_pandas(), "arrow table"
        except AttributeError:
            raise DataError(f"cannot read a table from a {type(source).__name__}") from None
    elif isinstance(source, (str, Path)):
        frame, name = _read_file(Path(source)), str(source)
        frame.attrs[SOURCE] = name
    else:
        raise DataError(f"cannot read a table from a {type(source).__name__}; give an array, "
                        "DataFrame, Arrow table or a .csv/.tsv/.parquet path")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{name}: the table is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)")
    columns = [str(c) for c in frame.columns]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"{name}: duplicate column name(s) {', '.join(duplicated)}")
    frame = frame.set_axis(columns, axis=1)
    # Rows are named by their index in errors: a frame's own integer index is kept, so that the
    # rows of a file a holdout split took out keep their numbers in the file.
    if not (pd.api.types.is_integer_dtype(frame.index.dtype) and frame.index.is_unique):
        frame = frame.reset_index(drop=True)
    return frame, name


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
        mixed = mixed_columns(frame, self.columns_, self.kinds_, name)
        for column, kind in zip(self.columns_, self.kinds_):
            _refuse_uninformative(frame[column], column, kind, name, mixed=column in {m[0] for m in mixed})
        for column, row, value, n_text, n_values in mixed:
            warnings.warn(f"{name}: column {column!r} is read as categories, not numbers, because of {n_text} "
                          f"non-numeric value(s) among its {n_values}, the first {value!r} at row {row}; fix the "
                          "cell(s) or refuse such columns with --strict", MixedColumnWarning, stacklevel=2)
        self.fill_ = np.zeros(len(self.columns_))
        self.categories_: dict[str, dict[str, float]] = {}
        raw = np.empty((len(frame), len(self.columns_)))
        for j, (column, kind) in enumerate(zip(self.columns_, self.kinds_)):
            if kind == NUMERIC:
                values = _numeric(frame[column], column, name)
                if np.isnan(values).all():
                    raise DataError(f"{name}: numeric column {column!r} has no values, only missing ones")
                big = np.flatnonzero(np.abs(np.nan_to_num(values)) > MAX_MAGNITUDE)
                if len(big):
                    raise DataError(f"{name}: column {column!r} has {values[big[0]]:g} at row "
                                    f"{row_of(frame, big[0])}, beyond the ±{MAX_MAGNITUDE:g} a model can learn from; "
                                    "rescale the column (other units, a logarithm) or drop the row")
                self.fill_[j] = np.nanmedian(values)
                raw[:, j] = np.where(np.isnan(values), self.fill_[j], values)
            else:
                labels = _labels(frame[column], column, name)
                self.categories_[column] = labels.value_counts(normalize=True, sort=False).to_dict()
                raw[:, j] = labels.map(self.categories_[column]).to_numpy(dtype=np.float64)
        self.center_ = np.median(raw, axis=0)
        q75, q25 = np.percentile(raw, [75, 25], axis=0)
        self.scale_ = robust_scale(raw, (q75 - q25) / IQR_TO_STD)
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
                freq = _labels(frame[column], column, name).map(self.categories_[column])
                out[:, j] = freq.to_numpy(dtype=np.float64, na_value=0.0)
        with np.errstate(over="ignore"):
            out = (out - self.center_) / self.scale_
        return np.clip(out, -ENCODED_LIMIT, ENCODED_LIMIT)

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
                    and all(isinstance(c, str) for c in columns) and len(set(columns)) == len(columns)
                    and set(kinds) <= {NUMERIC, CATEGORICAL} and isinstance(categories, dict)
                    and all(isinstance(categories.get(c), list) and all(isinstance(v, str) for v in categories[c])
                            for c, k in zip(columns, kinds) if k == CATEGORICAL)):
                raise TypeError
        except (KeyError, TypeError):
            raise ModelFileError("model state: the table encoder's columns are missing or malformed") from None
        d = len(columns)
        shapes = {"encoder.fill": (d,), "encoder.center": (d,), "encoder.scale": (d,)}
        shapes.update({f"encoder.freq.{j}": (len(categories[c]),)
                       for j, c in enumerate(columns) if kinds[j] == CATEGORICAL})
        expect_arrays(arrays, shapes)
        if not (arrays["encoder.scale"] > 0).all():
            raise ModelFileError("model state: the table encoder's scales must be positive")
        encoder = cls()
        encoder.columns_, encoder.kinds_ = list(columns), list(kinds)
        encoder.fill_, encoder.center_ = arrays["encoder.fill"], arrays["encoder.center"]
        encoder.scale_ = arrays["encoder.scale"]
        encoder.categories_ = {
            c: dict(zip(categories[c], arrays[f"encoder.freq.{j}"].tolist()))
            for j, c in enumerate(columns) if kinds[j] == CATEGORICAL
        }
        return encoder


def robust_scale(values: np.ndarray, spread: np.ndarray, unit: float = 0.0) -> np.ndarray:
    """Per column of `values` (rows x columns), `spread` where it is more than rounding, else
    the standard deviation where that is, else 1 (a constant column). Rounding is relative to
    the column's largest magnitude, or to `unit` where that is larger: values known to be in
    units of about 1 that are all near 0 (e.g. residuals of 1e-30) are constant too."""
    noise = NUMERIC_NOISE * np.maximum(np.abs(values).max(axis=0), unit)
    spread = np.where(spread > noise, spread, values.std(axis=0))
    return np.where(spread > noise, spread, 1.0)


def mixed_columns(frame: pd.DataFrame, columns: list[str], kinds: list[str], name: str) -> list[tuple]:
    """(column, row, value, non-numbers, values) for each categorical column most of whose
    values are numbers: one stray text cell that made a column of numbers categorical."""
    found = []
    for column, kind in zip(columns, kinds):
        series = frame[column]
        if kind != CATEGORICAL or pd.api.types.is_bool_dtype(series.dtype) or isinstance(series.dtype,
                                                                                          pd.CategoricalDtype):
            continue
        present = series.notna().to_numpy() & (_as_str(series, column, name).str.strip() != "").to_numpy()
        numbers = pd.to_numeric(series.where(present), errors="coerce").notna().to_numpy()
        text = np.flatnonzero(present & ~numbers)
        if 0 < len(text) < numbers.sum():
            found.append((column, row_of(series, text[0]), series.iloc[text[0]], len(text), int(present.sum())))
    return found


def check_strict(frame: pd.DataFrame, name: str) -> None:
    """Refuse a column of numbers that holds text cells (the CLI's --strict)."""
    columns = list(frame.columns)
    kinds = [_kind(frame[c], c, name) for c in columns]
    for column, row, value, n_text, n_values in mixed_columns(frame, columns, kinds, name):
        raise DataError(f"{name}: column {column!r} holds numbers and {n_text} non-numeric value(s), the first "
                        f"{value!r} at row {row}; fix the cell(s) or --drop {column} (without --strict it is "
                        "read as categories)")


def _refuse_uninformative(series: pd.Series, column: str, kind: str, name: str, mixed: bool) -> None:
    """Dates stored as text and identifiers describe when or which row, not what is normal.
    A column of numbers made categorical by stray text (`mixed`) is warned about instead."""
    values = series.dropna()
    hint = f"drop it (--drop {column})"
    if kind == CATEGORICAL and not pd.api.types.is_bool_dtype(series.dtype) and len(values):
        sample = pd.unique(_as_str(values, column, name))[:DATE_SAMPLE]
        if all(DATE_LIKE.match(v) for v in sample):
            raise DataError(f"{name}: column {column!r} holds dates or times as text (e.g. {sample[0]!r}): every "
                            f"new row would be an unseen category; {hint}, or replace it by a number such as "
                            "the hour of day")
        if not mixed and len(values) >= MIN_IDENTIFIER_VALUES and values.nunique() == len(values):
            raise DataError(f"{name}: column {column!r} looks like an identifier (all {len(values)} values differ): "
                            f"it says which row, not what is normal; {hint}")
    if (kind == NUMERIC and pd.api.types.is_integer_dtype(series.dtype) and len(values) >= MIN_IDENTIFIER_VALUES
            and (values.is_monotonic_increasing or values.is_monotonic_decreasing) and values.is_unique):
        raise DataError(f"{name}: column {column!r} looks like a row number, identifier or time stamp (all "
                        f"{len(values)} values differ and only rise or only fall): new rows would fall outside "
                        f"its training range; {hint}")


def _check_headers(path: Path, sep: str) -> None:
    """Refuse a CSV whose header names a column twice (pandas would rename the second `a.1`)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        try:
            header = next(csv.reader(fh, delimiter=sep), [])
        except csv.Error:
            return  # pandas says what is wrong with the file
    seen: dict[str, int] = {}
    for position, title in enumerate(header, start=1):
        if title in seen:
            raise _HeaderError(f"{path}: the header names column {title!r} twice (columns {seen[title]} and "
                               f"{position}); rename one")
        seen[title] = position


class _HeaderError(DataError):
    pass


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
            sep = "\t" if suffix == ".tsv" else ","
            _check_headers(path, sep)
            return pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the table is empty") from None
    except _HeaderError:
        raise
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
    raise DataError(f"{name}: column {column!r} has type {dtype}, neither numbers nor categories; drop it "
                    f"(--drop {column}) or convert it (e.g. a date to the hour of day or day of week)")


def _numeric(series: pd.Series, column: str, name: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series.dtype):
        raise DataError(f"{name}: column {column!r} holds true/false values but the model expects numbers")
    values = pd.to_numeric(series, errors="coerce")
    # Only the values that failed to parse are looked at as text (blank text is a missing value):
    # turning a whole numeric column into text costs more than all the rest of scoring.
    suspect = np.flatnonzero((values.isna() & series.notna()).to_numpy())
    bad = suspect[(_as_str(series.iloc[suspect], column, name).str.strip() != "").to_numpy()]
    if len(bad):
        raise DataError(f"{name}: column {column!r} has a non-numeric value {series.iloc[bad[0]]!r} at row "
                        f"{row_of(series, bad[0])}")
    out = values.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.isinf(out).any():
        row = row_of(series, np.flatnonzero(np.isinf(out))[0])
        raise DataError(f"{name}: column {column!r} contains infinity at row {row} (or a number too large for a "
                        "64-bit float, such as 1e999); give finite numbers, or leave the cell empty for a "
                        "missing value")
    return out


def row_of(rows: pd.Series | pd.DataFrame, position: int) -> int:
    """The row number errors give for a position: the index label (see `read_table`)."""
    return int(rows.index[position])


def _labels(series: pd.Series, column: str, name: str) -> pd.Series:
    return _as_str(series.astype(object).where(series.notna(), MISSING), column, name)


def _as_str(series: pd.Series, column: str, name: str) -> pd.Series:
    """The values as text; a lone surrogate (e.g. "\\ud800" from JSON) is no text and an error."""
    try:
        return series.astype(str)
    except UnicodeEncodeError:
        row = next(i for i, v in series.items() if isinstance(v, str) and not _encodable(v))
        raise DataError(f"{name}: column {column!r} has a value that is not valid Unicode text (a lone "
                        f"surrogate) at row {row}") from None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
