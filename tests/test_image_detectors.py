"""Tests for the image detectors (PatchCore, PaDiM, GaussianAD) on tiny synthetic textures.

Fixtures in conftest.py: `image_data` (64 x 64 smooth-noise images; defects are a white
16 x 16 square pasted inside the frame) and `fitted(name)` (a detector fitted once per session).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from normalcy.core import modelfile
from normalcy.core.errors import DataError, NotFittedError
from normalcy.core.threshold import FalseAlarmRate, Fixed
from normalcy.image import DETECTORS, GaussianAD, PaDiM, PatchCore
from normalcy.image.patchcore import MIN_BANK, greedy_coreset

from conftest import IMAGE_SIZE, SQUARE, make_detector

ALL = ["patchcore", "padim", "gaussian"]
WITH_MAPS = ["patchcore", "padim"]


def test_detectors_table_names_the_three_classes():
    assert DETECTORS == {"patchcore": PatchCore, "padim": PaDiM, "gaussian": GaussianAD}


# --- detection and localisation ----------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_defects_rank_above_normal_images(name, fitted, image_data):
    scores = fitted(name).score(image_data.test)
    assert scores.shape == (len(image_data.test),)
    assert scores.dtype == np.float64
    assert np.isfinite(scores).all()
    assert roc_auc_score(image_data.labels, scores) >= 0.9


@pytest.mark.parametrize("name", WITH_MAPS)
def test_map_peak_lies_on_the_pasted_square(name, fitted, image_data):
    scores, maps = fitted(name).score_maps(image_data.defect)
    assert maps.shape == (len(image_data.defect), IMAGE_SIZE, IMAGE_SIZE)
    assert np.isfinite(maps).all()
    tolerance = 4
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        r, c = np.unravel_index(np.argmax(anomaly_map), anomaly_map.shape)
        assert row - tolerance <= r < row + SQUARE + tolerance, (r, c, row, col)
        assert col - tolerance <= c < col + SQUARE + tolerance, (r, c, row, col)


@pytest.mark.parametrize("name", WITH_MAPS)
def test_map_is_hotter_inside_the_square_than_outside(name, fitted, image_data):
    _, maps = fitted(name).score_maps(image_data.defect)
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        inside = np.zeros(anomaly_map.shape, dtype=bool)
        inside[row : row + SQUARE, col : col + SQUARE] = True
        assert anomaly_map[inside].mean() > anomaly_map[~inside].mean()


def test_gaussian_gives_no_maps(fitted, image_data):
    det = copy.copy(fitted("gaussian"))
    scores, maps = det.score_maps(image_data.test)
    assert maps is None
    det.threshold_ = float(np.median(scores))
    pred = det.predict(image_data.test)
    assert pred.localization is None
    np.testing.assert_array_equal(pred.labels, (scores >= det.threshold_).astype(np.int8))


@pytest.mark.parametrize("name", WITH_MAPS)
def test_predict_carries_the_maps(name, fitted, image_data):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, Fixed(0.0))
    pred = det.predict(image_data.defect)
    _, maps = det.score_maps(image_data.defect)
    assert np.array_equal(pred.localization, maps)
    assert pred.labels.tolist() == [1] * len(image_data.defect)  # every score >= 0


# --- thresholds and fitting state ---------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_predict_without_threshold_raises(name, fitted, image_data):
    det = copy.copy(fitted(name))
    assert det.threshold_ is None
    with pytest.raises(NotFittedError, match="threshold"):
        det.predict(image_data.normal)


@pytest.mark.parametrize("name", ALL)
def test_calibrated_at_zero_false_alarms_flags_none_of_the_calibration_normals(name, fitted, image_data):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    assert det.threshold_ > det.score(image_data.calib).max()
    pred = det.predict(image_data.calib)
    assert pred.labels.tolist() == [0] * len(image_data.calib)
    assert fitted(name).threshold_ is None  # the shared fitted detector was not touched


@pytest.mark.parametrize("name", ALL)
def test_score_before_fit_raises(name, image_data):
    det = make_detector(name)
    with pytest.raises(NotFittedError, match="fit"):
        det.score(image_data.normal)
    with pytest.raises(NotFittedError):
        det.score_maps(image_data.normal)


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
    from_array = det.score(image_data.test)
    assert np.array_equal(det.score(paths), from_array)
    assert np.array_equal(det.score([str(p) for p in paths]), from_array)
    assert np.array_equal(det.score(list(image_data.test)), from_array)


def test_greyscale_images_are_accepted(fitted, image_data):
    det = fitted("patchcore")
    rgb = image_data.normal  # grey textures: the three channels are equal
    grey_2d = [img[..., 0] for img in rgb]
    grey_1ch = rgb[..., :1]
    expected = det.score(rgb)
    assert np.array_equal(det.score(grey_2d), expected)
    assert np.array_equal(det.score(grey_1ch), expected)


def test_images_of_other_sizes_are_resized(fitted, image_data):
    det = fitted("padim")
    big = [np.asarray(Image.fromarray(img).resize((128, 96), Image.BILINEAR)) for img in image_data.test]
    scores = det.score(big)
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
    ],
    ids=["float32", "int64", "bool", "rgba", "nhw", "2ch", "1d", "empty-list", "empty-array"],
)
def test_bad_image_inputs_raise_data_error(fitted, bad):
    with pytest.raises(DataError):
        fitted("patchcore").score(bad)


def test_a_single_path_must_be_wrapped_in_a_list(fitted, tmp_path, image_data):
    Image.fromarray(image_data.normal[0]).save(tmp_path / "a.png")
    with pytest.raises(DataError, match="list"):
        fitted("patchcore").score(str(tmp_path / "a.png"))


def test_missing_image_file_raises_data_error(fitted, tmp_path):
    with pytest.raises(DataError, match="missing.png"):
        fitted("patchcore").score([tmp_path / "missing.png"])


@pytest.mark.parametrize("size", [72, 100, 16, 2048, 64.0])
def test_bad_image_size_raises_data_error(size, image_data):
    with pytest.raises(DataError, match="image_size"):
        PatchCore(image_size=size, num_threads=1).fit(image_data.train)


def test_unknown_backbone_raises_data_error(image_data):
    with pytest.raises(DataError, match="backbone"):
        PaDiM(backbone="resnet18", image_size=64, num_threads=1).fit(image_data.train)


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_bad_num_threads_raises_data_error(threads, image_data):
    with pytest.raises(DataError, match="num_threads"):
        PatchCore(image_size=64, num_threads=threads).fit(image_data.train)


def test_thread_settings_are_restored_after_use(fitted, image_data):
    import faiss
    from threadpoolctl import threadpool_info

    def settings():
        pools = sorted((i["filepath"], i["num_threads"]) for i in threadpool_info())
        return torch.get_num_threads(), faiss.omp_get_max_threads(), pools

    original = torch.get_num_threads()
    torch.set_num_threads(3)  # differs from the detector's num_threads=1
    try:
        before = settings()
        det = copy.copy(fitted("patchcore"))
        det.num_threads = 1
        det.score(image_data.normal[:1])
        assert settings() == before
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(original)


def test_batch_size_does_not_change_scores(fitted, image_data):
    det = fitted("padim")
    small = copy.copy(det)
    small.batch_size = 3
    np.testing.assert_allclose(small.score(image_data.test), det.score(image_data.test), rtol=1e-4)


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
    det = PatchCore(image_size=IMAGE_SIZE, coreset_ratio=1.0, num_threads=2).fit(train)
    patches_per_image = (IMAGE_SIZE // 8) ** 2  # patch features on the stride-8 grid
    assert det.memory_bank_.shape[0] == len(train) * patches_per_image
    # Every training patch is in the bank, so training images score (almost) zero everywhere.
    scores, maps = det.score_maps(train)
    np.testing.assert_allclose(scores, 0.0, atol=1e-2)
    assert det.score(image_data.defect[:1])[0] > 1.0


def test_coreset_ratio_sets_the_bank_size(fitted, image_data):
    det = fitted("patchcore")  # coreset_ratio=0.25
    n_patches = len(image_data.train) * (IMAGE_SIZE // 8) ** 2
    assert det.memory_bank_.shape[0] == max(math.ceil(0.25 * n_patches), min(MIN_BANK, n_patches))
    assert len(np.unique(det.memory_bank_, axis=0)) == det.memory_bank_.shape[0]


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5])
def test_bad_coreset_ratio_raises_data_error(ratio, image_data):
    with pytest.raises(DataError, match="coreset_ratio"):
        PatchCore(image_size=IMAGE_SIZE, coreset_ratio=ratio, num_threads=1).fit(image_data.train[:2])


def test_patchcore_fit_is_deterministic(fitted, image_data):
    again = make_detector("patchcore").fit(image_data.train)
    assert np.array_equal(again.memory_bank_, fitted("patchcore").memory_bank_)


def test_padim_channel_subset(image_data):
    det = PaDiM(image_size=IMAGE_SIZE, n_features=20, num_threads=2).fit(image_data.train)
    assert det.mean_.shape == ((IMAGE_SIZE // 8) ** 2, 20)
    assert det.precision_.shape == ((IMAGE_SIZE // 8) ** 2, 20, 20)
    assert roc_auc_score(image_data.labels, det.score(image_data.test)) >= 0.9
    with pytest.raises(DataError, match="n_features"):
        PaDiM(image_size=IMAGE_SIZE, n_features=10_000, num_threads=1).fit(image_data.train)


# --- save and load -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_reload_gives_identical_scores_and_maps(name, fitted, image_data, tmp_path):
    det = copy.copy(fitted(name))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    path = det.save(tmp_path / name)
    loaded = type(det).load(path)
    assert type(loaded) is type(det)
    assert loaded.get_params() == det.get_params()
    assert loaded.threshold_ == det.threshold_
    scores, maps = det.score_maps(image_data.test)
    loaded_scores, loaded_maps = loaded.score_maps(image_data.test)
    assert np.array_equal(loaded_scores, scores)
    if maps is None:
        assert loaded_maps is None
    else:
        assert np.array_equal(loaded_maps, maps)
    np.testing.assert_array_equal(loaded.predict(image_data.test).labels, det.predict(image_data.test).labels)
    # Loading goes through the generic loader too.
    assert np.array_equal(modelfile.load(path).score(image_data.test), scores)


def test_a_small_training_set_keeps_a_minimum_bank(image_data):
    det = PatchCore(image_size=IMAGE_SIZE, coreset_ratio=0.001, num_threads=2).fit(image_data.train)
    n_patches = len(image_data.train) * (IMAGE_SIZE // 8) ** 2
    assert math.ceil(0.001 * n_patches) < MIN_BANK
    assert det.memory_bank_.shape[0] == min(MIN_BANK, n_patches)
