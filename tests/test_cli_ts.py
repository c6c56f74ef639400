"""The `normalcy ts` commands as a user runs them: a real process, exit codes, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from metric_frames import metric_frame


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "normalcy", "ts", *args], capture_output=True, text=True,
                          timeout=120, input=stdin)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("ts")
    metric_frame().drop(columns="label").to_csv(root / "train.csv", index=False)
    test = metric_frame(200, spike_at=150, seed=1)
    test["timestamp"] += pd.Timedelta(days=2)
    test.to_csv(root / "test.csv", index=False)
    model = root / "m.model"
    result = run("fit", str(root / "train.csv"), "--out", str(model), "--columns", "cpu,mem")
    assert result.returncode == 0, result.stderr
    return root, model


def test_fit_score_and_evaluate(files, tmp_path):
    root, model = files
    assert json.loads((model / "manifest.json").read_text())["threshold"] is not None
    result = run("score", str(model), str(root / "test.csv"), "--out", str(tmp_path / "s.csv"))
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == ["time", "score", "label", "top_variable"]
    assert scores.score.idxmax() == 150 and scores.top_variable[150] == "mem" and scores.label[150] == 1
    result = run("evaluate", str(model), str(root / "test.csv"), "--json", str(tmp_path / "e.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["auc_pr"] > 0.1 and metrics["n_readings"] == 200


def test_stream_equals_batch_scores(files, tmp_path):
    root, model = files
    test = pd.read_csv(root / "test.csv")
    lines = [f"{c},{m}" for c, m in zip(test.cpu[:60], test.mem[:60])]
    lines[10] = json.dumps({"cpu": test.cpu[10], "mem": test.mem[10]})
    result = run("stream", str(model), stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    run("score", str(model), str(root / "test.csv"), "--out", str(tmp_path / "s.csv"))
    batch = pd.read_csv(tmp_path / "s.csv").score.to_numpy()[:60]
    np.testing.assert_allclose([o["score"] for o in out], batch, rtol=1e-12)
    assert set(out[0]["variables"]) == {"cpu", "mem"}


def _one_clear_line(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_bad_input_fails_clearly_and_writes_nothing(files, tmp_path):
    root, model = files
    out = tmp_path / "m"
    _one_clear_line(run("fit", str(root / "train.csv"), "--out", str(out), "--columns", "disk"), "disk")
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,v\n")
    _one_clear_line(run("fit", str(empty), "--out", str(out)), "empty")
    nan = tmp_path / "nan.csv"
    nan.write_text("timestamp,v\n2024-01-01,\n2024-01-02,\n")
    _one_clear_line(run("fit", str(nan), "--out", str(out)), "'v'")
    _one_clear_line(run("stream", str(model), stdin="1,abc\n"), "line 1")
    assert not out.exists()


def test_benchmark_on_a_tiny_nab_folder(tmp_path):
    for name in ("a/one.csv", "a/two.csv"):
        frame = metric_frame(300, spike_at=200)[["timestamp", "mem"]].rename(columns={"mem": "value"})
        (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / "data" / name, index=False)
    t = metric_frame(300).timestamp.astype(str)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(
        {"a/one.csv": [[t[190], t[210]]], "a/two.csv": []}))
    result = run("benchmark", "--data", str(tmp_path), "--json", str(tmp_path / "b.json"), "--models", "range-novelty")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads((tmp_path / "b.json").read_text())["records"]
    assert record["nab_standard"] > 80  # the spike, found mid-window, and no false alarm
    for key in ("nab_low_fp", "nab_low_fn", "vus_pr", "pate", "auc_pr", "seconds_per_1k_points"):
        assert key in record
