"""Exported image models (normalcy.image.export) against their torch originals, on the tiny
synthetic textures of conftest.py: same scores (1e-4 relative), same maps (1e-3), same labels
at the stored threshold, through onnxruntime and OpenVINO, and what export refuses."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from normalcy.core.errors import DataError
from normalcy.core.threshold import FalseAlarmRate
from normalcy.image import export as image_export
from normalcy.image.base import load_square
from normalcy.runtime import load

from conftest import make_detector

onnxruntime = pytest.importorskip("onnxruntime")

EXPORTABLE = ["patchcore", "padim", "gaussian", "simplenet", "fastflow", "draem", "efficientad"]


def openvino_or_skip():
    try:
        import openvino  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("openvino is not installed")


@pytest.fixture(scope="module")
def calibrated(image_data):
    """name -> a detector fitted on the training images with a threshold from held-out ones."""
    cache = {}

    def get(name, **params):
        key = (name, tuple(sorted(params.items())))
        if key not in cache:
            det = make_detector(name, **params).fit(image_data.train)
            cache[key] = det.calibrate(image_data.calib, FalseAlarmRate(0.25))
        return cache[key]

    return get


def assert_same(torch_model, exported, images, rtol=1e-4, map_atol=1e-3):
    expected = torch_model.detect(images)
    got = exported.detect(images)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=rtol, atol=0)
    assert got.threshold == expected.threshold
    np.testing.assert_array_equal(got.labels, expected.labels)
    if expected.localization is None:
        assert got.localization is None
    else:
        assert got.localization.shape == expected.localization.shape
        assert np.abs(got.localization - expected.localization).max() <= map_atol
    return expected


@pytest.mark.parametrize("name", EXPORTABLE)
def test_onnx_export_scores_like_the_torch_model(name, calibrated, image_data, tmp_path):
    det = calibrated(name)
    path = image_export.export(det, "onnx", tmp_path / f"{name}.onnx")
    model = load(path, threads=1)
    expected = assert_same(det, model, image_data.test)
    # Not trivially equal: scores (or, for the barely trained networks, maps) spread, and the
    # memory-bank detectors' labels hold both outcomes.
    assert expected.scores.std() > 0 or expected.localization.std() > 0
    if name in ("patchcore", "padim", "gaussian"):
        assert 0 < expected.labels.sum() < len(expected.labels)
    np.testing.assert_array_equal(model.predict(image_data.test), det.predict(image_data.test))
    assert model.name == name and model.image_size == det.image_size and model.threshold_ == det.threshold_


def test_the_export_carries_what_the_runtime_needs(calibrated, tmp_path):
    import onnx

    det = calibrated("patchcore")
    path = image_export.export(det, "onnx", tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    meta = json.loads(props["normalcy"])
    assert meta["model"] == "patchcore" and meta["image_size"] == det.image_size and meta["resize"] == "squash"
    assert meta["threshold"] == det.threshold_ and meta["input"]["dtype"] == "uint8"
    assert meta["params"]["coreset_ratio"] == det.coreset_ratio
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["score", "map", "patch"]


def test_padded_images_of_another_shape_score_like_the_torch_model(calibrated, image_data, tmp_path):
    det = calibrated("patchcore", resize="pad")
    model = load(image_export.export(det, "onnx", tmp_path / "pad.onnx"))
    wide = [np.concatenate([im, im[:, :32]], axis=1) for im in image_data.test[::2]]  # 64 x 96
    assert load_square(wide[:1], det.image_size, "pad")[1][0] is not None
    assert_same(det, model, wide)


def test_padim_exports_its_distances_as_matrix_products(calibrated, tmp_path):
    # OpenVINO expands a three-operand Einsum into a positions x images x C x C product: PaDiM
    # at bottle's size took 2.6 GB that way, 725 MB as a batched MatMul.
    import onnx

    graph = onnx.load(image_export.export(calibrated("padim"), "onnx", tmp_path / "padim.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert "Einsum" not in ops and "MatMul" in ops


def test_the_graph_blur_is_scipys_gaussian_filter():
    import torch

    rng = np.random.default_rng(0)
    for size in (32, 64, 256):
        patch = rng.random((2, size // 8, size // 8)).astype(np.float32)
        up = torch.nn.functional.interpolate(torch.from_numpy(patch)[:, None], size=(size, size), mode="bilinear",
                                             align_corners=False)[:, 0].numpy()
        sigma = 4.0 * size / 256
        expected = np.stack([gaussian_filter(m, sigma, truncate=4.0, mode="reflect") for m in up])
        got = image_export.Smooth(size)(torch.from_numpy(patch)).numpy()
        assert np.abs(got - expected).max() < 1e-5


def test_reflect_index_repeats_the_edge_like_scipy_even_past_the_width():
    # scipy's 'reflect' is numpy's 'symmetric' padding (the edge value repeated).
    for size, radius in ((3, 4), (5, 2), (4, 9)):
        expected = np.pad(np.arange(size), radius, mode="symmetric")
        assert image_export.reflect_index(size, radius).tolist() == expected.tolist()


def test_openvino_export_scores_like_the_torch_model(calibrated, image_data, tmp_path):
    openvino_or_skip()
    det = calibrated("patchcore")
    folder = image_export.export(det, "openvino", tmp_path / "ov")
    assert {p.name for p in folder.iterdir()} == {"model.xml", "model.bin", "normalcy.json"}
    assert_same(det, load(folder, threads=1), image_data.test)


def test_int8_export_stays_close_and_ranks_alike(calibrated, image_data, tmp_path):
    det = calibrated("patchcore")
    path = image_export.export(det, "onnx", tmp_path / "q.onnx", int8=True, calibration=list(image_data.train))
    model = load(path)
    assert model.meta["int8"] is True
    got, expected = model.decision_function(image_data.test), det.decision_function(image_data.test)
    assert not np.allclose(got, expected, rtol=1e-4)  # quantised: not the float graph
    assert np.corrcoef(got, expected)[0, 1] > 0.9


def test_export_refuses_what_it_cannot_do(calibrated, tmp_path, monkeypatch):
    det = calibrated("patchcore")
    with pytest.raises(DataError, match="format"):
        image_export.export(det, "tflite", tmp_path / "m.onnx")
    with pytest.raises(DataError, match=r"\.onnx"):
        image_export.export(det, "onnx", tmp_path / "m.bin")
    with pytest.raises(DataError, match="calibration"):
        image_export.export(det, "onnx", tmp_path / "m.onnx", int8=True)
    with pytest.raises(DataError, match="squash"):
        padded = copy.copy(calibrated("draem"))
        padded.resize = "pad"
        image_export.export(padded, "onnx", tmp_path / "d.onnx")
    # A detector without the hook (here PatchCore with it taken away) is refused by name.
    monkeypatch.delattr(type(det), "_export_scores")
    with pytest.raises(DataError, match="PatchCore cannot be exported"):
        image_export.export(det, "onnx", tmp_path / "n.onnx")
    assert not any(tmp_path.glob("*.onnx"))
