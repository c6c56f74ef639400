"""`normalcy embeddings` in process (tests/clirunner.py): keygen, sign, verify with its exit
codes and reasons, fit and score; one real subprocess for the command group."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from clirunner import run_in_process

DIM = 16


def write_vectors(path, vectors: np.ndarray, texts: list[str] | None = None) -> None:
    texts = texts or [f"line {i}" for i in range(len(vectors))]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    pq.write_table(pa.table({"embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]).cast(
        pa.list_(pa.float32())), "content": texts}), path)


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("signed")
    vectors = unit(50, 0)
    write_vectors(folder / "v.parquet", vectors)
    keygen = run_in_process("embeddings", "keygen", "--out", str(folder / "key"))
    assert keygen.returncode == 0 and "mode 0600" in keygen.stdout
    result = run_in_process("embeddings", "sign", str(folder / "v.parquet"), "--key", str(folder / "key"),
                            "--model-id", "all-MiniLM-L6-v2", "--out", str(folder / "signed.parquet"))
    assert result.returncode == 0, result.stderr
    assert "signed 50 vectors" in result.stdout
    return folder, vectors


def test_verify_exits_0_when_every_row_verifies(signed):
    folder, _ = signed
    result = run_in_process("embeddings", "verify", str(folder / "signed.parquet"), "--public-key",
                            str(folder / "key.pub"))
    assert result.returncode == 0 and "all 50 rows" in result.stdout


def test_verify_exits_1_naming_the_changed_rows_and_why(signed, tmp_path):
    folder, vectors = signed
    table = pq.read_table(folder / "signed.parquet")
    changed = vectors.copy()
    changed[[3, 41]] *= np.float32(1.001)
    flat = pa.array(changed.reshape(-1))
    table = table.set_column(0, "embedding", pa.FixedSizeListArray.from_arrays(flat, DIM).cast(
        pa.list_(pa.float32())))
    texts = table.column("content").to_pylist()
    texts[7] = "line 7, rewritten"
    table = table.set_column(table.column_names.index("content"), "content", pa.array(texts))
    pq.write_table(table, tmp_path / "tampered.parquet")
    result = run_in_process("embeddings", "verify", str(tmp_path / "tampered.parquet"), "--public-key",
                            str(folder / "key.pub"), "--report", str(tmp_path / "report.csv"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("row 3: embedding changed since signing")
    assert lines[1].startswith("row 7: content changed since signing")
    assert lines[2].startswith("row 41: embedding changed")
    assert "3 of 50 rows fail verification" in lines[-1]
    with open(tmp_path / "report.csv", newline="") as fh:
        assert [int(r["row"]) for r in csv.DictReader(fh)] == [3, 7, 41]


def test_sign_refuses_a_key_others_can_read_and_bad_input_in_one_line(signed, tmp_path):
    folder, vectors = signed
    key = tmp_path / "loose"
    key.write_bytes((folder / "key").read_bytes())
    os.chmod(key, 0o644)
    result = run_in_process("embeddings", "sign", str(folder / "v.parquet"), "--key", str(key), "--model-id", "m",
                            "--out", str(tmp_path / "out.parquet"))
    assert result.returncode == 2 and "chmod 600" in result.stderr and not (tmp_path / "out.parquet").exists()
    pq.write_table(pa.table({"embedding": [[1.0, 2.0]]}), tmp_path / "no-content.parquet")
    result = run_in_process("embeddings", "sign", str(tmp_path / "no-content.parquet"), "--key",
                            str(folder / "key"), "--model-id", "m", "--out", str(tmp_path / "out.parquet"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "'content_sha256'" in result.stderr
    result = run_in_process("embeddings", "keygen", "--out", str(folder / "key"))
    assert result.returncode == 2 and "refusing to overwrite" in result.stderr


def test_fit_and_score_flag_scaled_vectors(tmp_path):
    write_vectors(tmp_path / "train.parquet", unit(200, 1))
    test = unit(20, 2)
    test[10:] *= np.float32(1.05)
    write_vectors(tmp_path / "test.parquet", test)
    fit = run_in_process("embeddings", "fit", "--data", str(tmp_path / "train.parquet"), "--model", "norm",
                         "--out", str(tmp_path / "model"))
    assert fit.returncode == 0 and "saved norm" in fit.stdout, fit.stderr
    score = run_in_process("embeddings", "score", str(tmp_path / "model"), "--data", str(tmp_path / "test.parquet"),
                           "--out", str(tmp_path / "scores.csv"))
    assert score.returncode == 0, score.stderr
    with open(tmp_path / "scores.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert "embedding" not in rows[0] and [int(r["label"]) for r in rows] == [0] * 10 + [1] * 10
    out = run_in_process("embeddings", "score", str(tmp_path / "model"), "--data", str(tmp_path / "test.parquet"),
                         "--out", str(tmp_path / "scores.parquet"))
    assert out.returncode == 0
    scored = pq.read_table(tmp_path / "scores.parquet")
    assert scored.column_names == ["embedding", "content", "score", "label"]


def test_verify_runs_as_a_real_command(signed, tmp_path):
    folder, _ = signed
    table = pq.read_table(folder / "signed.parquet")
    pq.write_table(table.replace_schema_metadata({}), tmp_path / "stripped.parquet")
    result = subprocess.run([sys.executable, "-m", "normalcy", "embeddings", "verify",
                             str(tmp_path / "stripped.parquet"), "--public-key", str(folder / "key.pub")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "no row can be verified" in result.stdout and "normalcy.pin" in result.stdout
