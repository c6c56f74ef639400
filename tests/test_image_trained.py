"""The trained image detectors (SimpleNet, FastFlow, DRAEM) on the shared engine, on the tiny
synthetic textures of conftest.py: what they find, what their training guarantees
(determinism, budgets, features computed once, Ctrl-C), their model files and serving.
The contract (clone, save/load to 1e-12, hostile input) is in tests/test_contract.py."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from clirunner import run_in_process as run
from conftest import IMAGE_SIZE, SQUARE, make_detector
from normalcy.core import modelfile
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError, NotFittedError
from normalcy.core.training import train as engine_train
from normalcy.image import DRAEM, FastFlow, SimpleNet
from normalcy.image.demo import make_dataset
from normalcy.image.trainable import DEFECTS_PER_IMAGE, TrainedImageDetector

TRAINED = ["simplenet", "fastflow", "draem"]
# Enough training to find a saturated square on grey noise at 64 px; still about a second each.
FIND = {
    "simplenet": {"max_steps": 60, "patience": None, "hidden": 64},
    "fastflow": {"max_steps": 30, "patience": None, "flow_steps": 4},
    "draem": {"max_steps": 60, "patience": None, "width": 4},
}


@pytest.fixture(scope="module")
def trained(image_data):
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make_detector(name, **FIND[name]).fit(image_data.train)
        return cache[name]

    return get


@pytest.mark.parametrize("name", TRAINED)
def test_trained_detectors_rank_the_pasted_square_above_normal_images(name, trained, image_data):
    det = trained(name)
    scores = det.decision_function(image_data.test)
    assert scores.shape == (len(image_data.test),) and np.isfinite(scores).all()
    assert roc_auc_score(image_data.labels, scores) >= 0.9


def test_fastflow_maps_are_hotter_on_the_square(trained, image_data):
    maps = trained("fastflow").explain(image_data.defect).localization
    assert maps.shape == (len(image_data.defect), IMAGE_SIZE, IMAGE_SIZE)
    for anomaly_map, (row, col) in zip(maps, image_data.corners):
        inside = np.zeros(anomaly_map.shape, dtype=bool)
        inside[row : row + SQUARE, col : col + SQUARE] = True
        assert anomaly_map[inside].mean() > anomaly_map[~inside].mean()


@pytest.mark.parametrize("name", TRAINED)
def test_the_training_record_says_what_happened(name, trained):
    record = trained(name).training_
    assert record["steps"] == FIND[name]["max_steps"] and record["stopped"] == "steps"
    assert 1 <= record["best_step"] <= record["steps"]
    assert record["seconds"] > 0
    if name == "fastflow":  # a mean log-likelihood per feature value
        assert np.isfinite(record["validation"])
    else:  # a mean of two AUROCs
        assert 0.0 <= record["validation"] <= 1.0


@pytest.mark.parametrize("name", TRAINED)
def test_same_seed_same_scores_and_another_seed_differs(name, image_data):
    first = make_detector(name, seed=3).fit(image_data.train).decision_function(image_data.test)
    again = make_detector(name, seed=3).fit(image_data.train).decision_function(image_data.test)
    other = make_detector(name, seed=4).fit(image_data.train).decision_function(image_data.test)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("name", TRAINED)
def test_reload_gives_the_same_scores_maps_and_record(name, trained, image_data, tmp_path):
    det = copy.copy(trained(name)).set_threshold(0.0)
    again = modelfile.load(det.save(tmp_path / name))
    assert_same_scores(again.decision_function(image_data.test), det.decision_function(image_data.test))
    assert_same_scores(again.explain(image_data.defect).localization.ravel(),
                       det.explain(image_data.defect).localization.ravel(), "maps")
    assert again.training_ == det.training_
    manifest = json.loads((tmp_path / name / "manifest.json").read_text())
    assert manifest["state"]["training"]["steps"] == FIND[name]["max_steps"]


def test_a_model_file_whose_network_does_not_fit_its_parameters_does_not_load(trained, tmp_path):
    path = copy.copy(trained("simplenet")).set_threshold(0.0).save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["params"]["hidden"] = 32  # the saved discriminator has 64 hidden units
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)  # anyone can recompute it
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="net.discriminator.0.weight"):
        modelfile.load(path)


@pytest.mark.parametrize("name", ["simplenet", "fastflow"])
def test_frozen_features_are_computed_once_however_long_the_training(name, image_data, monkeypatch):
    calls = []
    cls = type(make_detector(name))
    encode = cls._encode
    monkeypatch.setattr(cls, "_encode", lambda self, batch: calls.append(len(batch)) or encode(self, batch))
    counts = []
    for steps in (2, 12):
        calls.clear()
        make_detector(name, max_steps=steps, patience=None).fit(image_data.train)
        counts.append(list(calls))
    n_held = 2
    assert counts[0] == counts[1]  # no backbone pass per step or per validation
    # FastFlow validates on the held-out normal images' likelihood, SimpleNet on their synthetic twins too
    validated = n_held if name == "fastflow" else n_held * (1 + DEFECTS_PER_IMAGE)
    assert sum(counts[0]) == len(image_data.train) - n_held + validated


def test_fastflow_keeps_the_state_with_the_best_held_out_likelihood(image_data, monkeypatch):
    from normalcy.image import fastflow

    figures = []
    train = fastflow.train

    def spy(module, step, validate, **kwargs):
        def watched():
            figures.append(validate())
            return figures[-1]
        return train(module, step, validate=watched, **kwargs)

    monkeypatch.setattr(fastflow, "train", spy)
    det = make_detector("fastflow", max_steps=40, patience=None, flow_steps=2).fit(image_data.train)
    assert len(figures) >= 3 and det.training_["validation"] == max(figures)
    assert figures[-1] > figures[0]  # the likelihood of held-out normal features rises with training


def test_fastflow_model_files_from_before_the_stride_4_stage_still_load(image_data, monkeypatch):
    from normalcy.image import fastflow

    monkeypatch.setattr(fastflow, "STRIDES", fastflow.OLD_STRIDES)  # a two-stage model, as they were made
    old = make_detector("fastflow", max_steps=4, patience=None, flow_steps=2).fit(image_data.train)
    monkeypatch.undo()
    arrays, meta = old._get_state()
    del arrays["strides"]  # files written then had no strides array
    again = make_detector("fastflow", flow_steps=2)
    again._set_state(arrays, meta)
    assert again.strides_ == fastflow.OLD_STRIDES
    np.testing.assert_array_equal(again.decision_function(image_data.test), old.decision_function(image_data.test))
    arrays["strides"] = np.array([4, 8])
    with pytest.raises(ModelFileError, match="strides"):
        make_detector("fastflow", flow_steps=2)._set_state(arrays, meta)


def test_validation_uses_held_out_images_and_their_synthetic_twins(image_data, monkeypatch):
    seen = {}

    def spy(self, train_images, validation, seconds_left):
        seen["train"], seen["validation"] = train_images, validation
        raise KeyboardInterrupt  # stop before any work: this test is about the split

    monkeypatch.setattr(SimpleNet, "_train", spy)
    with pytest.raises(KeyboardInterrupt):
        make_detector("simplenet").fit(image_data.train)
    validation = seen["validation"]
    n_held = len(image_data.train) - len(seen["train"])
    assert n_held == 2  # 10 % of 8 rounds to 1: at least 2 are held out
    assert validation.labels.tolist() == [0] * n_held + [1] * (n_held * DEFECTS_PER_IMAGE)
    held = validation.images[:n_held]
    # The held-out images are training images left out of training.
    train_bytes = {img.tobytes() for img in seen["train"]}
    assert all(img.tobytes() not in train_bytes for img in held)
    assert all(any(np.array_equal(img, t) for t in image_data.train) for img in held)
    assert not validation.masks[:n_held].any() and all(m.any() for m in validation.masks[n_held:])


def test_time_budget_stops_training_and_keeps_a_usable_model(image_data):
    det = make_detector("simplenet", max_steps=100_000, max_minutes=0.001, patience=None).fit(image_data.train)
    assert det.training_["stopped"] == "time" and det.training_["steps"] < 100_000
    assert np.isfinite(det.decision_function(image_data.test)).all()


def test_ctrl_c_after_a_checkpoint_keeps_the_best_state(image_data, monkeypatch):
    original = engine_train

    def interrupting(module, step, **kwargs):
        def step_then_stop(i):
            if i == kwargs["validate_every"] + 1:
                raise KeyboardInterrupt
            return step(i)
        return original(module, step_then_stop, **kwargs)

    monkeypatch.setattr("normalcy.image.simplenet.train", interrupting)
    det = make_detector("simplenet", max_steps=1000, patience=None).fit(image_data.train)
    assert det.training_["stopped"] == "interrupted" and det.training_["best_step"] >= 1
    assert np.isfinite(det.decision_function(image_data.test)).all()


def test_ctrl_c_before_the_first_checkpoint_leaves_the_detector_unfitted(image_data, monkeypatch):
    monkeypatch.setattr("normalcy.image.simplenet.train",
                        lambda module, step, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    det = make_detector("simplenet")
    with pytest.raises(KeyboardInterrupt):
        det.fit(image_data.train)
    with pytest.raises(NotFittedError):
        det.decision_function(image_data.test)


@pytest.mark.parametrize("name, param, value", [
    ("simplenet", "max_steps", 0), ("fastflow", "max_minutes", -1), ("draem", "patience", 0),
    ("simplenet", "validation_fraction", 1.0), ("simplenet", "noise_std", 0), ("fastflow", "flow_steps", 0),
    ("draem", "width", 3), ("draem", "image_size", 80),
])
def test_bad_training_parameters_are_refused_before_any_work(name, param, value, image_data):
    with pytest.raises(DataError, match=param):
        make_detector(name, **{param: value}).fit(image_data.train)


def test_too_few_images_to_hold_out_are_refused(image_data):
    with pytest.raises(DataError, match="at least 3 training images"):
        make_detector("fastflow").fit(image_data.train[:2])


def test_draem_learning_rate_drops_to_a_fifth_at_80_and_90_percent_of_its_steps(image_data, monkeypatch):
    from normalcy.image import draem

    rates = []

    class Recording(torch.optim.Adam):
        def step(self, closure=None):
            rates.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", Recording)
    make_detector("draem", max_steps=10, patience=None).fit(image_data.train)
    base = draem.LEARNING_RATE
    np.testing.assert_allclose(rates, [base] * 8 + [base / 5, base / 25])


def test_draem_takes_no_backbone():
    assert "backbone" not in DRAEM().get_params() and "weights" not in DRAEM().get_params()
    assert {"backbone", "weights"} <= set(SimpleNet().get_params()) & set(FastFlow().get_params())


def test_a_trained_detector_is_served_like_any_image_detector(trained, image_data):
    from normalcy.image.serving import CODECS
    from normalcy.serve.codec import Limits

    det = copy.copy(trained("fastflow")).set_threshold(0.0)
    codec_class = next(codec for base, codec in CODECS.items() if isinstance(det, base))
    codec = codec_class(copy.copy(det), Limits())
    encoded = []
    for image in image_data.defect[:2]:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    outputs = {o.name: o for o in codec.predict(codec.decode({"image": type("T", (), {"data": encoded})()}, {}), {})}
    # The server scores with the process's threads, not the detector's: float32 sums may differ
    # in their last bits.
    np.testing.assert_allclose(outputs["score"].data, det.decision_function(image_data.defect[:2]), rtol=1e-5)
    assert outputs["anomaly_map"].data.shape == (2, IMAGE_SIZE, IMAGE_SIZE)


# --- the CLI ---------------------------------------------------------------------------------------

FAST = ["--image-size", "64", "--threads", "1", "--holdout", "0.25"]


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("trained") / "parts", n_train=12, n_good=2, n_per_defect=1)


def test_fit_trains_within_the_step_budget_and_says_so(parts, tmp_path):
    out = tmp_path / "m"
    result = run("image", "fit", "--data", str(parts), "--out", str(out), "--model", "simplenet",
                 "--max-steps", "3", "--param", "hidden=16", *FAST)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("saved simplenet (trained 3 steps in ") and ", stopped: steps, kept step " in result.stdout
    assert "synthetic-defect validation" in result.stdout
    assert modelfile.load(out).training_["steps"] == 3


def test_a_training_option_given_to_a_memory_bank_detector_is_refused(parts, tmp_path):
    result = run("image", "fit", "--data", str(parts), "--out", str(tmp_path / "m"), "--model", "patchcore",
                 "--max-minutes", "1", *FAST)
    assert result.returncode == 2 and "max_minutes" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m").exists()


def test_ctrl_c_before_the_first_checkpoint_writes_no_model(parts, tmp_path, monkeypatch):
    monkeypatch.setattr("normalcy.image.simplenet.train",
                        lambda module, step, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    result = run("image", "fit", "--data", str(parts), "--out", str(tmp_path / "m"), "--model", "simplenet", *FAST)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no model, no temporary folder


def test_sigint_during_training_saves_the_best_model(parts, tmp_path):
    """A real Ctrl-C: SIGINT to a real `normalcy image fit` once a checkpoint has been kept."""
    out = tmp_path / "m"
    # SIGUSR1 dumps the child's stacks, should it not stop
    code = ("import faulthandler, signal; faulthandler.register(signal.SIGUSR1); import normalcy.core.progress as p; "
            "p.LOG_EVERY = 0.0; from normalcy.cli.main import main; main()")
    args = [sys.executable, "-c", code, "image", "fit", "--data", str(parts), "--out", str(out), "--model",
            "simplenet", "--max-steps", "1000000", "--param", "patience=null", "--param", "hidden=16", *FAST]
    # The child gets the default SIGINT action whatever the test process inherited (an ignored
    # SIGINT would be inherited, and Python then installs no KeyboardInterrupt handler).
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        seen.append(line)
        if "best " in line or time.monotonic() > deadline:  # a checkpoint was kept
            break
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail("the child did not stop on SIGINT; its stacks:\n" + stderr[-6000:])
    assert proc.returncode == 0, "".join(seen) + stderr
    assert "stopped (interrupted)" in stderr and "saved simplenet" in stdout
    det = modelfile.load(out)
    assert det.training_["stopped"] == "interrupted" and det.threshold_ is not None
    assert sorted(p.name for p in out.iterdir()) == ["arrays.safetensors", "manifest.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_trained_detectors_are_in_the_registry_after_the_memory_banks():
    from normalcy.core.registry import detectors

    assert list(detectors("image"))[3:6] == TRAINED  # EfficientAD follows (tests/test_image_efficientad.py)
    assert all(issubclass(cls, TrainedImageDetector) for name, cls in detectors("image").items() if name in TRAINED)
