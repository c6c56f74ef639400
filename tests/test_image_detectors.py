"""Tests for the image detectors (PatchCore, PaDiM, GaussianAD) on tiny synthetic textures.

Fixtures in conftest.py: `image_data` (64 x 64 smooth-noise images; defects are a white
16 x 16 square pasted inside the frame) and `fitted(name)` (a detector fitted once per session).
The contract every detector keeps (clone, save/load, hostile input ...) is checked in
tests/test_contract.py with tests/contract_image.py; here is what is particular to images.
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.distance import cdist
from sklearn.metrics import roc_auc_score

from normalcy.core import modelfile
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError, NotFittedError
from normalcy.core.registry import detectors
from normalcy.core.threshold import FalseAlarmRate, Fixed
from normalcy.image import DEFAULT, DRAEM, EfficientAD, FastFlow, GaussianAD, PaDiM, PatchCore, SimpleNet
from normalcy.image import patchcore
from normalcy.image.backbone import to_tensor
from normalcy.image.base import PAD_VALUE, load_square, upsample_map
from normalcy.image.patchcore import MIN_BANK, chunked_coreset, greedy_coreset

from conftest import IMAGE_SIZE, SQUARE, make_detector

ALL = ["patchcore", "padim", "gaussian"]
WITH_MAPS = ["patchcore", "padim"]


def test_the_registry_names_the_detectors_default_first():
    assert detectors("image") == {"patchcore": PatchCore, "padim": PaDiM, "gaussian": GaussianAD,
                                  "simplenet": SimpleNet, "fastflow": FastFlow, "draem": DRAEM,
                                  "efficientad": EfficientAD}
    assert list(detectors("image"))[0] == DEFAULT
    assert {cls.modality for cls in detectors("image").values()} == {"image"}


# --- detection and localisation ----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_defects_rank_above_normal_images(name, fitted, image_data):
    scores = fitted(name).decision_function(image_data.test)
    assert scores.shape == (len(image_data.test),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert roc_auc_score(image_data.labels, scores) >= 0.9
    # score(X, y) is scikit-learn's figure of merit: the AUROC of those scores.
    assert fitted(name).score(image_data.test, image_data.labels) == roc_auc_score(image_data.labels, scores)


def test_model_selection_with_the_auroc_works_on_an_image_detector(image_data):
    from sklearn.model_selection import GridSearchCV

    X = np.concatenate([image_data.train, image_data.test])
    y = np.r_[np.zeros(len(image_data.train)), image_data.labels]
    fit_on_normals = np.arange(len(image_data.train))
    search = GridSearchCV(make_detector("padim"), {"regularization": [0.01, 10.0]},
                          cv=[(fit_on_normals, np.arange(len(image_data.train), len(X)))]).fit(X, y)
    assert search.best_params_["regularization"] in (0.01, 10.0)
    assert search.best_score_ >= 0.9 and search.best_estimator_.mean_ is not None


@pytest.mark.parametrize("name", WITH_MAPS)
def test_map_peak_lies_on_the_pasted_square(name, fitted, image_data):
    maps = fitted(name).explain(image_data.defect).localization
    assert maps.shape == (len(image_data.defect), IMAGE_SIZE, IMAGE_SIZE)
    assert np.isfinite(maps).all()
    tolerance = 4
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        r, c = np.unravel_index(np.argmax(anomaly_map), anomaly_map.shape)
        assert row - tolerance <= r < row + SQUARE + tolerance, (r, c, row, col)
        assert col - tolerance <= c < col + SQUARE + tolerance, (r, c, row, col)


@pytest.mark.parametrize("name", WITH_MAPS)
def test_map_is_hotter_inside_the_square_than_outside(name, fitted, image_data):
    maps = fitted(name).explain(image_data.defect).localization
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        inside = np.zeros(anomaly_map.shape, dtype=bool)
        inside[row : row + SQUARE, col : col + SQUARE] = True
        assert anomaly_map[inside].mean() > anomaly_map[~inside].mean()


def test_gaussian_gives_no_maps(fitted, image_data):
    det = copy.copy(fitted("gaussian"))
    scores = det.decision_function(image_data.test)
    det.set_threshold(float(np.median(scores)))
    pred = det.detect(image_data.test)
    assert pred.localization is None
    np.testing.assert_array_equal(pred.scores, scores)
    np.testing.assert_array_equal(pred.labels, (scores >= det.threshold_).astype(np.int8))
    assert not det.explains
    with pytest.raises(DataError, match="whole images"):
        det.explain(image_data.test)


@pytest.mark.parametrize("name", WITH_MAPS)
def test_detect_carries_the_maps_and_predict_the_labels(name, fitted, image_data):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, Fixed(0.0))
    pred = det.detect(image_data.defect)
    explanation = det.explain(image_data.defect)
    assert pred.localization.shape == (len(image_data.defect), IMAGE_SIZE, IMAGE_SIZE)
    np.testing.assert_array_equal(pred.localization, explanation.localization)
    np.testing.assert_array_equal(pred.scores, explanation.scores)
    # The image score is the largest patch score, so scoring without maps gives the same.
    np.testing.assert_array_equal(pred.scores, det.decision_function(image_data.defect))
    assert pred.labels.tolist() == [1] * len(image_data.defect)  # every score >= 0
    labels = det.predict(image_data.defect)
    assert labels.dtype == np.int8 and labels.tolist() == pred.labels.tolist()


# --- thresholds and fitting state ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_predict_without_threshold_raises(name, fitted, image_data):
    det = copy.copy(fitted(name))
    assert det.threshold_ is None
    with pytest.raises(NotFittedError, match="threshold"):
        det.predict(image_data.normal)
    with pytest.raises(NotFittedError, match="threshold"):
        det.detect(image_data.normal)


@pytest.mark.parametrize("name", ALL)
def test_calibrated_at_zero_false_alarms_flags_none_of_the_calibration_normals(name, fitted, image_data):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    assert det.threshold_ > det.decision_function(image_data.calib).max()
    assert det.predict(image_data.calib).tolist() == [0] * len(image_data.calib)
    assert det.calibration_.n_items == len(image_data.calib)
    assert fitted(name).threshold_ is None  # the shared fitted detector was not touched


@pytest.mark.parametrize("name", ALL)
def test_scoring_before_fit_raises(name, image_data):
    det = make_detector(name).set_threshold(1.0)
    for method in (det.decision_function, det.predict, det.detect):
        with pytest.raises(NotFittedError, match="fit"):
            method(image_data.normal)


@pytest.mark.parametrize("name", ["padim", "gaussian"])
def test_covariance_models_need_two_images(name, image_data):
    with pytest.raises(DataError, match="2"):
        make_detector(name).fit(image_data.train[:1])


# --- inputs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_file_paths_list_of_arrays_and_4d_array_give_the_same_scores(name, fitted, image_data, tmp_path):
    det = fitted(name)
    paths = []
    for i, img in enumerate(image_data.test):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(img).save(paths[-1])
    from_array = det.decision_function(image_data.test)
    assert np.array_equal(det.decision_function(paths), from_array)
    assert np.array_equal(det.decision_function([str(p) for p in paths]), from_array)
    assert np.array_equal(det.decision_function(list(image_data.test)), from_array)


def test_greyscale_images_are_accepted(fitted, image_data):
    det = fitted("patchcore")
    rgb = image_data.normal  # grey textures: the three channels are equal
    grey_2d = [img[..., 0] for img in rgb]
    grey_1ch = rgb[..., :1]
    expected = det.decision_function(rgb)
    assert np.array_equal(det.decision_function(grey_2d), expected)
    assert np.array_equal(det.decision_function(grey_1ch), expected)


def test_images_of_other_sizes_are_resized(fitted, image_data):
    det = fitted("padim")
    big = [np.asarray(Image.fromarray(img).resize((128, 96), Image.BILINEAR)) for img in image_data.test]
    scores = det.decision_function(big)
    assert scores.shape == (len(big),)
    assert roc_auc_score(image_data.labels, scores) >= 0.9


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 64, 64, 3), dtype=np.float32),  # wrong dtype
        [np.zeros((64, 64, 3), dtype=np.int64)],
        [np.zeros((64, 64, 3), dtype=bool)],
        np.zeros((2, 64, 64, 4), dtype=np.uint8),  # RGBA array
        np.zeros((2, 64, 64), dtype=np.uint8),  # N x H x W is ambiguous: refused
        [np.zeros((64, 64, 2), dtype=np.uint8)],
        [np.zeros(64, dtype=np.uint8)],
        [],
        np.zeros((0, 64, 64, 3), dtype=np.uint8),
        [np.zeros((0, 5, 3), dtype=np.uint8)],  # no pixels: was scored as if all black
        5,  # not a list: list(5) raised TypeError
    ],
    ids=["float32", "int64", "bool", "rgba", "nhw", "2ch", "1d", "empty-list", "empty-array", "no-pixels",
         "number"],
)
def test_bad_image_inputs_raise_data_error(fitted, bad):
    with pytest.raises(DataError):
        fitted("patchcore").decision_function(bad)


def test_a_single_path_must_be_wrapped_in_a_list(fitted, tmp_path, image_data):
    Image.fromarray(image_data.normal[0]).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="list"):
        fitted("patchcore").decision_function(str(tmp_path / "a.png"))


def test_missing_image_file_raises_data_error(fitted, tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        fitted("patchcore").decision_function([tmp_path / "missing.png"])


@pytest.mark.parametrize("size", [72, 100, 16, 2048, 64.0, True])
def test_bad_image_size_raises_data_error(size, image_data):
    with pytest.raises(DataError, match="image_size"):
        make_detector("patchcore", image_size=size).fit(image_data.train)


@pytest.mark.parametrize("name, param, value", [
    ("padim", "backbone", "resnet18"),
    ("gaussian", "batch_size", 0),
    ("gaussian", "weights", 3),
    ("patchcore", "threads", 0),
    ("patchcore", "threads", -1),
    ("patchcore", "threads", 1.5),
    ("patchcore", "coreset_ratio", 0.0),
    ("patchcore", "coreset_ratio", -0.5),
    ("patchcore", "coreset_ratio", 1.5),
    ("patchcore", "coreset_ratio", "0.1"),
    ("patchcore", "projection_dim", -1),
    ("patchcore", "seed", 1.5),
    ("padim", "regularization", 0.0),
    ("padim", "regularization", float("nan")),
    ("padim", "n_features", 0),
    ("padim", "seed", "a"),
    ("padim", "resize", "crop"),
])
def test_bad_parameters_raise_data_error_naming_them_before_any_work(name, param, value, image_data, monkeypatch):
    det = make_detector(name, **{param: value})
    monkeypatch.setattr(type(det), "_batches", lambda *a: pytest.fail("work began before the parameters were checked"))
    with pytest.raises(DataError, match=param):
        det.fit(image_data.train)


def test_a_model_file_with_parameters_the_detector_refuses_does_not_load(fitted, tmp_path):
    path = fitted("patchcore").save(tmp_path / "pc")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["params"]["image_size"] = 72
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)  # anyone can recompute it
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="image_size"):
        modelfile.load(path)


def test_thread_settings_are_restored_after_use(fitted, image_data):
    import faiss
    from threadpoolctl import threadpool_info

    def settings():
        pools = sorted((i["filepath"], i["num_threads"]) for i in threadpool_info())
        return torch.get_num_threads(), faiss.omp_get_max_threads(), pools

    original = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from the detector's threads=1
    try:
        before = settings()
        det = copy.copy(fitted("patchcore"))
        det.threads = 1
        det.decision_function(image_data.normal[:1])
        assert settings() == before
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)


def test_batch_size_does_not_change_scores(fitted, image_data):
    det = fitted("padim")
    small = copy.copy(det)
    small.batch_size = 3
    np.testing.assert_allclose(small.decision_function(image_data.test), det.decision_function(image_data.test),
                               rtol=1e-4)


def test_patchcore_distances_stay_exact_near_bank_entries_of_large_norm():
    # Normal patches lie close to bank entries whose norm dwarfs the distance: there float32
    # |x|^2 - 2xy + |y|^2 (faiss's, and the export graph's search) cancels to noise (on bottle's
    # maps, up to 1e-3). Both the torch path and the graph must give the float64 distance.
    rng = np.random.default_rng(0)
    bank = (50 + rng.normal(size=(200, 64))).astype(np.float32)
    rows = bank[rng.integers(0, 200, 32)] + rng.normal(scale=0.01, size=(32, 64)).astype(np.float32)
    features = torch.from_numpy(rows.reshape(2, 4, 4, 64)).permute(0, 3, 1, 2)
    det = PatchCore()
    det.memory_bank_ = bank
    expected = cdist(rows.astype(np.float64), bank.astype(np.float64)).min(1)
    np.testing.assert_allclose(det._score_encoded(features).numpy().ravel(), expected, rtol=1e-5, atol=0)
    np.testing.assert_allclose(det._export_scores(features).numpy().ravel(), expected, rtol=1e-5, atol=0)


def test_detectors_share_one_backbone_per_process(fitted):
    # Building one costs a weights load: clones, reloads and served models reuse it.
    assert make_detector("padim").extractor is fitted("patchcore").extractor
    assert make_detector("padim", backbone="efficientnet-lite1").extractor is not fitted("patchcore").extractor


# --- PatchCore's coreset -----------------------------------------------------------------------------


def test_greedy_coreset_picks_n_distinct_indices():
    feats = torch.from_numpy(np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32))
    for projection_dim in (0, 8):
        idx = greedy_coreset(feats, 40, projection_dim, seed=3)
        assert len(idx) == 40
        assert len(set(idx.tolist())) == 40
        assert idx.min() >= 0 and idx.max() < 300


def test_greedy_coreset_never_repeats_an_index_among_duplicates():
    # 5 distinct points, each 20 times: once all 5 are chosen every remaining distance is 0,
    # and the picks must still be new rows.
    base = np.random.default_rng(1).normal(size=(5, 16)).astype(np.float32) * 10 + 50
    feats = torch.from_numpy(np.repeat(base, 20, axis=0))
    for projection_dim in (0, 8):
        idx = greedy_coreset(feats, 12, projection_dim, seed=0)
        assert len(set(idx.tolist())) == 12
        # The first 5 picks cover the 5 distinct points.
        assert sorted(set((idx[:5] // 20).tolist())) == [0, 1, 2, 3, 4]


def test_greedy_coreset_without_projection_is_farthest_point_sampling():
    # Points on a plane; whichever point comes first, the second is the one farthest from it.
    points = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [10, 0], [5, 5], [0, 7], [3, 2]], dtype=np.float32)
    for seed in range(8):
        idx = greedy_coreset(torch.from_numpy(points), 4, projection_dim=0, seed=seed)
        first = idx[0]
        dist = np.linalg.norm(points - points[first], axis=1)
        assert idx[1] == np.argmax(dist)
        # Each later pick maximises the distance to the nearest point already chosen.
        for k in range(2, 4):
            nearest = np.min(np.linalg.norm(points[:, None] - points[idx[:k]][None], axis=2), axis=1)
            assert idx[k] == np.argmax(nearest)


def test_greedy_coreset_hand_checked_line():
    # On a line 0, 1, 2, 3, 10 the farthest point from any of 0..3 is 10, and from 10 it is 0.
    points = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0]])
    for seed in range(6):
        first, second = greedy_coreset(points, 2, projection_dim=0, seed=seed)
        assert second == (0 if first == 4 else 4)


def test_greedy_coreset_n_at_least_all_rows_keeps_everything():
    feats = torch.randn(10, 4)
    np.testing.assert_array_equal(greedy_coreset(feats, 10, 0, 0), np.arange(10))
    np.testing.assert_array_equal(greedy_coreset(feats, 15, 0, 0), np.arange(10))


def test_coreset_ratio_one_keeps_every_patch(image_data):
    train = image_data.train[:4]
    det = make_detector("patchcore", coreset_ratio=1.0).fit(train)
    patches_per_image = (IMAGE_SIZE // 8) ** 2  # patch features on the stride-8 grid
    assert det.memory_bank_.shape[0] == len(train) * patches_per_image
    # Every training patch is in the bank, so training images score (almost) zero everywhere.
    np.testing.assert_allclose(det.decision_function(train), 0.0, atol=1e-2)
    assert det.decision_function(image_data.defect[:1])[0] > 1.0


def test_coreset_ratio_sets_the_bank_size(fitted, image_data):
    det = fitted("patchcore")  # coreset_ratio=0.25
    n_patches = len(image_data.train) * (IMAGE_SIZE // 8) ** 2
    assert det.memory_bank_.shape[0] == max(math.ceil(0.25 * n_patches), min(MIN_BANK, n_patches))
    assert len(np.unique(det.memory_bank_, axis=0)) == det.memory_bank_.shape[0]


def test_patchcore_fit_is_deterministic(fitted, image_data):
    again = make_detector("patchcore").fit(image_data.train)
    assert np.array_equal(again.memory_bank_, fitted("patchcore").memory_bank_)


def test_padim_channel_subset(image_data):
    det = make_detector("padim", n_features=20).fit(image_data.train)
    assert det.mean_.shape == ((IMAGE_SIZE // 8) ** 2, 20)
    assert det.precision_.shape == ((IMAGE_SIZE // 8) ** 2, 20, 20)
    assert roc_auc_score(image_data.labels, det.decision_function(image_data.test)) >= 0.9
    with pytest.raises(DataError, match="n_features"):
        make_detector("padim", n_features=10_000).fit(image_data.train)


def test_chunked_coreset_is_greedy_selection_on_one_chunk():
    feats = torch.from_numpy(np.random.default_rng(2).normal(size=(500, 12)).astype(np.float32))
    np.testing.assert_array_equal(chunked_coreset(feats, 40, 8, 3, chunk=500), greedy_coreset(feats, 40, 8, 3))


def test_chunked_coreset_keeps_each_chunks_share_by_greedy_selection():
    feats = torch.from_numpy(np.random.default_rng(3).normal(size=(1000, 12)).astype(np.float32))
    idx = chunked_coreset(feats, 100, 0, 1, chunk=300)  # chunks of 250 rows: 25 picks each
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    for c in range(4):
        part = idx[(idx >= 250 * c) & (idx < 250 * (c + 1))]
        np.testing.assert_array_equal(part, 250 * c + greedy_coreset(feats[250 * c : 250 * (c + 1)], 25, 0, 1))
    uneven = chunked_coreset(feats, 101, 0, 1, chunk=300)  # shares by largest remainders
    assert len(uneven) == 101


def test_chunked_coreset_work_grows_linearly_with_the_rows(monkeypatch):
    """Greedy selection of k rows among m costs k * m; with a fixed share kept, chunking makes
    the total linear in the rows where one selection would be quadratic."""
    work = []
    real = patchcore.greedy_coreset
    monkeypatch.setattr(patchcore, "greedy_coreset", lambda f, k, p, s: work.append(k * len(f)) or real(f, k, p, s))
    totals = []
    for rows in (1000, 2000, 4000):
        work.clear()
        feats = torch.from_numpy(np.random.default_rng(rows).normal(size=(rows, 8)).astype(np.float32))
        chunked_coreset(feats, rows // 20, 0, 0, chunk=500)
        totals.append(sum(work))
    assert totals[1] == 2 * totals[0] and totals[2] == 4 * totals[0]


def test_chunked_coreset_covers_the_rows_about_as_well_as_one_selection():
    rng = np.random.default_rng(4)
    feats = torch.from_numpy(np.concatenate([rng.normal(c, 1.0, size=(400, 6)) for c in range(5)]).astype(np.float32))

    def radius(idx):  # the largest distance from a row to its nearest kept row
        return torch.cdist(feats, feats[idx]).min(1).values.max().item()

    assert radius(chunked_coreset(feats, 100, 0, 0, chunk=500)) <= 1.5 * radius(greedy_coreset(feats, 100, 0, 0))


# --- aspect ratios -------------------------------------------------------------------------------------


def test_padding_keeps_the_aspect_ratio_and_maps_stay_in_image_coordinates(image_data):
    """Wide images (64 x 128) with a square defect: padded to the square, the map's peak is at
    the defect once the map is brought back to the image's own size."""
    rng = np.random.default_rng(8)
    wide = [np.concatenate([a, b], axis=1) for a, b in zip(image_data.train, image_data.train[::-1])]
    det = make_detector("patchcore", image_size=128, resize="pad").fit(wide)
    image = np.concatenate([image_data.normal[0], image_data.normal[1]], axis=1)
    row, col = int(rng.integers(20, 30)), int(rng.integers(80, 100))
    image[row : row + SQUARE, col : col + SQUARE] = 255
    anomaly_map = det.explain([image]).localization[0]
    assert anomaly_map.shape == (128, 128)
    r, c = np.unravel_index(np.argmax(upsample_map(anomaly_map, (64, 128))), (64, 128))
    assert row - 4 <= r < row + SQUARE + 4 and col - 4 <= c < col + SQUARE + 4


