"""Signing and verifying a table of embeddings (Parquet or Arrow), row by row.

`sign_table` keeps every input column as it is and adds the signature columns beside the
vectors:

| column | type | what |
|---|---|---|
| content_sha256 | string | hex SHA-256 of the content's UTF-8 bytes (kept if given) |
| model_id | string | the model that made the embedding |
| pin_key | string | the signing key's id (16 hex digits of SHA-256 of the public key) |
| pin_vector_sha256 | binary | SHA-256 of the vector's little-endian values |
| pin_leaf, pin_leaves | int32 | the row's place in its signed batch |
| pin_proof | binary | the row's audit path (32 bytes a level) |
| pin_signature | binary | Ed25519 signature over the batch's root |

and, in the Parquet schema's metadata under `normalcy.pin`, the JSON
`{"format": "normalcy-pin/1", "column": ..., "dtype": "<f4", "dim": 384,
"metadata_columns": [...]}`. dtype, dim and the metadata columns' names and values are inside
every signed header (`normalcy.embeddings.pin`), so changing them fails every row.

`verify_table` says, for each row that fails, why: the embedding changed, the content
changed, the signed fields or proof were altered, another key signed it, or a field is
missing. Rows deleted from a file, and whole signed rows copied in from another file signed
with the same key, are not detected: bind a row id with `metadata_columns` to tie a row to
its id.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from normalcy.core.errors import DataError
from normalcy.embeddings import pin
from normalcy.embeddings.data import CONTENT, EMBEDDING, ListColumn, list_column

SCHEMA_KEY = b"normalcy.pin"
FORMAT = "normalcy-pin/1"
CONTENT_SHA256 = "content_sha256"
PIN_COLUMNS = ("model_id", "pin_key", "pin_vector_sha256", "pin_leaf", "pin_leaves", "pin_proof", "pin_signature")


@dataclass
class Verification:
    """The outcome of verifying a table: rows, and (row, reason) for each that failed.
    `problem` is set when the whole table cannot be verified (every row fails for it)."""

    n_rows: int
    failures: list[tuple[int, str]] = field(default_factory=list)
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures and self.problem is None

    def by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, reason in self.failures:
            counts[reason] = counts.get(reason, 0) + 1
        return counts


def sign_table(table, private_key, model_id: str, column: str = EMBEDDING, content_column: str = CONTENT,
               metadata_columns: tuple[str, ...] = (), batch_size: int = pin.BATCH_SIZE, where: str = "the table"):
    """`table` with the signature columns added (see the module notes)."""
    import pyarrow as pa

    taken = [c for c in PIN_COLUMNS if c in table.column_names]
    if taken:
        raise DataError(f"{where} already has column(s) {', '.join(taken)}: is it signed already? Sign the "
                        "unsigned vectors")
    vectors = list_column(table, column, where)
    if not (pa.types.is_float32(vectors.value_type) or pa.types.is_float64(vectors.value_type)):
        raise DataError(f"{where}: column {column!r} holds lists of {vectors.value_type}; sign float32 or float64 "
                        "embeddings as the model made them")
    matrix = vectors.matrix(where)
    hashes, hex_column = _content_hashes(table, content_column, where)
    metadata = _metadata_rows(table, metadata_columns, where) if metadata_columns else None
    try:
        pins = pin.sign(matrix, hashes, model_id, private_key, metadata, batch_size)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None
    n = table.num_rows
    added = {"model_id": pa.array([model_id] * n, pa.string()),
             "pin_key": pa.array([pins.key_id] * n, pa.string()),
             "pin_vector_sha256": pa.array(pins.vector_sha256, pa.binary()),
             "pin_leaf": pa.array(pins.leaf, pa.int32()), "pin_leaves": pa.array(pins.leaves, pa.int32()),
             "pin_proof": pa.array(pins.proof, pa.binary()), "pin_signature": pa.array(pins.signature, pa.binary())}
    if hex_column is not None:
        table = table.append_column(CONTENT_SHA256, pa.array(hex_column, pa.string()))
    for name, values in added.items():
        table = table.append_column(name, values)
    description = {"format": FORMAT, "column": column, "dtype": "<f4" if matrix.dtype == np.float32 else "<f8",
                   "dim": int(matrix.shape[1]), "content_column": content_column,
                   "metadata_columns": list(metadata_columns)}
    return table.replace_schema_metadata({**(table.schema.metadata or {}), SCHEMA_KEY: json.dumps(description)})


def verify_table(table, public_key) -> Verification:
    """Check every row's signature (see the module notes); never raises on what a row holds."""
    n = table.num_rows
    description, problem = _description(table)
    if problem is None:
        missing = [c for c in (*PIN_COLUMNS, CONTENT_SHA256, description["column"], *description["metadata_columns"])
                   if c not in table.column_names]
        if missing:
            problem = f"column(s) {', '.join(missing)} are missing"
    if problem is None:
        try:
            vectors = list_column(table, description["column"], "the table")
        except DataError as exc:
            problem = str(exc)
    if problem is not None:
        return Verification(n, [(i, problem) for i in range(n)], problem)
    rows = _row_bytes(vectors, description["dtype"], description["dim"])
    content_hashes = [unhex(v) for v in table.column(CONTENT_SHA256).to_pylist()]
    pins = pin.Pins(key_id=_strings(table, "pin_key"),
                    vector_sha256=table.column("pin_vector_sha256").to_pylist(),
                    leaf=_ints(table, "pin_leaf"), leaves=_ints(table, "pin_leaves"),
                    proof=table.column("pin_proof").to_pylist(), signature=table.column("pin_signature").to_pylist())
    metadata = None
    if description["metadata_columns"]:
        columns = {c: table.column(c).to_pylist() for c in description["metadata_columns"]}
        metadata = [{c: values[i] for c, values in columns.items()} for i in range(n)]
    reasons = pin.verify(rows, description["dtype"], description["dim"], content_hashes, _strings(table, "model_id"),
                         pins, public_key, metadata)
    content_column = description["content_column"]
    if content_column in table.column_names:
        for i, text in enumerate(table.column(content_column).to_pylist()):
            if reasons[i] is None:
                reasons[i] = content_reason(text, content_hashes[i])
    return Verification(n, [(i, r) for i, r in enumerate(reasons) if r is not None])


