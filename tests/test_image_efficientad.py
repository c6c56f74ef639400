"""EfficientAD on the tiny synthetic textures of conftest.py: what it finds, its map
normalisation, determinism, model files, sizes and parameters. The contract (clone,
save/load to 1e-12, hostile input) is in tests/test_contract.py; the training engine's
guarantees (budgets, Ctrl-C) in tests/test_image_trained.py and tests/test_training.py."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from clirunner import run_in_process as run
from conftest import IMAGE_SIZE, SQUARE, make_detector
from normalcy.core import modelfile
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError
from normalcy.core.threshold import FalseAlarmRate
from normalcy.image import EfficientAD
from normalcy.image.efficientad import Q_A, Q_B, _build

# Enough training to find a saturated square on grey noise at 64 px, in a few seconds.
FIND = {"max_steps": 80, "patience": None}


@pytest.fixture(scope="module")
def trained(image_data):
    return make_detector("efficientad", **FIND).fit(image_data.train)


def test_it_ranks_the_pasted_square_above_normal_images(trained, image_data):
    scores = trained.decision_function(image_data.test)
    assert scores.shape == (len(image_data.test),) and np.isfinite(scores).all()
    assert roc_auc_score(image_data.labels, scores) >= 0.9


def test_its_maps_are_hotter_on_the_square(trained, image_data):
    maps = trained.explain(image_data.defect).localization
    assert maps.shape == (len(image_data.defect), IMAGE_SIZE, IMAGE_SIZE)
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        inside = np.zeros(anomaly_map.shape, dtype=bool)
        inside[row : row + SQUARE, col : col + SQUARE] = True
        assert anomaly_map[inside].mean() > anomaly_map[~inside].mean()


def test_the_training_record_says_what_happened(trained):
    record = trained.training_
    assert record["steps"] == FIND["max_steps"] and record["stopped"] == "steps"
    assert 1 <= record["best_step"] <= record["steps"] and 0.0 <= record["validation"] <= 1.0


def test_maps_are_normalised_by_their_quantiles_and_averaged():
    """q_a of each map goes to 0 and q_b to 0.1 (the paper's normalisation), checked against
    numpy's quantiles; the combined map is their mean."""
    net = _build("s", 8, 64)
    rng = np.random.default_rng(0)
    st, ae = rng.gamma(2.0, 1.0, (3, 8, 8)), rng.gamma(1.0, 3.0, (3, 8, 8))
    net.set_quantiles(torch.from_numpy(st).float(), torch.from_numpy(ae).float())
    qa_st, qb_st = np.quantile(st, [Q_A, Q_B])
    qa_ae, qb_ae = np.quantile(ae, [Q_A, Q_B])
    np.testing.assert_allclose(net.quantiles.numpy(), [qa_st, qb_st, qa_ae, qb_ae], rtol=1e-5)
    probe = torch.tensor([[[qa_st, qb_st]]], dtype=torch.float32), torch.tensor([[[qa_ae, qb_ae]]], dtype=torch.float32)
    np.testing.assert_allclose(net.combine(*probe).numpy().ravel(), [0.0, 0.1], atol=1e-5)
    expected = 0.05 * (st - qa_st) / (qb_st - qa_st) + 0.05 * (ae - qa_ae) / (qb_ae - qa_ae)
    combined = net.combine(torch.from_numpy(st).float(), torch.from_numpy(ae).float()).numpy()
    np.testing.assert_allclose(combined, expected, rtol=1e-4, atol=1e-5)


def test_the_fitted_quantiles_come_from_held_out_normal_maps(trained):
    q = trained.net_.quantiles.numpy()
    assert q[0] < q[1] and q[2] < q[3]  # set at validation, not the initial (0, 1, 0, 1)
    assert not np.allclose(q, [0.0, 1.0, 0.0, 1.0])


def test_same_seed_same_scores_and_another_seed_differs(image_data):
    first = make_detector("efficientad", seed=3).fit(image_data.train).decision_function(image_data.test)
    again = make_detector("efficientad", seed=3).fit(image_data.train).decision_function(image_data.test)
    other = make_detector("efficientad", seed=4).fit(image_data.train).decision_function(image_data.test)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_reload_gives_the_same_scores_maps_and_record(trained, image_data, tmp_path):
    det = copy.copy(trained).set_threshold(0.0)
    again = modelfile.load(det.save(tmp_path / "m"))
    assert_same_scores(again.decision_function(image_data.test), det.decision_function(image_data.test))
    assert_same_scores(again.explain(image_data.defect).localization.ravel(),
                       det.explain(image_data.defect).localization.ravel(), "maps")
    assert again.training_ == det.training_
    np.testing.assert_array_equal(again.net_.quantiles.numpy(), det.net_.quantiles.numpy())


def test_the_onnx_export_scores_like_the_torch_model(trained, image_data, tmp_path):
    """Teacher, student and autoencoder in one graph: scores within 1e-4 relative, maps within
    1e-3, the same labels at the stored threshold (the export's promise, tests/test_image_export.py)."""
    pytest.importorskip("onnxruntime")
    from normalcy.image import export as image_export
    from normalcy.runtime import load

    det = copy.copy(trained).calibrate(image_data.calib, FalseAlarmRate(0.25))
    model = load(image_export.export(det, "onnx", tmp_path / "m.onnx"), threads=1)
    expected, got = det.detect(image_data.test), model.detect(image_data.test)
    np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-4, atol=0)
    assert np.abs(got.localization - expected.localization).max() <= 1e-3
    assert got.threshold == expected.threshold
    np.testing.assert_array_equal(got.labels, expected.labels)
    assert 0 < expected.labels.sum() < len(expected.labels)