def test_under_padding_the_image_score_ignores_the_padding(image_data):
    det = make_detector("patchcore", image_size=64, resize="pad").fit(image_data.train)
    tall = [np.concatenate([image_data.normal[0], image_data.normal[1]], axis=0)]  # 128 x 64
    square, (box,) = load_square(tall, 64, "pad")
    assert box == (0, 16, 64, 32)  # 64 x 32 in the square, centred
    assert (square[0][:, :16] == PAD_VALUE).all() and (square[0][:, 48:] == PAD_VALUE).all()
    patch = det._score_encoded(det._encode(to_tensor(square)))[0]  # the 8 x 8 patch grid
    assert det.decision_function(tall)[0] == float(patch[:, 2:6].max())


def test_squash_and_pad_agree_on_square_images(fitted, image_data):
    padded = make_detector("patchcore", resize="pad").fit(image_data.train)
    np.testing.assert_array_equal(padded.decision_function(image_data.test),
                                  fitted("patchcore").decision_function(image_data.test))


# --- save and load -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_reload_gives_the_same_scores_maps_and_calibration(name, fitted, image_data, tmp_path):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    path = det.save(tmp_path / name)
    loaded = type(det).load(path)
    assert type(loaded) is type(det)
    assert loaded.get_params() == det.get_params()
    assert loaded.threshold_ == det.threshold_ and loaded.calibration_ == det.calibration_
    pred, loaded_pred = det.detect(image_data.test), loaded.detect(image_data.test)
    assert_same_scores(loaded_pred.scores, pred.scores)
    if pred.localization is None:
        assert loaded_pred.localization is None
    else:
        assert_same_scores(loaded_pred.localization, pred.localization, "maps")
    np.testing.assert_array_equal(loaded_pred.labels, pred.labels)
    # Loading goes through the generic loader too.
    assert_same_scores(modelfile.load(path).decision_function(image_data.test), pred.scores)


def test_a_small_training_set_keeps_a_minimum_bank(image_data):
    det = make_detector("patchcore", coreset_ratio=0.001).fit(image_data.train)
    n_patches = len(image_data.train) * (IMAGE_SIZE // 8) ** 2
    assert math.ceil(0.001 * n_patches) < MIN_BANK
    assert det.memory_bank_.shape[0] == min(MIN_BANK, n_patches)
