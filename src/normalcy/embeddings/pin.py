"""Signed embeddings: an Ed25519 signature binds each vector to its source content and model,
so any change after embedding (noise, rotation, scaling, a single flipped bit) fails
verification. The idea is VectorPin's (VectorSmuggle paper); the byte layout is ours.

The canonical bytes of a row (its *pin header*), in this order:

    LEAF_DOMAIN        b"normalcy.embedding.v1\\x00" (22 bytes)
    dtype              3 ASCII bytes: "<f4" (float32) or "<f8" (float64), little-endian
    ndim, dim          1 byte (always 1), then dim as 4 bytes little-endian
    vector_sha256      32 bytes: SHA-256 of the dim values as little-endian dtype, in order
    content_sha256     32 bytes: SHA-256 of the source content (UTF-8 bytes of the text)
    model id           2-byte little-endian length, then its UTF-8 bytes (at most 1024)
    metadata           4-byte little-endian length, then canonical JSON (UTF-8, keys sorted,
                       no spaces, no NaN), or length 0 when there is none

One Ed25519 signature per row costs about 0.37 ms of CPU time (sign plus verify, 2,680 rows
per CPU second on the benchmark machine), too slow for a store of millions, so rows are
signed in batches: the leaves SHA-256(0x00 || header) of up to `batch_size` rows form a
Merkle tree (RFC 6962's shape: nodes SHA-256(0x01 || left || right), an odd node carried
up), and one signature covers ROOT_DOMAIN || the number of leaves (4 bytes little-endian) ||
the root. Each row keeps the batch's signature,
its leaf index, the number of leaves and its audit path (RFC 9162, section 2.1.3), so every
row verifies on its own (a row copied into a vector database alone still verifies) and a
changed row fails alone: the other rows' paths hold the original hashes. `batch_size=1`
gives one signature per row (no path).

Verification recomputes the header from the row's stored fields and checks the signature
over the root its path leads to (a batch whose rows are all present: over its rebuilt tree,
once); then it checks that the vector still hashes to the signed
vector_sha256, and (by the caller) that the content still hashes to content_sha256. So it
can say which part changed: the vector, the content, or the signed fields themselves.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from normalcy.core.errors import DataError
from normalcy.core.progress import progress

LEAF_DOMAIN = b"normalcy.embedding.v1\x00"
ROOT_DOMAIN = b"normalcy.embedding-root.v1\x00"
DTYPES = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8")}
HASH_BYTES, SIGNATURE_BYTES = 32, 64
BATCH_SIZE = 256  # rows per signature: a path of 8 hashes; signing work amortised to ~1 us/row
MAX_BATCH_SIZE = 2**16
MAX_MODEL_ID_BYTES = 1024
MAX_METADATA_BYTES = 2**16
MAX_DIM = 2**20

# Reasons a row fails, as `verify` reports them.
SIGNATURE_FAILS = ("signature does not verify: the signed fields (vector hash, content hash, model id, metadata) "
                   "or the row's proof were changed")
VECTOR_CHANGED = "embedding changed since signing: its values no longer hash to the signed vector hash"


@dataclass
class Pins:
    """The signature fields of n rows, as `sign` makes them and `verify` reads them."""

    key_id: str | list  # one for all rows, or per row
    vector_sha256: list[bytes]
    leaf: list[int]  # leaf index within the row's batch
    leaves: list[int]  # leaves in the row's batch
    proof: list[bytes]  # the audit path: sibling hashes, 32 bytes each, leaf to root
    signature: list[bytes]


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return hashlib.sha256(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def header_prefix(dtype: str, dim: int) -> bytes:
    """The leaf tag and the header's constant start: domain, dtype, shape."""
    if dtype not in DTYPES:
        raise DataError(f"embedding dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not 1 <= dim <= MAX_DIM:
        raise DataError(f"embedding size must be between 1 and {MAX_DIM}, got {dim}")
    return b"\x00" + LEAF_DOMAIN + dtype.encode("ascii") + struct.pack("<BI", 1, dim)


def model_part(model_id: str) -> bytes:
    if not isinstance(model_id, str) or not model_id:
        raise DataError(f"the model id must be a non-empty string, got {model_id!r:.80}")
    try:
        encoded = model_id.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"the model id {model_id!r:.80} is not valid Unicode") from None
    if len(encoded) > MAX_MODEL_ID_BYTES:
        raise DataError(f"the model id is {len(encoded)} bytes as UTF-8, over the limit of {MAX_MODEL_ID_BYTES}")
    return struct.pack("<H", len(encoded)) + encoded


