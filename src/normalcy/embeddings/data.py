"""Reading embeddings: an `embedding` column of float lists (Parquet, Arrow, pandas) or an
n x dim matrix, with the source text in an optional `content` column.

The detectors take any of: an n x dim array, a pandas DataFrame or pyarrow Table with an
`embedding` column (and `content` for the detectors that re-embed the text), a `Vectors`, or
the path of a .parquet file holding such a table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError

EMBEDDING, CONTENT = "embedding", "content"
# Scoring counts a value beyond this magnitude as this value: no embedding model makes one, it
# is anomalous anyway, and the statistics stay finite. Training vectors must stay within it.
MAX_VALUE = 1e6


@dataclass
class Vectors:
    """Embeddings as the detectors use them: a finite float64 n x dim matrix, and the source
    text of each row where known."""

    matrix: np.ndarray
    content: list[str] | None = None

    def __len__(self) -> int:
        return len(self.matrix)

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]


@dataclass
class ListColumn:
    """A list column taken apart: the values of all valid rows end to end, each row's start
    and length in them, and which rows are present (not null)."""

    values: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    valid: np.ndarray
    has_null: np.ndarray  # rows holding a missing (null) value
    value_type: object  # the Arrow type of the values

    def matrix(self, where: str) -> np.ndarray:
        """The rows as an n x dim matrix; DataError naming the first row that is missing or of
        another length."""
        if not self.valid.all():
            raise DataError(f"{where}: row {int(np.flatnonzero(~self.valid)[0])} has no embedding")
        if self.has_null.any():
            raise DataError(f"{where}: embedding {int(np.flatnonzero(self.has_null)[0])} holds a missing (null) value")
        if len(self.lengths) == 0:
            raise DataError(f"{where}: no embeddings")
        dim = int(self.lengths[0])
        odd = np.flatnonzero(self.lengths != dim)
        if odd.size:
            raise DataError(f"{where}: row {int(odd[0])} has {int(self.lengths[odd[0]])} values, row 0 has {dim}; "
                            "every embedding must have the same size")
        if dim == 0:
            raise DataError(f"{where}: the embeddings are empty lists")
        return self.values.reshape(len(self.lengths), dim)


def list_column(table, name: str, where: str) -> ListColumn:
    """The list column `name` of a pyarrow Table, taken apart (see ListColumn)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if name not in table.column_names:
        raise DataError(f"{where} has no {name!r} column; columns are {', '.join(table.column_names) or '(none)'}")
    column = table.column(name)
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not (pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
            or pa.types.is_fixed_size_list(array.type)):
        raise DataError(f"{where}: column {name!r} holds {array.type}, expected lists of numbers")
    value_type = array.type.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise DataError(f"{where}: column {name!r} holds lists of {value_type}, expected lists of numbers")
    flat = array.flatten()  # the values of the valid rows, slicing accounted for
    values = flat.to_numpy(zero_copy_only=False)
    lengths = pc.list_value_length(array).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    has_null = np.zeros(len(lengths), dtype=bool)
    if flat.null_count:
        missing = np.flatnonzero(flat.is_null().to_numpy(zero_copy_only=False))
        has_null[np.searchsorted(ends, missing, side="right")] = True
    return ListColumn(values, starts, lengths, valid, has_null, value_type)


