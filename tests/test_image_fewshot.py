"""Few-shot fitting (normalcy.image.fewshot) on tiny synthetic images: the augmentation, the
orientation check, the memory bank, the threshold rule and `normalcy image fit --shots`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from clirunner import run_in_process as run
from conftest import IMAGE_SIZE, make_detector
from normalcy.core.errors import DataError
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed
from normalcy.image import fewshot
from normalcy.image.demo import make_dataset, make_part


def test_a_view_keeps_shape_and_dtype_and_is_fixed_by_the_seed(image_data):
    image = image_data.train[0]
    for rotate in (False, True):
        a = fewshot.augment_view(image, np.random.default_rng(3), rotate)
        b = fewshot.augment_view(image, np.random.default_rng(3), rotate)
        c = fewshot.augment_view(image, np.random.default_rng(4), rotate)
        assert a.shape == image.shape and a.dtype == np.uint8
        assert np.array_equal(a, b)
        assert not np.array_equal(a, c) and not np.array_equal(a, image)
    views = fewshot.augmented_views(list(image_data.train[:2]), 5, True, seed=7)
    assert len(views) == 5
    assert all(np.array_equal(v, w) for v, w in zip(views, fewshot.augmented_views(list(image_data.train[:2]), 5,
                                                                                    True, seed=7)))


def test_a_mild_view_stays_close_to_the_image_and_fills_from_the_border():
    # A flat image with a dark centre: a mild view moves the centre a little, and the corners
    # moved in from outside the frame take the border colour, not black.
    image = np.full((64, 64, 3), 200, np.uint8)
    image[24:40, 24:40] = 20
    view = fewshot.augment_view(image, np.random.default_rng(0), rotate=False)
    assert view[:4, :4].min() >= 150
    dark = np.argwhere(view[..., 0] < 100).mean(axis=0)
    assert np.abs(dark - 31.5).max() <= fewshot.SHIFT * 64 + 2


def test_shots_are_drawn_by_seed_and_bad_counts_are_data_errors():
    items = list(range(20))
    assert fewshot.pick_shots(items, 4, 1) == fewshot.pick_shots(items, 4, 1)
    assert fewshot.pick_shots(items, 4, 1) != fewshot.pick_shots(items, 4, 2)
    assert len(set(fewshot.pick_shots(items, 20, 0))) == 20
    for k in (0, -1, 21, 1.5, True):
        with pytest.raises(DataError):
            fewshot.pick_shots(items, k, 0)


def _disc(rng, notch: bool = False) -> np.ndarray:
    """The demo's disc at 64 px; with `notch`, a label of three bright horizontal lines (a
    fixed orientation: turned 90 degrees, the lines run the way no shot's do)."""
    part = np.asarray(Image.fromarray(make_part(rng)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)).copy()
    if notch:
        part[22:42:6, 14:50] = 250
        part[23:43:6, 14:50] = 250
    return part


def test_the_orientation_check_allows_turning_a_disc_but_not_a_part_with_a_fixed_side():
    rng = np.random.default_rng(0)
    detector = make_detector("patchcore")
    free, free_ratio = fewshot.orientation_free(detector, [_disc(rng) for _ in range(2)])
    fixed, fixed_ratio = fewshot.orientation_free(detector, [_disc(rng, notch=True) for _ in range(2)])
    assert free and free_ratio <= fewshot.ORIENTATION_MARGIN
    assert not fixed and fixed_ratio > fewshot.ORIENTATION_MARGIN


@pytest.fixture(scope="module")
def few(image_data):
    shots = list(image_data.train[:2])
    detector = make_detector("patchcore", coreset_ratio=0.01)  # the default ratio: widened
    return shots, fewshot.fit_few_shot(detector, shots, FalseAlarmRate(0.01), "rotate", seed=0)


