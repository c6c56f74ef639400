"""The `normalcy image` commands as a user runs them: a real process, exit codes, files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from normalcy.image.demo import make_dataset

FAST = ["--image-size", "128", "--threads", "2"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "normalcy", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("cli") / "parts", n_train=12, n_good=3, n_per_defect=2)


@pytest.fixture(scope="module")
def model(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "parts.model"
    result = run("image", "fit", "--data", str(data), "--model", "patchcore", "--out", str(out), *FAST)
    assert result.returncode == 0, result.stderr
    return out


def test_fit_writes_a_model_folder_with_a_threshold(model):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.image.patchcore.PatchCore"
    assert manifest["params"]["image_size"] == 128
    assert manifest["threshold"] is not None and manifest["threshold"] > 0
    assert (model / "arrays.safetensors").stat().st_size > 0


def test_predict_writes_scores_labels_and_overlays(model, data, tmp_path):
    out = tmp_path / "pred"
    result = run("image", "predict", str(model), str(data / "test"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 3 + 3 * 2
    for row in rows:
        overlay = Image.open(out / row["overlay"])
        assert overlay.size == Image.open(row["path"]).size  # overlay at the original size
        assert int(row["label"]) == int(float(row["score"]) >= float(row["threshold"]))
    defect_scores = [float(r["score"]) for r in rows if "/good/" not in r["path"]]
    good_scores = [float(r["score"]) for r in rows if "/good/" in r["path"]]
    assert min(defect_scores) > max(good_scores)
    assert len({r["overlay"] for r in rows}) == len(rows)  # same stems in different folders


def test_evaluate_writes_the_metrics_json(model, data, tmp_path):
    out = tmp_path / "m.json"
    result = run("image", "evaluate", str(model), "--data", str(data), "--json", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max",
                "n_images", "seconds", "images_per_second"):
        assert key in metrics
    assert metrics["n_images"] == 9
    assert metrics["image_auroc"] == 1.0
    assert 0.8 < metrics["pixel_auroc"] <= 1.0


def test_benchmark_follows_the_project_convention(data, tmp_path):
    out = tmp_path / "bench.json"
    result = run("image", "benchmark", "--data", str(data), "--json", str(out), "--models", "gaussian", *FAST)
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert {"machine", "versions", "records"} <= set(doc)
    (record,) = doc["records"]
    assert record["detector"] == "gaussian" and record["dataset"] == "parts"
    assert record["fit_seconds"] > 0 and record["peak_memory_mb"] > 0
    assert record["pixel_auroc"] is None  # the Gaussian model scores whole images only
    assert "| gaussian | parts |" in out.with_suffix(".md").read_text()


def _one_clear_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_missing_data_folder_fails_clearly_and_writes_nothing(tmp_path):
    out = tmp_path / "m"
    result = run("image", "fit", "--data", str(tmp_path / "nope"), "--out", str(out), *FAST)
    _one_clear_line(result, "nope")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_no_training_images_fails_clearly(tmp_path):
    (tmp_path / "train" / "good").mkdir(parents=True)
    result = run("image", "fit", "--data", str(tmp_path), "--out", str(tmp_path / "m"), *FAST)
    _one_clear_line(result)
    assert not (tmp_path / "m").exists()


def test_unknown_model_is_refused(data, tmp_path):
    result = run("image", "fit", "--data", str(data), "--model", "resnet", "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and "resnet" in result.stderr
    assert not (tmp_path / "m").exists()


def test_unreadable_model_dir_fails_clearly(tmp_path, data):
    (tmp_path / "bad.model").mkdir()
    (tmp_path / "bad.model" / "manifest.json").write_text("{not json")
    result = run("image", "predict", str(tmp_path / "bad.model"), str(data / "test"), "--out", str(tmp_path / "o"))
    _one_clear_line(result, "manifest.json")
    assert not (tmp_path / "o" / "results.csv").exists()


def test_mask_size_mismatch_fails_clearly(model, data, tmp_path):
    broken = tmp_path / "broken"
    for sub in ("train/good", "test/good", "test/spot", "ground_truth/spot"):
        (broken / sub).mkdir(parents=True)
    for src in sorted((data / "train" / "good").iterdir())[:2]:
        (broken / "train" / "good" / src.name).write_bytes(src.read_bytes())
    (broken / "test" / "good" / "a.png").write_bytes((data / "test" / "good" / "000.png").read_bytes())
    (broken / "test" / "spot" / "b.png").write_bytes((data / "test" / "spot" / "000.png").read_bytes())
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(broken / "ground_truth" / "spot" / "b_mask.png")
    result = run("image", "evaluate", str(model), "--data", str(broken), "--json", str(tmp_path / "m.json"))
    _one_clear_line(result, "b_mask.png")
    assert not (tmp_path / "m.json").exists()


def test_corrupt_image_fails_or_is_skipped_by_choice(model, data, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "ok.png").write_bytes((data / "test" / "good" / "000.png").read_bytes())
    (inputs / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    failed = run("image", "predict", str(model), str(inputs), "--out", str(tmp_path / "o1"))
    _one_clear_line(failed, "bad.png")
    assert not (tmp_path / "o1" / "results.csv").exists()
    assert not list((tmp_path / "o1").glob("*overlay.png"))
    skipped = run("image", "predict", str(model), str(inputs), "--out", str(tmp_path / "o2"), "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(tmp_path / "o2" / "results.csv"))}
    assert rows["ok.png"]["error"] == "" and rows["ok.png"]["score"] != ""
    assert "bad.png" in rows and rows["bad.png"]["error"]


def test_demo_writes_a_report_with_heatmaps(tmp_path):
    result = run("demo", "--out", str(tmp_path / "demo"), "--threads", "2")
    assert result.returncode == 0, result.stderr
    report = Path(result.stdout.strip().splitlines()[-1].removeprefix("report: "))
    assert report.is_file()
    page = report.read_text()
    n_test = len(list((tmp_path / "demo" / "data" / "test").rglob("*.png")))
    assert page.count("<img ") == n_test
    for src in page.split('src="')[1:]:
        assert (report.parent / src.split('"')[0]).is_file()
    auroc = float(result.stdout.split("image AUROC ")[1].split()[0])
    assert auroc >= 0.95