@pytest.mark.parametrize("size", ["s", "m"])
def test_both_sizes_build_and_score(size, image_data):
    det = make_detector("efficientad", size=size, max_steps=2).fit(image_data.train)
    channels = det.net_.mean.shape[0]
    student = det.net_.student
    assert student[-1].out_channels == 2 * channels  # imitation half and autoencoder half
    convs = [m for m in student if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (4 if size == "s" else 6)  # PDN-S and PDN-M
    assert convs[0].out_channels == (128 if size == "s" else 256)
    assert np.isfinite(det.decision_function(image_data.test)).all()


@pytest.mark.parametrize("param, value", [
    ("size", "l"), ("size", None), ("image_size", 96), ("max_steps", 0), ("patience", 0),
    ("validation_fraction", 1.0), ("backbone", "resnet18"),
])
def test_bad_parameters_are_refused_before_any_work(param, value, image_data):
    with pytest.raises(DataError, match=param if param != "backbone" else "backbone"):
        make_detector("efficientad", **{param: value}).fit(image_data.train)


def test_the_default_is_the_small_size_at_256_pixels():
    params = EfficientAD().get_params()
    assert params["size"] == "s" and params["image_size"] == 256


# --- the CLI ---------------------------------------------------------------------------------------

FAST = ["--image-size", "64", "--threads", "1", "--holdout", "0.25", "--max-steps", "2"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from normalcy.image.demo import make_dataset

    return make_dataset(tmp_path_factory.mktemp("efficientad") / "parts", n_train=8, n_good=2, n_per_defect=1)


def test_fit_takes_the_size_option(parts, tmp_path):
    out = tmp_path / "m"
    result = run("image", "fit", "--data", str(parts), "--out", str(out), "--model", "efficientad",
                 "--size", "m", *FAST)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("saved efficientad (trained 2 steps in ")
    assert modelfile.load(out).size == "m"


def test_the_size_option_is_refused_by_other_detectors_and_checked(parts, tmp_path):
    other = run("image", "fit", "--data", str(parts), "--out", str(tmp_path / "p"), "--model", "patchcore",
                "--size", "m", *FAST[:6])
    bad = run("image", "fit", "--data", str(parts), "--out", str(tmp_path / "e"), "--model", "efficientad",
              "--size", "xl", *FAST)
    for result in (other, bad):
        assert result.returncode == 2 and "size" in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
