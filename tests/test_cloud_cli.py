"""`normalcy cloud` end to end on a tiny synthetic dataset (in process), the serving codec
without a server, and the report's pictures."""

from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest
from plyfile import PlyData

from clirunner import run_in_process
from normalcy.cloud.io import read_cloud
from normalcy.cloud.workflow import SkippedCloudWarning
from normalcy.core.modelfile import load
from normalcy.serve.codec import Limits, RequestError, parse_inputs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cloud") / "set"
    done = run_in_process("cloud", "synthesize", "--out", str(root), "--parts", "housing", "--defects", "bulge,broken",
                          "--train", "6", "--good", "2", "--per-defect", "2", "--points", "1200")
    assert done.returncode == 0, done.stderr
    return root / "housing"


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    done = run_in_process("cloud", "fit", "--data", str(data), "--out", str(out), "--points", "256",
                          "--holdout", "0.34", "--threads", "1")
    assert done.returncode == 0, done.stderr
    assert re.search(r"saved fpfh to .* \(threshold [\d.]+: fpr:0.01 from 2 held-out clouds", done.stdout), done.stdout
    return out


def test_fit_predict_writes_scores_and_scored_plys(model, data, tmp_path):
    detector = load(model)
    assert detector.n_points == 256 and detector.threshold_ is not None
    done = run_in_process("cloud", "predict", str(model), str(data / "test"), "--out", str(tmp_path), "--views")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 6 and all(r["error"] == "" for r in rows)
    first = rows[0]
    vertex = PlyData.read(str(tmp_path / first["scored"]))["vertex"]
    original = read_cloud(first["path"])
    assert len(vertex) == len(original) == int(first["points"])
    # The PLY's per-point scores are the detector's, and its object score their smoothed maximum.
    explanation = detector.explain([original.points])
    np.testing.assert_allclose(vertex["score"], explanation.localization[0], rtol=1e-6)
    assert float(first["score"]) == pytest.approx(explanation.scores[0], rel=1e-9)
    assert (tmp_path / first["scored"].replace("_scored.ply", "_views.png")).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_writes_metrics_and_a_turnable_report(model, data, tmp_path):
    done = run_in_process("cloud", "evaluate", str(model), "--data", str(data), "--json", str(tmp_path / "m.json"),
                          "--report", str(tmp_path / "r.html"))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["n_clouds"] == 6 and set(metrics["by_defect"]) == {"bulge", "broken"}
    for key in ("object_auroc", "point_auroc", "point_aupro"):
        assert 0.0 <= metrics[key] <= 1.0
    page = (tmp_path / "r.html").read_text()
    assert page.count("<canvas") == 6
    clouds = json.loads(re.search(r"<script type='application/json' id='clouds'>(.*?)</script>", page).group(1))
    assert len(clouds) == 6 and all(len(c["p"]) == 3 * len(c["c"]) for c in clouds)


def test_errors_are_one_line(model, data, tmp_path):
    (tmp_path / "bad.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 5\nproperty float x\nend_header\n1\n")
    cases = [
        (("fit", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")), "is not a directory"),
        (("fit", "--data", str(data), "--out", str(tmp_path / "m"), "--model", "pointnet"), "unknown cloud detector"),
        (("predict", str(model), str(tmp_path / "bad.ply"), "--out", str(tmp_path / "p")), "promises 5 vertices, the file has 1"),
        (("evaluate", str(tmp_path), "--data", str(data)), "not a model folder|is missing"),
    ]
    for argv, words in cases:
        done = run_in_process("cloud", *argv)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert re.search(words, done.stderr), done.stderr
    with pytest.warns(SkippedCloudWarning, match="promises 5 vertices"):
        skipped = run_in_process("cloud", "predict", str(model), str(tmp_path / "bad.ply"),
                                 str(data / "test" / "good"), "--out", str(tmp_path / "s"), "--skip-bad")
    assert skipped.returncode == 0, skipped.stderr
    rows = list(csv.DictReader(open(tmp_path / "s" / "results.csv")))
    assert [bool(r["error"]) for r in rows] == [True, False, False]


def test_the_codec_takes_points_or_a_file(model, data):
    from normalcy.cloud.serving import CloudCodec

    detector = load(model)
    codec = CloudCodec(detector, Limits())
    path = data / "test" / "bulge" / "000.ply"
    points = read_cloud(path).points
    expected = detector.explain([points])
    by_file = {"inputs": [{"name": "cloud", "datatype": "BYTES", "shape": [1],
                           "data": [base64.b64encode(path.read_bytes()).decode()]}]}
    by_points = {"inputs": [{"name": "cloud", "datatype": "FP64", "shape": [len(points), 3],
                             "data": points.reshape(-1).tolist()}]}
    for body in (by_file, by_points):
        outputs = {o.name: o.data for o in codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})}
        assert outputs["score"][0] == pytest.approx(expected.scores[0], rel=1e-9)
        assert outputs["label"][0] == (expected.scores[0] >= detector.threshold_)
        np.testing.assert_allclose(outputs["point_score"], expected.localization[0], rtol=1e-6)
    bad = [
        ({"name": "cloud", "datatype": "FP32", "shape": [4, 3], "data": [0.0] * 12}, "has 4 points"),
        ({"name": "cloud", "datatype": "FP32", "shape": [40, 3], "data": [float("nan")] * 120}, "not a finite number"),
        ({"name": "cloud", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(b"ply\nrubbish").decode()]},
         "not a PLY file"),
        ({"name": "cloud", "datatype": "FP32", "shape": [120], "data": [0.0] * 120}, "expected one of \\[n, 3\\], \\[1\\]"),
    ]
    for tensor, words in bad:
        with pytest.raises(RequestError, match=words):
            codec.decode(parse_inputs({"inputs": [tensor]}, codec.inputs, Limits()), {})


def test_demo_runs_small(tmp_path):
    from normalcy.cloud import demo

    report, metrics = demo.run(tmp_path / "demo", threads=1, n_train=5, n_good=2, n_per_defect=1, n_points=1000)
    assert report.is_file() and (tmp_path / "demo" / "model" / "manifest.json").is_file()
    assert metrics["n_clouds"] == 7 and set(metrics["by_defect"]) == {"bulge", "concavity", "crack", "hole", "broken"}
