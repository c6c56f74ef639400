"""Signing and verifying embeddings over HTTP: the JSON bodies of `POST /v2/embeddings/sign`
and `POST /v2/embeddings/verify` (`normalcy serve --signing-key KEY`), read and answered here,
with no web framework, by `normalcy.embeddings.pin` (docs/serving.md, docs/embeddings.md).

Sign request:

    {"model_id": "all-MiniLM-L6-v2",          one for all rows, or a list with one per row
     "embeddings": [[0.1, ...], ...],         n x dim numbers
     "content": ["text", ...]                 the source texts, or
     "content_sha256": ["64 hex digits", ...] their SHA-256 (either or both)
     "metadata": [{"id": 7}, ...],            optional, per row (null for none)
     "dtype": "float32"}                      the signed number type: float32 (default) or float64

JSON numbers are rounded to `dtype` (nearest), at signing as at verifying, so a float32 sent as
its exact decimal or its shortest one is the same signed value. The answer is the signature
columns, one entry per row: `{"key_id", "dtype", "dim", "content_sha256": [hex],
"vector_sha256": [hex], "leaf": [int], "leaves": [int], "proof": [base64],
"signature": [base64]}` (as `normalcy embeddings sign` stores them beside the vectors).

Verify request: the sign request's fields (with `dtype` and the `content_sha256` that sign
returned; `content` too to check the texts) plus `key_id`, `vector_sha256`, `leaf`, `leaves`,
`proof` and `signature` as sign returned them. The answer: `{"ok", "n", "failures",
"verified": [bool], "reasons": [null or why]}`, a 200 whatever the verdicts; a request that
cannot be read at all (a missing field, a row count that differs) is a 400.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math

import numpy as np

from normalcy.core.errors import DataError
from normalcy.embeddings import pin
from normalcy.embeddings.store import content_reason, unhex

DTYPES = {"float32": "<f4", "float64": "<f8"}
NUMBER_TYPES = {float, int}


class SigningService:
    """The keys a server signs and verifies with (either may be None) and its row limit."""

    def __init__(self, private_key=None, public_key=None, max_rows: int = 200_000):
        if private_key is None and public_key is None:
            raise DataError("signing endpoints need a signing key or a verify key")
        self.private_key = private_key
        self.public_key = public_key if public_key is not None else private_key.public_key()
        self.key_id = pin.key_id(self.public_key)
        self.max_rows = max_rows

    def sign(self, body) -> dict:
        if self.private_key is None:
            raise DataError("this server has no signing key (start it with --signing-key KEY); it only verifies")
        body = _object(body)
        dtype = _dtype(body)
        matrix = _matrix(body, dtype, self.max_rows)
        n = len(matrix)
        hashes = _content_hashes(body, n)
        pins = pin.sign(matrix, hashes, _model_ids(body, n), self.private_key, _metadata(body, n),
                        _batch_size(body), dtype)
        return {"key_id": pins.key_id, "dtype": _name(dtype), "dim": int(matrix.shape[1]),
                "content_sha256": [h.hex() for h in hashes],
                "vector_sha256": [h.hex() for h in pins.vector_sha256], "leaf": pins.leaf, "leaves": pins.leaves,
                "proof": [_b64(p) for p in pins.proof], "signature": [_b64(s) for s in pins.signature]}

    def verify(self, body) -> dict:
        body = _object(body)
        dtype = _dtype(body)
        matrix = _matrix(body, dtype, self.max_rows)
        n, dim = matrix.shape
        texts = body.get("content")
        if body.get("content_sha256") is not None:  # the signed hashes; a malformed one fails its row
            signed = [unhex(v) for v in _list(body, "content_sha256", n)]
        else:  # only the texts: their hashes go into the signed header
            signed = _content_hashes(body, n)
            texts = None
        keys = body.get("key_id")
        if isinstance(keys, list):
            keys = _list(body, "key_id", n)
        elif not isinstance(keys, str):
            raise DataError("'key_id' must be the signing key's id as sign returned it (or a list, one per embedding)")
        pins = pin.Pins(key_id=keys,
                        vector_sha256=[unhex(v) for v in _list(body, "vector_sha256", n)],
                        leaf=[_int(v) for v in _list(body, "leaf", n)],
                        leaves=[_int(v) for v in _list(body, "leaves", n)],
                        proof=[_unb64(v) for v in _list(body, "proof", n)],
                        signature=[_unb64(v) for v in _list(body, "signature", n)])
        width = dim * matrix.itemsize
        flat = memoryview(matrix).cast("B")
        rows = [flat[i * width:(i + 1) * width] for i in range(n)]
        reasons = pin.verify(rows, dtype, dim, signed, _model_ids(body, n), pins, self.public_key,
                             _metadata(body, n))
        if texts is not None:
            texts = _list(body, "content", n)
            for i, text in enumerate(texts):
                if reasons[i] is None:
                    reasons[i] = content_reason(text, signed[i])
        failures = sum(r is not None for r in reasons)
        return {"ok": failures == 0, "n": n, "failures": failures, "verified": [r is None for r in reasons],
                "reasons": reasons}


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise DataError("the request body must be a JSON object with 'embeddings', 'model_id' and 'content' or "
                        "'content_sha256'")
    return body


def _dtype(body: dict) -> str:
    name = body.get("dtype", "float32")
    if name not in DTYPES:
        raise DataError(f"'dtype' must be one of {', '.join(DTYPES)}, got {name!r:.40}")
    return DTYPES[name]


def _name(dtype: str) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


def _matrix(body: dict, dtype: str, max_rows: int) -> np.ndarray:
    """'embeddings' as an n x dim matrix of `dtype`, refusing what cannot be signed."""
    rows = body.get("embeddings")
    if not isinstance(rows, list) or not rows:
        raise DataError("'embeddings' must be a non-empty list of vectors (lists of numbers)")
    if len(rows) > max_rows:
        raise DataError(f"'embeddings' has {len(rows)} vectors, over the limit of {max_rows} per request")
    dim = len(rows[0]) if isinstance(rows[0], list) else 0
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != dim or not dim:
            raise DataError(f"embedding {i} must be a list of {dim or 'some'} numbers like embedding 0, got "
                            f"{type(row).__name__}{f' of {len(row)}' if isinstance(row, list) else ''}")
        # type() rather than isinstance: bool is an int, and JSON's numbers are exactly float or int.
        if not set(map(type, row)) <= NUMBER_TYPES:
            j = next(j for j, v in enumerate(row) if type(v) not in NUMBER_TYPES)
            raise DataError(f"embedding {i}, value {j}: {row[j]!r:.40} is not a number")
    try:
        values = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer past float64's range
        values = np.asarray([[_float(v) for v in row] for row in rows])
    with np.errstate(over="ignore"):
        matrix = values.astype(pin.DTYPES[dtype])
    if not np.isfinite(matrix).all():
        i = int(np.flatnonzero(~np.isfinite(matrix).all(axis=1))[0])
        raise DataError(f"embedding {i} holds a value beyond the range of {_name(dtype)}")
    return np.ascontiguousarray(matrix)


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _list(body: dict, field: str, n: int) -> list:
    values = body.get(field)
    if not isinstance(values, list):
        raise DataError(f"'{field}' must be a list with one entry per embedding")
    if len(values) != n:
        raise DataError(f"'{field}' has {len(values)} entries for {n} embeddings; give one per embedding")
    return values


def _text(value, i: int) -> str:
    if not isinstance(value, str):
        raise DataError(f"content {i} must be a text, got {type(value).__name__}")
    return value


def _content_hashes(body: dict, n: int) -> list[bytes]:
    """Each row's content SHA-256: from 'content_sha256' (hex) when given, checked against
    'content' when both are; else from 'content'."""
    given, texts = body.get("content_sha256") is not None, body.get("content") is not None
    if not given and not texts:
        raise DataError("give 'content' (the source texts) or 'content_sha256' (their SHA-256 in hex)")
    computed = None
    if texts:
        computed = []
        for i, text in enumerate(_list(body, "content", n)):
            try:
                computed.append(hashlib.sha256(_text(text, i).encode("utf-8")).digest())
            except UnicodeEncodeError:
                raise DataError(f"content {i} is not valid text (it holds a lone surrogate)") from None
    if not given:
        return computed
    hashes = []
    for i, value in enumerate(_list(body, "content_sha256", n)):
        digest = unhex(value)
        if digest is None:
            raise DataError(f"content_sha256 {i} must be 64 hex digits, got {value!r:.80}")
        if computed is not None and digest != computed[i]:
            raise DataError(f"content_sha256 {i} is not the SHA-256 of content {i}")
        hashes.append(digest)
    return hashes


def _model_ids(body: dict, n: int) -> list:
    value = body.get("model_id")
    if isinstance(value, str):
        return [value] * n
    if isinstance(value, list):
        return _list(body, "model_id", n)
    raise DataError("'model_id' must be the embedding model's id (a string), or a list with one per embedding")


def _metadata(body: dict, n: int) -> list | None:
    if body.get("metadata") is None:
        return None
    rows = _list(body, "metadata", n)
    bad = next((i for i, m in enumerate(rows) if not (m is None or isinstance(m, dict))), None)
    if bad is not None:
        raise DataError(f"metadata {bad} must be an object or null, got {type(rows[bad]).__name__}")
    return rows


def _batch_size(body: dict) -> int:
    size = body.get("batch_size", pin.BATCH_SIZE)
    if not isinstance(size, int) or isinstance(size, bool):
        raise DataError(f"'batch_size' must be an integer, got {size!r:.40}")
    return size


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Unreadable signature fields become None: pin.verify reports them per row, not as a 400.
def _unb64(value) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _int(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