def metadata_part(metadata: dict | None) -> bytes:
    """Length-prefixed canonical JSON of the metadata (str keys; values None, bool, int,
    finite float or str)."""
    if not metadata:
        return struct.pack("<I", 0)
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise DataError(f"metadata keys must be strings, got {key!r:.80}")
        if not (value is None or isinstance(value, (bool, int, str))
                or (isinstance(value, float) and math.isfinite(value))):
            raise DataError(f"metadata {key!r}: {value!r:.80} cannot be signed; values must be text, whole numbers, "
                            "finite numbers, true/false or empty")
    try:
        text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise DataError("metadata holds text that is not valid Unicode (a lone surrogate)") from None
    if len(text) > MAX_METADATA_BYTES:
        raise DataError(f"a row's metadata is {len(text)} bytes as JSON, over the limit of {MAX_METADATA_BYTES}")
    return struct.pack("<I", len(text)) + text


def canonical_matrix(vectors, dtype: str | None = None) -> tuple[np.ndarray, str]:
    """The vectors as a C-ordered little-endian float32/float64 n x dim matrix and its dtype
    code (the vectors' own float type unless `dtype` is given), refusing what cannot be signed:
    another number type, a wrong shape, NaN or infinity."""
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"expected a non-empty n x dim matrix of embeddings, got shape {array.shape}")
    if dtype is None:
        if array.dtype not in (np.float32, np.float64):
            raise DataError(f"embeddings must be float32 or float64 numbers, got {array.dtype}")
        dtype = "<f4" if array.dtype == np.float32 else "<f8"
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise DataError(f"embedding {int(np.flatnonzero(~finite)[0])} holds NaN or infinity; only finite vectors "
                        "can be signed")
    canonical = np.ascontiguousarray(array, dtype=DTYPES[dtype])
    if not np.array_equal(canonical, array):
        raise DataError(f"embeddings do not convert exactly to {dtype}")
    return canonical, dtype


def sign(vectors, content_sha256: Sequence[bytes], model_id: str | Sequence[str], private_key: Ed25519PrivateKey,
         metadata: Sequence[dict | None] | None = None, batch_size: int = BATCH_SIZE, dtype: str | None = None) -> Pins:
    """Sign n vectors (an n x dim float matrix) with their contents' SHA-256 digests (32 bytes
    each) and the model id (one for all, or one per row), and optional per-row metadata."""
    matrix, dtype = canonical_matrix(vectors, dtype)
    n, dim = matrix.shape
    if not (isinstance(batch_size, int) and not isinstance(batch_size, bool) and 1 <= batch_size <= MAX_BATCH_SIZE):
        raise DataError(f"batch_size must be an integer between 1 and {MAX_BATCH_SIZE}, got {batch_size!r}")
    if len(content_sha256) != n:
        raise DataError(f"{n} embeddings but {len(content_sha256)} content hashes")
    bad = next((i for i, h in enumerate(content_sha256) if not (isinstance(h, bytes) and len(h) == HASH_BYTES)), None)
    if bad is not None:
        raise DataError(f"content hash {bad} must be 32 bytes (a SHA-256 digest), got {content_sha256[bad]!r:.80}")
    models = _per_row(model_id, n, "model ids")
    metas = _per_row(metadata, n, "metadata rows")
    prefix = header_prefix(dtype, dim)
    model_parts = {m: model_part(m) for m in set(models)}
    meta_parts = [metadata_part(m) for m in metas] if metadata is not None else None
    empty_meta = metadata_part(None)
    rows = memoryview(matrix).cast("B")
    width = dim * matrix.itemsize  # not strides[0]: a one-row view may have stride 0
    sha256 = hashlib.sha256
    vector_hashes = [sha256(rows[i * width:(i + 1) * width]).digest() for i in range(n)]
    leaves = [sha256(prefix + vector_hashes[i] + content_sha256[i] + model_parts[models[i]]
                     + (meta_parts[i] if meta_parts is not None else empty_meta)).digest() for i in range(n)]
    leaf_index, sizes = [0] * n, [0] * n
    proofs: list[bytes] = [b""] * n
    signatures: list[bytes] = [b""] * n
    starts = range(0, n, batch_size)
    for start in progress(starts, desc="signing", unit="batch", total=len(starts)):
        batch = leaves[start:start + batch_size]
        size = len(batch)
        levels = _levels(batch)
        paths, ends = _audit_paths(levels)
        proofs[start:start + size] = [paths[a:b] for a, b in zip([0, *ends[:-1]], ends)]
        signatures[start:start + size] = [private_key.sign(root_message(size, levels[-1][0]))] * size
        leaf_index[start:start + size] = range(size)
        sizes[start:start + size] = [size] * size
    return Pins(key_id(private_key.public_key()), vector_hashes, leaf_index, sizes, proofs, signatures)