def _description(table) -> tuple[dict | None, str | None]:
    raw = (table.schema.metadata or {}).get(SCHEMA_KEY)
    if raw is None:
        return None, "the table carries no signature description (Parquet schema metadata 'normalcy.pin'): it " \
                     "was not signed by `normalcy embeddings sign`, or its metadata was stripped"
    try:
        description = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "the signature description (schema metadata 'normalcy.pin') is not valid JSON"
    ok = (isinstance(description, dict) and description.get("format") == FORMAT
          and description.get("dtype") in pin.DTYPES
          and isinstance(description.get("dim"), int) and 1 <= description["dim"] <= pin.MAX_DIM
          and isinstance(description.get("column"), str) and isinstance(description.get("content_column"), str)
          and isinstance(description.get("metadata_columns"), list)
          and all(isinstance(c, str) for c in description["metadata_columns"]))
    if not ok:
        return None, f"the signature description (schema metadata 'normalcy.pin') is not one of format {FORMAT}"
    return description, None


def _row_bytes(vectors: ListColumn, dtype: str, dim: int) -> list:
    """Each row's values as little-endian bytes of the signed dtype, or why they cannot be."""
    target = pin.DTYPES[dtype]
    canonical = np.ascontiguousarray(vectors.values, dtype=target)
    inexact = np.zeros(len(vectors.lengths), dtype=bool)
    if vectors.values.dtype != target:  # stored as another type: only exact conversions are the signed values
        with np.errstate(invalid="ignore"):
            exact = (canonical.astype(np.float64) == vectors.values.astype(np.float64)) | np.isnan(vectors.values)
        if not exact.all():
            ends = vectors.starts + vectors.lengths
            inexact[np.searchsorted(ends, np.flatnonzero(~exact), side="right")] = True
    buffer = memoryview(canonical).cast("B")
    size = target.itemsize
    rows: list = [buffer[a:b] for a, b in zip((vectors.starts * size).tolist(),
                                              ((vectors.starts + vectors.lengths) * size).tolist())]
    bad = ~vectors.valid | vectors.has_null | (vectors.lengths != dim) | inexact
    for i in np.flatnonzero(bad).tolist():
        if not vectors.valid[i]:
            rows[i] = "the embedding is missing (null)"
        elif vectors.has_null[i]:
            rows[i] = "the embedding holds a missing (null) value"
        elif vectors.lengths[i] != dim:
            rows[i] = f"embedding changed since signing: it has {vectors.lengths[i]} values, signed with {dim}"
        else:
            rows[i] = f"embedding changed since signing: its values are not the {dtype} numbers that were signed"
    return rows


