"""One model for several products: routing, the common score scale, the model file, and the
CLI (`fit --data A --data B`, then `predict` with a product column)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from clirunner import run_in_process as run
from contract_image import paste_square, texture
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.modelfile import load
from normalcy.image.multiproduct import MultiProduct

SIZE = 64
PARAMS = {"image_size": SIZE, "threads": 1, "holdout": 0.2, "detector_params": {"coreset_ratio": 0.25}}


def striped(rng) -> np.ndarray:
    """A second product that looks nothing like the first: red, with dark vertical stripes."""
    img = texture(rng).astype(float)
    img[:, ::8] = 30
    img[..., 0] = 200
    return img.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    grey, red = [texture(rng) for _ in range(10)], [striped(rng) for _ in range(10)]
    model = MultiProduct(**PARAMS).fit(grey + red, ["grey"] * 10 + ["red"] * 10)
    test = [texture(rng), striped(rng), paste_square(rng, texture(rng))[0], paste_square(rng, striped(rng))[0]]
    return model, test


def test_routes_each_image_to_its_product(fitted):
    model, test = fitted
    assert model.products_ == ["grey", "red"]
    assert model.route(test) == ["grey", "red", "grey", "red"]  # defects do not change the product
    scores, products = model.scores_and_products(test)
    assert products == ["grey", "red", "grey", "red"]
    assert scores[2] > scores[0] and scores[3] > scores[1]
    prediction, routed = model.detect_with_products(test)  # what predict's results.csv uses
    plain = model.detect(test)
    assert routed == products
    np.testing.assert_array_equal(prediction.scores, plain.scores)
    np.testing.assert_array_equal(prediction.localization, plain.localization)


def test_scores_are_each_products_detector_on_one_scale(fitted):
    model, test = fitted
    scores = model.decision_function(test)
    for i, k in enumerate([0, 1, 0, 1]):
        raw = model.detectors_[k].decision_function([test[i]])[0]
        assert scores[i] == pytest.approx((raw - model.centre_[k]) / model.spread_[k], rel=1e-9)
    maps = model.explain(test).localization
    sub_maps = model.detectors_[1].explain([test[3]]).localization[0]
    np.testing.assert_allclose(maps[3], (sub_maps - model.centre_[1]) / model.spread_[1], rtol=1e-5, atol=1e-5)
    assert np.isfinite(model.threshold_)


def test_save_and_load_give_the_same_scores(fitted, tmp_path):
    model, test = fitted
    model.save(tmp_path / "m")
    again = load(tmp_path / "m")
    assert isinstance(again, MultiProduct) and again.products_ == model.products_
    assert_same_scores(again.decision_function(test), model.decision_function(test))
    assert again.threshold_ == model.threshold_ and again.route(test) == model.route(test)


def test_a_damaged_state_is_refused(fitted, tmp_path):
    model, _ = fitted
    arrays, meta = model._get_state()
    broken = MultiProduct(**PARAMS)
    with pytest.raises(ModelFileError, match="product names"):
        broken._set_state(arrays, {**meta, "products": ["only"]})
    with pytest.raises(ModelFileError, match="router/labels"):
        broken._set_state({**arrays, "router/labels": arrays["router/labels"][:3]}, meta)


def test_fit_needs_products(fitted):
    images = fitted[1]
    with pytest.raises(DataError, match="each training image's product"):
        MultiProduct(**PARAMS).fit(images)
    with pytest.raises(DataError, match="at least 2 products"):
        MultiProduct(**PARAMS).fit(images, ["a"] * 4)
    with pytest.raises(DataError, match="detector_params must not set image_size"):
        MultiProduct(detector_params={"image_size": 32}).fit(images, ["a", "a", "b", "b"])


def test_cli_fits_one_model_for_two_folders_and_predict_names_the_product(tmp_path):
    rng = np.random.default_rng(1)
    for name, make in (("grey", texture), ("red", striped)):
        (tmp_path / name).mkdir()
        for i in range(10):
            Image.fromarray(make(rng)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "new").mkdir()
    Image.fromarray(texture(rng)).save(tmp_path / "new" / "a.png")
    Image.fromarray(paste_square(rng, striped(rng))[0]).save(tmp_path / "new" / "b.png")
    result = run("image", "fit", "--data", str(tmp_path / "grey"), "--data", str(tmp_path / "red"), "--out",
                 str(tmp_path / "m"), "--image-size", str(SIZE), "--threads", "1", "--holdout", "0.2",
                 "--param", "coreset_ratio=0.25")
    assert result.returncode == 0, result.stderr
    result = run("image", "predict", str(tmp_path / "m"), str(tmp_path / "new"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out" / "results.csv") as fh:
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(fh)}
    assert rows["a.png"]["product"] == "grey" and rows["b.png"]["product"] == "red"
    assert float(rows["b.png"]["score"]) > float(rows["a.png"]["score"])  # 4 held-out images: no label check