def verify(rows: Sequence, dtype: str, dim: int, content_sha256: Sequence, model_id: Sequence, pins: Pins,
           public_key: Ed25519PublicKey, metadata: Sequence[dict | None] | None = None) -> list[str | None]:
    """Per row, None when it verifies, else why not. `rows` holds each row's values as bytes
    in the signed dtype (little-endian), or a str saying why they could not be read.

    A batch whose rows are all present is checked at once: its tree is rebuilt from the
    leaves, its signature checked over that root and each row's proof compared with the
    rebuilt path. Otherwise (rows missing, or the batch fails) each row's own path is
    followed, so a failure names only the rows that changed."""
    prefix = header_prefix(dtype, dim)
    expected_key = key_id(public_key)
    itemsize = DTYPES[dtype].itemsize
    model_parts: dict = {}
    sha256 = hashlib.sha256
    n = len(rows)
    reasons: list[str | None] = [None] * n
    leaf_hashes: list[bytes | None] = [None] * n
    batches: dict[tuple, list[int]] = {}  # (signature, leaves) -> rows
    keys = [pins.key_id] * n if isinstance(pins.key_id, str) else pins.key_id
    vector_hashes, proofs, signatures = pins.vector_sha256, pins.proof, pins.signature
    no_metadata = metadata_part(None)
    for i in range(n):
        vector_hash, content_hash, proof, signature = vector_hashes[i], content_sha256[i], proofs[i], signatures[i]
        leaf, leaves, model = pins.leaf[i], pins.leaves[i], model_id[i]
        part = model_parts.get(model)
        if (part is None or keys[i] != expected_key or type(vector_hash) is not bytes or len(vector_hash) != HASH_BYTES
                or type(content_hash) is not bytes or len(content_hash) != HASH_BYTES
                or type(signature) is not bytes or len(signature) != SIGNATURE_BYTES
                or type(proof) is not bytes or len(proof) % HASH_BYTES or len(proof) > 32 * HASH_BYTES
                or type(leaf) is not int or type(leaves) is not int or not 0 <= leaf < leaves <= MAX_BATCH_SIZE):
            reasons[i] = _unreadable(i, keys[i], expected_key, content_sha256, model, pins, model_parts)
            if reasons[i] is not None:
                continue
            part = model_parts[model]
        if metadata is None:
            meta = no_metadata
        else:
            try:
                meta = metadata_part(metadata[i])
            except DataError as exc:
                reasons[i] = str(exc)
                continue
        leaf_hashes[i] = sha256(prefix + vector_hash + content_hash + part + meta).digest()
        batches.setdefault((signature, leaves), []).append(i)
    checked: dict[tuple, bool] = {}  # (signature, leaves, root) -> the signature verifies
    for (signature, size), members in batches.items():
        if not _whole_batch(members, size, signature, pins, leaf_hashes, reasons, checked, public_key):
            for i in members:
                root = root_from_path(leaf_hashes[i], pins.leaf[i], size, pins.proof[i])
                if root is None or not _signed(signature, size, root, checked, public_key):
                    reasons[i] = SIGNATURE_FAILS
    for i, values in enumerate(rows):
        if reasons[i] is not None:
            continue
        if isinstance(values, str):
            reasons[i] = values
        elif len(values) != dim * itemsize:
            reasons[i] = f"embedding has {len(values) // itemsize} values, signed with {dim}"
        elif sha256(values).digest() != pins.vector_sha256[i]:
            reasons[i] = VECTOR_CHANGED
    return reasons