def _content_hashes(table, content_column: str, where: str) -> tuple[list[bytes], list[str] | None]:
    """Each row's content SHA-256 (32 bytes), from the content_sha256 column (hex) or the
    content column; and the hex column to add, None when content_sha256 is given."""
    have_hash, have_content = CONTENT_SHA256 in table.column_names, content_column in table.column_names
    if not have_hash and not have_content:
        raise DataError(f"{where} needs a {content_column!r} column (the source text) or a {CONTENT_SHA256!r} "
                        "column (its SHA-256 in hex)")
    computed = None
    if have_content:
        texts = table.column(content_column).to_pylist()
        computed = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError(f"{where}: {content_column!r} of row {i} is {text!r:.60}, not a text")
            try:
                computed.append(hashlib.sha256(text.encode("utf-8")).digest())
            except UnicodeEncodeError:
                raise DataError(f"{where}: {content_column!r} of row {i} is not valid Unicode") from None
    if not have_hash:
        return computed, [h.hex() for h in computed]
    given = table.column(CONTENT_SHA256).to_pylist()
    hashes = []
    for i, value in enumerate(given):
        digest = unhex(value)
        if digest is None:
            raise DataError(f"{where}: {CONTENT_SHA256!r} of row {i} is {value!r:.80}, not 64 hex digits")
        if computed is not None and digest != computed[i]:
            raise DataError(f"{where}: row {i}'s {CONTENT_SHA256} is not the SHA-256 of its {content_column!r}")
        hashes.append(digest)
    return hashes, None


def _metadata_rows(table, columns: tuple[str, ...], where: str) -> list[dict]:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"{where} has no metadata column(s) {', '.join(missing)}")
    clash = [c for c in columns if c in PIN_COLUMNS or c == CONTENT_SHA256]
    if clash:
        raise DataError(f"metadata column(s) {', '.join(clash)} are signature columns already")
    values = {c: table.column(c).to_pylist() for c in columns}
    rows = [{c: values[c][i] for c in columns} for i in range(table.num_rows)]
    for i, row in enumerate(rows):
        try:
            pin.metadata_part(row)
        except DataError as exc:
            raise DataError(f"{where}: row {i}: {exc}") from None
    return rows


def content_reason(text, signed: bytes | None) -> str | None:
    if not isinstance(text, str):
        return "the content is missing or not a text"
    try:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
    except UnicodeEncodeError:
        return "the content is not valid Unicode"
    if digest != signed:
        return "content changed since signing: its SHA-256 is not the signed content hash"
    return None


def unhex(value) -> bytes | None:
    if not isinstance(value, str) or len(value) != 2 * pin.HASH_BYTES:
        return None
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def _strings(table, name: str) -> list:
    return [v if isinstance(v, str) else None for v in table.column(name).to_pylist()]


def _ints(table, name: str) -> list:
    return [v if isinstance(v, int) and not isinstance(v, bool) else None for v in table.column(name).to_pylist()]
