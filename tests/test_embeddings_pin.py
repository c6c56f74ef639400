"""Signed embeddings (normalcy.embeddings.pin, .store, .keys): the documented byte layout,
the Merkle tree against RFC 6962's definition, every perturbation family failing verification
while untouched rows pass, the reasons given, and key files."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from normalcy.core.errors import DataError
from normalcy.embeddings import keys, pin, store
from normalcy.embeddings.perturb import STRENGTHS, perturb

DIM = 24


@pytest.fixture(scope="module")
def key():
    return Ed25519PrivateKey.generate()


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def vector_table(vectors: np.ndarray, texts: list[str] | None = None, **extra) -> pa.Table:
    texts = texts if texts is not None else [f"document {i}" for i in range(len(vectors))]
    flat = pa.array(np.ascontiguousarray(vectors).reshape(-1))
    return pa.table({"embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(
        pa.list_(flat.type)), "content": texts, **extra})


def with_vectors(table: pa.Table, vectors: np.ndarray) -> pa.Table:
    column = vector_table(vectors).column("embedding")
    return table.set_column(table.column_names.index("embedding"), "embedding", column)


def failing(result: store.Verification) -> set[int]:
    return {row for row, _ in result.failures}


# --- the byte layout and the tree ------------------------------------------------------
def test_a_one_row_batch_is_ed25519_over_the_documented_header(key):
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    content = hashlib.sha256("the text".encode()).digest()
    pins = pin.sign(vector[None], [content], "model-x", key, [{"doc": "a1", "n": 3}], batch_size=1)
    values = struct.pack("<3f", 0.5, -1.25, 3.0)  # little-endian float32, by hand
    header = (b"normalcy.embedding.v1\x00" + b"<f4" + b"\x01" + struct.pack("<I", 3)
              + hashlib.sha256(values).digest() + content
              + struct.pack("<H", 7) + b"model-x"
              + struct.pack("<I", len(b'{"doc":"a1","n":3}')) + b'{"doc":"a1","n":3}')
    leaf = hashlib.sha256(b"\x00" + header).digest()
    assert pins.vector_sha256[0] == hashlib.sha256(values).digest() and pins.proof[0] == b""
    key.public_key().verify(pins.signature[0], b"normalcy.embedding-root.v1\x00" + struct.pack("<I", 1) + leaf)


def rfc6962_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)  # the largest power of two below n
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def rfc6962_path(m: int, leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return b""
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return rfc6962_path(m, leaves[:k]) + rfc6962_root(leaves[k:])
    return rfc6962_path(m - k, leaves[k:]) + rfc6962_root(leaves[:k])


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 16, 33])
def test_tree_and_audit_paths_are_rfc6962s_and_verify_by_rfc9162(n):
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(n)]
    levels = pin._levels(leaves)
    assert levels[-1][0] == rfc6962_root(leaves)
    paths, ends = pin._audit_paths(levels)  # all at once, as signing makes them
    assert paths == b"".join(rfc6962_path(m, leaves) for m in range(n))
    assert np.diff(ends, prepend=0).tolist() == [len(rfc6962_path(m, leaves)) for m in range(n)]
    for m in range(n):
        path = pin._audit_path(levels, m)
        assert path == rfc6962_path(m, leaves)
        assert pin.root_from_path(leaves[m], m, n, path) == levels[-1][0]
        assert pin.root_from_path(leaves[(m + 1) % n], m, n, path) != levels[-1][0] or n == 1
    if n > 1:
        short = pin._audit_path(levels, 0)[:-32]
        assert pin.root_from_path(leaves[0], 0, n, short) is None, "a short path fits no tree"


# --- every change fails, nothing else does -----------------------------------------------
@pytest.fixture(scope="module")
def signed(key):
    vectors = unit_vectors(40)
    return vectors, store.sign_table(vector_table(vectors), key, "minilm", batch_size=16)


def test_untouched_rows_verify_in_memory_and_through_parquet(signed, key, tmp_path):
    import pyarrow.parquet as pq

    _, table = signed
    assert store.verify_table(table, key.public_key()).ok
    pq.write_table(table, tmp_path / "s.parquet")
    result = store.verify_table(pq.read_table(tmp_path / "s.parquet"), key.public_key())
    assert result.ok and result.n_rows == 40


@pytest.mark.parametrize("family, strength", [(f, s) for f, strengths in STRENGTHS.items() for s in strengths])
def test_every_perturbed_vector_fails_and_every_untouched_one_passes(signed, key, family, strength):
    vectors, table = signed
    rng = np.random.default_rng(3)
    perturbed = vectors.copy()
    rows = rng.choice(len(vectors), size=15, replace=False)  # some rows of every batch, not all
    perturbed[rows] = perturb(vectors[rows], family, strength, rng).astype(np.float32)
    modified = set(np.flatnonzero((perturbed != vectors).any(axis=1)).tolist())
    assert modified, "the perturbation changed something"
    result = store.verify_table(with_vectors(table, perturbed), key.public_key())
    assert failing(result) == modified
    assert {reason for _, reason in result.failures} == {pin.VECTOR_CHANGED}


def test_one_ulp_in_one_value_is_caught_and_only_that_row_fails(signed, key):
    vectors, table = signed
    changed = vectors.copy()
    changed[17, 5] = np.nextafter(changed[17, 5], np.float32(2))
    assert failing(store.verify_table(with_vectors(table, changed), key.public_key())) == {17}


def test_float32_vectors_stored_as_float64_verify_only_while_exact(signed, key):
    vectors, table = signed
    wide = vectors.astype(np.float64)
    assert store.verify_table(with_vectors(table, wide), key.public_key()).ok
    wide[3, 0] += 1e-12  # below float32 resolution, but not the signed number
    result = store.verify_table(with_vectors(table, wide), key.public_key())
    assert failing(result) == {3} and "not the <f4 numbers" in result.failures[0][1]


def replace(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return table.set_column(table.column_names.index(name), name, pa.array(values, table.schema.field(name).type))


@pytest.mark.parametrize("column, row, value, reason", [
    ("content", 4, "document 4, edited", "content changed since signing"),
    ("content_sha256", 4, hashlib.sha256(b"other").hexdigest(), "signature does not verify"),
    ("model_id", 9, "another-model", "signature does not verify"),
    ("pin_vector_sha256", 2, hashlib.sha256(b"x").digest(), "signature does not verify"),
    ("pin_signature", 30, bytes(64), "signature does not verify"),
    ("pin_leaf", 21, 3, "signature does not verify"),
    ("pin_proof", 12, bytes(32) * 4, "its proof was changed"),
    ("pin_key", 1, "0123456789abcdef", "signed with key '0123456789abcdef'"),
    ("pin_signature", 6, None, "its signature is missing"),
    ("embedding", 8, None, "the embedding is missing"),
    ("embedding", 8, [0.0] * (DIM - 1), f"it has {DIM - 1} values, signed with {DIM}"),
])
def test_each_changed_field_fails_its_row_with_its_reason(signed, key, column, row, value, reason):
    _, table = signed
    result = store.verify_table(replace(table, column, row, value), key.public_key())
    assert failing(result) == {row}
    assert reason in result.failures[0][1]


def test_swapped_rows_fail_both(signed, key):
    vectors, table = signed
    swapped = vectors.copy()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert failing(store.verify_table(with_vectors(table, swapped), key.public_key())) == {0, 1}


def test_a_row_verifies_alone_out_of_its_batch(signed, key):
    _, table = signed
    assert store.verify_table(table.slice(19, 1), key.public_key()).ok
    lone = replace(table.slice(19, 1), "pin_proof", 0, bytes(32) * 4)
    assert "signature does not verify" in store.verify_table(lone, key.public_key()).failures[0][1]


def test_another_key_or_stripped_metadata_fails_every_row(signed, key):
    _, table = signed
    other = Ed25519PrivateKey.generate().public_key()
    result = store.verify_table(table, other)
    assert failing(result) == set(range(40)) and "not with the given public key" in result.failures[0][1]
    stripped = store.verify_table(table.replace_schema_metadata({}), key.public_key())
    assert stripped.problem is not None and "normalcy.pin" in stripped.problem and len(stripped.failures) == 40
    description = json.loads(table.schema.metadata[store.SCHEMA_KEY])
    description["dim"] = DIM + 1  # the dimension is signed: claiming another fails every row
    forged = table.replace_schema_metadata({store.SCHEMA_KEY: json.dumps(description)})
    assert failing(store.verify_table(forged, key.public_key())) == set(range(40))


def test_signed_metadata_columns_bind_their_values(key):
    table = vector_table(unit_vectors(6), doc_id=[f"id-{i}" for i in range(6)], page=list(range(6)))
    signed = store.sign_table(table, key, "m", metadata_columns=("doc_id", "page"))
    assert store.verify_table(signed, key.public_key()).ok
    assert failing(store.verify_table(replace(signed, "doc_id", 2, "id-9"), key.public_key())) == {2}
    assert failing(store.verify_table(replace(signed, "page", 5, 6), key.public_key())) == {5}


def test_content_sha256_may_stand_in_for_the_text(key):
    vectors = unit_vectors(3)
    hashes = [hashlib.sha256(f"document {i}".encode()).hexdigest() for i in range(3)]
    by_hash = store.sign_table(vector_table(vectors).drop_columns(["content"]).append_column(
        "content_sha256", pa.array(hashes)), key, "m")
    by_text = store.sign_table(vector_table(vectors), key, "m")
    assert by_hash.column("content_sha256").to_pylist() == by_text.column("content_sha256").to_pylist() == hashes
    assert store.verify_table(by_hash, key.public_key()).ok


@pytest.mark.parametrize("table, message", [
    (pa.table({"embedding": [[1.0, 2.0]]}), "needs a 'content' column"),
    (pa.table({"embedding": [[1, 2]], "content": ["a"]}), "lists of int64"),
    (pa.table({"embedding": [[1.0, 2.0], [1.0]], "content": ["a", "b"]}), "row 1 has 1 values"),
    (pa.table({"embedding": [[1.0, float("nan")]], "content": ["a"]}), "NaN or infinity"),
    (pa.table({"embedding": [[1.0, None]], "content": ["a"]}), "missing (null) value"),
    (pa.table({"embedding": [[1.0], None], "content": ["a", "b"]}), "row 1 has no embedding"),
    (pa.table({"embedding": [[1.0]], "content": [None]}), "not a text"),
    (pa.table({"embedding": [[1.0]], "content_sha256": ["abc"]}), "not 64 hex digits"),
    (pa.table({"embedding": [[1.0]], "content": ["a"], "pin_proof": [b""]}), "is it signed already"),
])
def test_unsignable_tables_are_refused_naming_the_problem(key, table, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.sign_table(table, key, "m")


# --- key files ---------------------------------------------------------------------------
def test_keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites(tmp_path):
    private, public = keys.generate(tmp_path / "signing")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and public.name == "signing.pub"
    loaded = keys.load_private(private)
    assert pin.key_id(loaded.public_key()) == pin.key_id(keys.load_public(public))
    before = private.read_bytes()
    with pytest.raises(DataError, match="refusing to overwrite"):
        keys.generate(tmp_path / "signing")
    assert private.read_bytes() == before


def test_a_private_key_readable_by_others_is_refused_like_ssh_does(tmp_path):
    private, _ = keys.generate(tmp_path / "k")
    os.chmod(private, 0o644)
    with pytest.raises(DataError, match="mode 0644.*chmod 600"):
        keys.load_private(private)
    os.chmod(private, 0o640)
    with pytest.raises(DataError, match="accessible by others"):
        keys.load_private(private)


def test_openssh_keys_load_and_other_key_kinds_are_refused(tmp_path):
    key = Ed25519PrivateKey.generate()
    ssh_private = tmp_path / "id_ed25519"
    ssh_private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()))
    os.chmod(ssh_private, 0o600)
    ssh_public = tmp_path / "id_ed25519.pub"
    ssh_public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                         serialization.PublicFormat.OpenSSH))
    assert pin.key_id(keys.load_private(ssh_private).public_key()) == pin.key_id(keys.load_public(ssh_public))
    x25519 = tmp_path / "x"
    x25519.write_bytes(X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(x25519, 0o600)
    with pytest.raises(DataError, match="expected an Ed25519 private key"):
        keys.load_private(x25519)
    encrypted = tmp_path / "enc"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pass")))
    os.chmod(encrypted, 0o600)
    with pytest.raises(DataError, match="encrypted"):
        keys.load_private(encrypted)
    with pytest.raises(DataError, match="that is a private key"):
        keys.load_public(ssh_private)