def _unreadable(i, key, expected_key, content_sha256, model, pins, model_parts) -> str | None:
    """Why row i's signature fields cannot be checked, or None when they can (the model id's
    header part is then in `model_parts`)."""
    if key is None:
        return "its key id (pin_key) is missing"
    if key != expected_key:
        return f"signed with key {key!r:.40}, not with the given public key ({expected_key})"
    vector_hash, content_hash = pins.vector_sha256[i], content_sha256[i]
    proof, signature, leaf, leaves = pins.proof[i], pins.signature[i], pins.leaf[i], pins.leaves[i]
    if not (isinstance(vector_hash, bytes) and len(vector_hash) == HASH_BYTES):
        return "its signed vector hash is missing or not 32 bytes"
    if not (isinstance(content_hash, bytes) and len(content_hash) == HASH_BYTES):
        return "its content hash is missing or not a SHA-256 digest"
    if not (isinstance(signature, bytes) and len(signature) == SIGNATURE_BYTES):
        return "its signature is missing or not 64 bytes"
    if not (isinstance(proof, bytes) and len(proof) % HASH_BYTES == 0 and len(proof) <= 32 * HASH_BYTES):
        return "its proof is missing or not a whole number of 32-byte hashes"
    if not (isinstance(leaf, int) and isinstance(leaves, int) and 0 <= leaf < leaves <= MAX_BATCH_SIZE):
        return f"its leaf index {leaf} and batch size {leaves} are not a position in a batch"
    if model not in model_parts:
        try:
            model_parts[model] = model_part(model)
        except DataError as exc:
            return str(exc)
    return None


def _whole_batch(members, size, signature, pins, leaf_hashes, reasons, checked, public_key) -> bool:
    """Check a batch whose every leaf is present through its rebuilt tree; False when it is
    incomplete or its root is not the signed one (then each row is checked on its own)."""
    if len(members) != size:
        return False
    by_index = {pins.leaf[i]: i for i in members}
    if len(by_index) != size:
        return False
    order = [by_index[j] for j in range(size)]
    levels = _levels([leaf_hashes[i] for i in order])
    if not _signed(signature, size, levels[-1][0], checked, public_key):
        return False
    paths, ends = _audit_paths(levels)
    stored = [pins.proof[i] for i in order]
    if b"".join(stored) != paths or [len(p) for p in stored] != np.diff(ends, prepend=0).tolist():
        for j, i in enumerate(order):
            if stored[j] != _audit_path(levels, j):
                reasons[i] = "its proof was changed (the signed fields are intact)"
    return True


def _signed(signature: bytes, size: int, root: bytes, checked: dict, public_key: Ed25519PublicKey) -> bool:
    key = (signature, size, root)
    ok = checked.get(key)
    if ok is None:
        try:
            public_key.verify(signature, root_message(size, root))
            ok = True
        except InvalidSignature:
            ok = False
        checked[key] = ok
    return ok


def root_message(leaves: int, root: bytes) -> bytes:
    return ROOT_DOMAIN + struct.pack("<I", leaves) + root


def root_from_path(leaf: bytes, index: int, size: int, proof: bytes) -> bytes | None:
    """The root an audit path leads to from a leaf (RFC 9162, section 2.1.3.2), or None when
    the path does not fit a tree of `size` leaves."""
    if not 0 <= index < size:
        return None
    fn, sn, r = index, size - 1, leaf
    for k in range(0, len(proof), HASH_BYTES):
        p = proof[k:k + HASH_BYTES]
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """The tree's levels, leaves first; an odd last node is carried up unchanged, which gives
    RFC 6962's tree (left subtrees of 2^k leaves)."""
    levels = [leaves]
    sha256 = hashlib.sha256
    while len(levels[-1]) > 1:
        level = levels[-1]
        up = [sha256(b"\x01" + level[k] + level[k + 1]).digest() for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        levels.append(up)
    return levels


def _audit_paths(levels: list[list[bytes]]) -> tuple[bytes, list[int]]:
    """Every leaf's audit path end to end, and where each ends: one array operation per level
    instead of one per leaf and level."""
    size = len(levels[0])
    index = np.arange(size)
    hashes = np.zeros((size, len(levels) - 1, HASH_BYTES), dtype=np.uint8)
    present = np.zeros((size, len(levels) - 1), dtype=bool)
    for depth, level in enumerate(levels[:-1]):
        nodes = np.frombuffer(b"".join(level), dtype=np.uint8).reshape(len(level), HASH_BYTES)
        sibling = (index >> depth) ^ 1
        present[:, depth] = sibling < len(level)
        hashes[present[:, depth], depth] = nodes[sibling[present[:, depth]]]
    ends = np.cumsum(present.sum(axis=1) * HASH_BYTES).tolist()
    return hashes[present].tobytes(), ends


def _audit_path(levels: list[list[bytes]], index: int) -> bytes:
    path = []
    for level in levels[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        index >>= 1
    return b"".join(path)


def _per_row(value, n: int, what: str) -> list:
    if value is None or isinstance(value, (str, dict)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise DataError(f"{n} embeddings but {len(values)} {what}")
    return values