def test_two_shots_rank_defects_above_normals_with_the_whole_bank_kept(few, image_data):
    shots, detector = few
    scores = detector.decision_function(image_data.test)
    assert roc_auc_score(image_data.labels, scores) >= 0.9
    n_patches = (len(shots) + fewshot.VIEWS) * (IMAGE_SIZE // 8) ** 2  # under FEWSHOT_BANK: nothing dropped
    assert detector.memory_bank_.shape[0] == n_patches
    assert detector.fewshot_ == {"shots": 2, "augment": "rotate", "rotate": True, "views": fewshot.VIEWS,
                                 "orientation_ratio": None, "synthetic_recall": detector.fewshot_["synthetic_recall"]}


def test_the_threshold_is_the_margin_over_fresh_views_quantile(few):
    shots, detector = few
    fresh = fewshot.augmented_views(shots, fewshot.CALIBRATION_VIEWS, True, seed=1)
    expected = fewshot.THRESHOLD_MARGIN * FalseAlarmRate(0.01).compute(detector.decision_function(fresh))
    assert detector.threshold_ == pytest.approx(expected, rel=1e-9)
    assert detector.calibration_.rule == "fpr:0.01 few-shot" and detector.calibration_.n_items == len(fresh)
    assert "few-shot threshold" in detector.calibration_.note
    assert 0.0 <= detector.fewshot_["synthetic_recall"] <= 1.0


def test_a_fixed_threshold_is_kept_and_a_set_coreset_ratio_is_not_widened(image_data):
    detector = make_detector("patchcore", coreset_ratio=0.05)
    fewshot.fit_few_shot(detector, list(image_data.train[:1]), Fixed(3.5), "mild", seed=0)
    assert detector.threshold_ == 3.5 and detector.coreset_ratio == 0.05
    assert detector.fewshot_["rotate"] is False


def test_bad_few_shot_settings_are_data_errors(image_data):
    shots = list(image_data.train[:1])
    with pytest.raises(DataError, match="augment"):
        fewshot.fit_few_shot(make_detector("patchcore"), shots, None, "spin")
    with pytest.raises(DataError, match="f1"):
        fewshot.fit_few_shot(make_detector("patchcore"), shots, F1Optimal())
    with pytest.raises(DataError, match="at least one"):
        fewshot.fit_few_shot(make_detector("patchcore"), [], None)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("fewshot") / "parts", n_train=6, n_good=2, n_per_defect=1)


def test_fit_with_shots_writes_a_model_that_predicts(parts, tmp_path):
    model = tmp_path / "m"
    result = run("image", "fit", "--data", str(parts), "--out", str(model), "--shots", "2", "--seed", "3",
                 "--image-size", "64", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "2 shots + 32 augmented views, augment auto: rotations" in result.stdout
    assert "few-shot threshold" in result.stderr
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["calibration"]["rule"] == "fpr:0.01 few-shot"
    assert manifest["calibration"]["threshold"] == manifest["threshold"]
    out = tmp_path / "pred"
    result = run("image", "predict", str(model), str(parts / "test"), "--out", str(out), "--threads", "1")
    assert result.returncode == 0, result.stderr
    header = (out / "results.csv").read_text().splitlines()[0]
    assert header == "path,score,label,threshold,overlay,error"


@pytest.mark.parametrize("shots,message", [("0", "positive integer"), ("7", "only 6 training images")])
def test_fit_with_impossible_shots_fails_clearly(parts, tmp_path, shots, message):
    result = run("image", "fit", "--data", str(parts), "--out", str(tmp_path / "m"), "--shots", shots,
                 "--image-size", "64", "--threads", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert not (tmp_path / "m").exists()


def test_the_shots_benchmark_reports_the_mean_and_spread_of_its_seeds(parts, tmp_path):
    from normalcy.image.fewshot_benchmark import run_shots

    json_out, md_out, records = run_shots(parts, [1], {"image_size": IMAGE_SIZE, "threads": 1}, tmp_path / "s.json",
                                          seeds=2)
    (record,) = records
    assert record["shots"] == 1 and record["seeds"] == 2 and len(record["runs"]) == 2
    values = [r["image_auroc"] for r in record["runs"]]
    assert record["image_auroc_mean"] == pytest.approx(np.mean(values))
    assert record["image_auroc_std"] == pytest.approx(np.std(values))
    assert json.loads(json_out.read_text())["records"][0]["image_auroc_mean"] == record["image_auroc_mean"]
    assert "| patchcore | parts | 1 | 2 | auto |" in md_out.read_text()