def read_parquet(path: str | Path):
    """A Parquet file as a pyarrow Table; DataError naming the file when it cannot be read."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} does not exist or is not a file")
    if path.suffix.lower() != ".parquet":
        raise DataError(f"{path}: expected a .parquet file with an {EMBEDDING!r} column")
    try:
        return pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise DataError(f"{path} is not a readable Parquet file: {exc}") from None


def write_parquet(table, out: str | Path) -> None:
    """Write `table` to `out` whole or not at all (a temporary sibling renamed into place)."""
    import os
    import tempfile

    import pyarrow.parquet as pq

    from normalcy.core.benchmark import current_umask

    out = Path(out)
    if out.suffix.lower() != ".parquet":
        raise DataError(f"{out}: the output must be a .parquet file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=".parquet", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_vectors(X, need_content: bool = False, fitting: bool = False) -> Vectors:
    """Vectors from any input the detectors take (see the module notes). `need_content`:
    the source texts are required. `fitting`: values beyond MAX_VALUE are refused rather than
    clipped."""
    if isinstance(X, Vectors):
        vectors = Vectors(_finite(X.matrix, "the embeddings", fitting), _texts(X.content, "the embeddings"))
    elif isinstance(X, (str, Path)):
        vectors = _from_table(read_parquet(X), str(X), fitting)
    elif _is_arrow_table(X):
        vectors = _from_table(X, "the table", fitting)
    elif hasattr(X, "iloc") and hasattr(X, "columns"):
        vectors = _from_frame(X, fitting)
    elif isinstance(X, (np.ndarray, list, tuple)):
        vectors = Vectors(_finite(_numbers(X), "the embeddings", fitting))
    else:
        raise DataError(f"expected embeddings: an n x dim array, a table with an {EMBEDDING!r} column or a .parquet "
                        f"file, got {type(X).__name__}")
    if need_content and vectors.content is None:
        raise DataError(f"this detector compares each vector with its source text: give a {CONTENT!r} column")
    return vectors


def _from_table(table, where: str, fitting: bool) -> Vectors:
    matrix = list_column(table, EMBEDDING, where).matrix(where)
    content = table.column(CONTENT).to_pylist() if CONTENT in table.column_names else None
    return Vectors(_finite(matrix, where, fitting), _texts(content, where))


def _from_frame(frame, fitting: bool) -> Vectors:
    if EMBEDDING not in frame.columns:
        raise DataError(f"the table has no {EMBEDDING!r} column; columns are "
                        f"{', '.join(map(str, frame.columns)) or '(none)'}")
    rows = list(frame[EMBEDDING])
    if not rows:
        raise DataError("no embeddings")
    sizes = set()
    for i, row in enumerate(rows):
        if row is None or np.ndim(row) != 1:
            raise DataError(f"row {i} of column {EMBEDDING!r} is {row!r:.60}, not a list of numbers")
        sizes.add(len(row))
        if len(sizes) > 1:
            raise DataError(f"row {i} has {len(row)} values, row 0 has {len(rows[0])}; every embedding must have "
                            "the same size")
    content = list(frame[CONTENT]) if CONTENT in frame.columns else None
    return Vectors(_finite(_numbers(rows), "the table", fitting), _texts(content, "the table"))


def _numbers(X) -> np.ndarray:
    try:
        matrix = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError("expected embeddings as numbers: an n x dim array of floats") from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise DataError(f"expected a non-empty n x dim matrix of embeddings, got shape {matrix.shape}")
    return matrix


def _finite(matrix, where: str, fitting: bool) -> np.ndarray:
    matrix = _numbers(matrix)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise DataError(f"{where}: embedding {int(np.flatnonzero(bad)[0])} holds NaN or infinity")
    big = np.abs(matrix) > MAX_VALUE
    if big.any():
        if fitting:
            raise DataError(f"{where}: training embedding {int(np.flatnonzero(big.any(axis=1))[0])} holds a value "
                            f"beyond +-{MAX_VALUE:g}; no embedding model makes one, so it cannot be normal")
        matrix = np.clip(matrix, -MAX_VALUE, MAX_VALUE)
    return np.ascontiguousarray(matrix)


def _texts(content, where: str) -> list[str] | None:
    if content is None:
        return None
    texts = list(content)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{where}: {CONTENT!r} of row {i} is {text!r:.60}, not a text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise DataError(f"{where}: {CONTENT!r} of row {i} is not valid Unicode (a lone surrogate)") from None
    return texts


def _is_arrow_table(X) -> bool:
    module = type(X).__module__
    return module.startswith("pyarrow") and hasattr(X, "column_names")
