"""Reading categorical events and turning entities into integer codes.

An event is one row of a table whose columns are entity types (user, host, process, port ...)
and whose cells are entities. docs/events.md repeats this policy for users:

- every cell is an entity, compared as text: a CSV is read with every column as text, so
  "007" stays "007"; a number in a DataFrame becomes its decimal text (22.0 -> "22").
- a missing cell (empty in a CSV, NaN/None in a frame) is an error naming the column and row,
  unless the detector was made with ``allow_missing=True``: then it is the entity "<missing>".
- each column has its own vocabulary, fixed at fit. Code 0 of every column is the shared
  "unseen" slot: entities never seen in training land there, and so do training entities
  seen at most ``min_count`` times, so an unseen entity is treated like a rare one.
- at score time the fitted columns must be present (others are ignored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.data import read_table

MISSING = "<missing>"
UNSEEN = "<unseen>"


SOURCE = "normalcy_source"


def read_events(source) -> tuple[pd.DataFrame, str]:
    """A table of events from a DataFrame, Arrow table, array or .csv/.tsv/.parquet file, and a
    name for errors. CSV cells are read as text, so entity names keep their exact spelling. The
    frame carries its name in `attrs` (pandas keeps it through row selections), so a part of a
    file's events, e.g. the fitted part of a holdout split, still names the file."""
    if isinstance(source, pd.DataFrame) and source.attrs.get(SOURCE) and len(source):
        return source, source.attrs[SOURCE]  # read before: its row labels are the file's rows
    frame, name = _read(source)
    frame.attrs[SOURCE] = name
    return frame, name


def _read(source) -> tuple[pd.DataFrame, str]:
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".csv", ".tsv", ".txt"):
        path = Path(source)
        if not path.is_file():
            raise DataError(f"event file {path} does not exist")
        try:
            # Only an empty cell is missing: "NA" or "null" can be real user or host names.
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                                keep_default_na=False, na_values=[""])
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the table is empty") from None
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            raise DataError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
        return read_table(frame)[0], str(path)
    return read_table(source)


def entity_text(series: pd.Series) -> pd.Series:
    """The entities of one column as text (object dtype), None where missing; integral floats
    lose their ".0" so that a column read with and without gaps names the same entities."""
    if pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        integral = np.isfinite(values) & (values == np.round(values))
        text = [None if np.isnan(v) else f"{v:.0f}" if whole else repr(float(v)) for v, whole in zip(values, integral)]
    else:
        values = series.to_numpy(dtype=object)
        text = [None if gap else v if isinstance(v, str) else str(v) for v, gap in zip(values, pd.isna(values))]
    # Object dtype: pandas' Arrow-backed strings cannot hold text that is not valid Unicode,
    # which `_entities` reports by row instead.
    return pd.Series(text, index=series.index, dtype=object)


def not_unicode(values) -> int | None:
    """The position of the first text that is not valid Unicode (a lone surrogate), or None."""
    for i, v in enumerate(values):
        if isinstance(v, str) and not v.isascii():
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return i
    return None


class EventEncoder:
    """Fits one vocabulary per entity column; `transform` gives an n x m int64 code matrix."""

    def __init__(self, columns: list[str] | None = None, min_count: int = 0, allow_missing: bool = False):
        self.columns = columns
        self.min_count = min_count
        self.allow_missing = allow_missing

    def fit(self, frame: pd.DataFrame, name: str = "data") -> "EventEncoder":
        if isinstance(self.min_count, bool) or not isinstance(self.min_count, (int, np.integer)) or self.min_count < 0:
            raise DataError(f"min_count must be a whole number >= 0, got {self.min_count!r}")
        columns = list(frame.columns) if self.columns is None else list(self.columns)
        self._check_columns(frame, columns, name)
        if len(columns) < 2:
            raise DataError(f"{name}: events need at least 2 entity columns to pair up, got {columns}")
        self.columns_ = columns
        self.vocab_: list[list[str]] = []
        self.counts_: list[np.ndarray] = []
        for column in columns:
            counts = self._entities(frame, column, name).value_counts(sort=False)
            kept = counts[counts > self.min_count]
            # Most frequent first, ties by name: the same data always gives the same codes.
            order = sorted(zip(-kept.to_numpy(), kept.index.astype(str)))
            self.vocab_.append([entity for _, entity in order])
            # Code 0 counts the rare training entities folded into the unseen slot.
            rare = int(counts.sum() - kept.sum())
            self.counts_.append(np.array([rare, *(-c for c, _ in order)], dtype=np.float64))
        return self

    def transform(self, frame: pd.DataFrame, name: str = "data") -> np.ndarray:
        self._check_columns(frame, self.columns_, name)
        codes = np.empty((len(frame), len(self.columns_)), dtype=np.int64)
        for j, column in enumerate(self.columns_):
            entities = self._entities(frame, column, name)
            # get_indexer gives -1 for an entity outside the vocabulary: +1 makes it code 0.
            codes[:, j] = pd.Index(self.vocab_[j], dtype=object).get_indexer(entities.to_numpy()) + 1
        return codes

    def entities(self, frame: pd.DataFrame, name: str = "data") -> np.ndarray:
        """The events' entities as text (n x m), for explanations."""
        return np.stack([self._entities(frame, c, name).to_numpy(dtype=object) for c in self.columns_], axis=1)

    def _entities(self, frame: pd.DataFrame, column: str, name: str) -> pd.Series:
        text = entity_text(frame[column])
        bad = not_unicode(text.to_numpy())
        if bad is not None:
            raise DataError(f"{name}: column {column!r} at row {text.index[bad]} holds {text.iloc[bad]!r}, which is "
                            "not valid Unicode text (a lone surrogate); entities must be text")
        missing = text.isna().to_numpy()
        if missing.any():
            if not self.allow_missing:
                row = text.index[np.flatnonzero(missing)[0]]
                raise DataError(f"{name}: column {column!r} has no entity at row {row} ({int(missing.sum())} "
                                f"missing in all); fill it, or fit with allow_missing=True to treat a gap as "
                                f"the entity {MISSING!r}")
            text = text.where(~missing, MISSING)
        return text

    @staticmethod
    def _check_columns(frame: pd.DataFrame, columns: list[str], name: str) -> None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise DataError(f"{name}: missing entity column(s) {', '.join(map(str, missing))}; expected "
                            f"{', '.join(map(str, columns))} (found {', '.join(map(str, frame.columns))})")
        duplicated = sorted({c for c in columns if columns.count(c) > 1})
        if duplicated:
            raise DataError(f"entity column(s) named twice: {', '.join(duplicated)}")

    # --- model file ----------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays = {f"counts.{j}": counts for j, counts in enumerate(self.counts_)}
        return arrays, {"columns": self.columns_, "vocab": self.vocab_}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict, min_count: int,
                   allow_missing: bool) -> "EventEncoder":
        columns, vocab = meta.get("columns"), meta.get("vocab")
        if not (isinstance(columns, list) and isinstance(vocab, list) and len(columns) == len(vocab) >= 2
                and all(isinstance(c, str) for c in columns)
                and all(isinstance(v, list) and all(isinstance(e, str) for e in v) for v in vocab)):
            raise ModelFileError("model state: the event columns and vocabularies are missing or malformed")
        expect_arrays(arrays, {f"counts.{j}": (len(v) + 1,) for j, v in enumerate(vocab)})
        encoder = cls(list(columns), min_count, allow_missing)
        encoder.columns_, encoder.vocab_ = list(columns), [list(v) for v in vocab]
        encoder.counts_ = [arrays[f"counts.{j}"] for j in range(len(columns))]
        return encoder
