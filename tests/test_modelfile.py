"""Tests for the model-file format (normalcy.core.modelfile): round trips, the manifest,
tamper detection, refusing to run foreign code, and atomic saves."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from normalcy import __version__
from normalcy.core import modelfile
from normalcy.core.detector import REGISTRY, Detector, class_path, expect_arrays
from normalcy.core.errors import ModelFileError, NotFittedError
from normalcy.core.threshold import FalseAlarmRate


class MeanDetector(Detector):
    """A tiny detector for the format tests: score = scale * distance to the training mean."""

    def __init__(self, scale: float = 1.0, note: str = "plain"):
        self.scale = scale
        self.note = note

    def fit(self, X, y=None):
        self.mean_ = np.asarray(X, dtype=np.float64).mean(axis=0)
        return self

    def score(self, X):
        self._check_fitted("mean_")
        return self.scale * np.linalg.norm(np.asarray(X, dtype=np.float64) - self.mean_, axis=1)

    def _get_state(self):
        return {"mean": self.mean_}, {"n_features": int(self.mean_.size)}

    def _set_state(self, arrays, meta):
        expect_arrays(arrays, {"mean": (meta["n_features"],)})
        self.mean_ = arrays["mean"]


class OtherDetector(MeanDetector):
    """A second registered class, for Detector.load's class check."""


RNG = np.random.default_rng(7)
TRAIN = RNG.normal(size=(50, 5))
HELD_OUT = RNG.normal(size=(30, 5))
TEST = RNG.normal(size=(20, 5)) * 2


def _fitted_mean(scale=2.5, threshold=True) -> MeanDetector:
    det = MeanDetector(scale=scale, note="roundtrip").fit(TRAIN)
    if threshold:
        det.calibrate(HELD_OUT, FalseAlarmRate(0.1))
    return det


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def _digest(manifest: dict) -> str:
    """The manifest checksum as documented: sha256 of the sorted-key JSON of every other field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _rewrite_manifest(path: Path, recompute: bool = True, **changes) -> None:
    manifest = _manifest(path)
    manifest.update(changes)
    if recompute:
        manifest["manifest_sha256"] = _digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))


def _leftovers(parent: Path, name: str) -> list[str]:
    """Hidden temporary siblings that a save may create (.NAME.tmp-*, .NAME.old-*)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# --- round trip ------------------------------------------------------------------------------


def test_test_detector_is_registered():
    assert REGISTRY[class_path(MeanDetector)] is MeanDetector


def test_registry_holds_only_concrete_detectors():
    import normalcy.image  # noqa: F401  (registers the image detectors)

    names = set(REGISTRY)
    assert {"normalcy.image.patchcore.PatchCore", "normalcy.image.padim.PaDiM",
            "normalcy.image.gaussian.GaussianAD"} <= names
    assert "normalcy.image.base.ImageDetector" not in names
    assert "normalcy.core.detector.Detector" not in names


def test_save_load_round_trip_is_exact(tmp_path):
    det = _fitted_mean()
    out = det.save(tmp_path / "model")
    assert out == tmp_path / "model"
    loaded = modelfile.load(out)
    assert type(loaded) is MeanDetector
    assert np.array_equal(loaded.score(TEST), det.score(TEST))
    assert loaded.threshold_ == det.threshold_
    assert loaded.get_params() == det.get_params() == {"scale": 2.5, "note": "roundtrip"}
    np.testing.assert_array_equal(loaded.predict(TEST).labels, det.predict(TEST).labels)


def test_round_trip_without_threshold_keeps_it_unset(tmp_path):
    det = _fitted_mean(threshold=False)
    loaded = MeanDetector.load(det.save(tmp_path / "m"))
    assert loaded.threshold_ is None
    with pytest.raises(NotFittedError):
        loaded.predict(TEST)


def test_manifest_fields_and_safetensors_arrays(tmp_path):
    det = _fitted_mean()
    path = det.save(tmp_path / "m")
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "manifest.json"]
    manifest = _manifest(path)
    assert manifest["format"] == "normalcy-model"
    assert manifest["format_version"] == modelfile.FORMAT_VERSION
    assert manifest["library_version"] == __version__
    assert manifest["class"] == class_path(MeanDetector)
    assert manifest["params"] == {"scale": 2.5, "note": "roundtrip"}
    assert manifest["threshold"] == det.threshold_
    assert manifest["state"] == {"n_features": 5}
    assert manifest["manifest_sha256"] == _digest(manifest)
    assert manifest["arrays_sha256"] == hashlib.sha256((path / "arrays.safetensors").read_bytes()).hexdigest()
    arrays = load_file(str(path / "arrays.safetensors"))
    assert set(arrays) == {"mean"}
    assert np.array_equal(arrays["mean"], det.mean_)


def test_overwriting_a_model_replaces_it_and_leaves_nothing_behind(tmp_path):
    path = tmp_path / "m"
    _fitted_mean(scale=1.0).save(path)
    newer = _fitted_mean(scale=3.0)
    newer.save(path)
    loaded = modelfile.load(path)
    assert loaded.scale == 3.0
    assert np.array_equal(loaded.score(TEST), newer.score(TEST))
    assert _leftovers(tmp_path, "m") == []


def test_save_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "m").mkdir()
    det = _fitted_mean()
    det.save(tmp_path / "m")
    assert np.array_equal(modelfile.load(tmp_path / "m").score(TEST), det.score(TEST))


# --- tampering -------------------------------------------------------------------------------


def test_one_changed_byte_in_arrays_is_caught(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    data = bytearray((path / "arrays.safetensors").read_bytes())
    data[-3] ^= 0x01  # inside the last float's bytes: still a valid safetensors file
    (path / "arrays.safetensors").write_bytes(bytes(data))
    assert load_file(str(path / "arrays.safetensors"))["mean"].shape == (5,)
    with pytest.raises(ModelFileError, match="checksum"):
        modelfile.load(path)


def test_edited_param_in_manifest_is_caught(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, recompute=False, params={"scale": 100.0, "note": "roundtrip"})
    with pytest.raises(ModelFileError, match="checksum"):
        modelfile.load(path)


def test_edited_threshold_in_manifest_is_caught(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, recompute=False, threshold=-1.0)
    with pytest.raises(ModelFileError, match="checksum"):
        modelfile.load(path)


def test_recomputed_checksum_of_unchanged_manifest_still_loads(tmp_path):
    # Guards the tests below: our re-digest is the one modelfile checks, so when they fail
    # it is for the reason they name, not for a checksum mismatch.
    det = _fitted_mean()
    path = det.save(tmp_path / "m")
    _rewrite_manifest(path)
    assert np.array_equal(modelfile.load(path).score(TEST), det.score(TEST))


def test_newer_format_version_says_upgrade(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, format_version=999)
    with pytest.raises(ModelFileError, match="newer") as info:
        modelfile.load(path)
    assert "upgrade" in str(info.value)
    assert "999" in str(info.value)


@pytest.mark.parametrize("version", ["1", 1.0, None])
def test_non_integer_format_version_is_rejected(tmp_path, version):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, format_version=version)
    with pytest.raises(ModelFileError, match="format_version"):
        modelfile.load(path)


def test_unknown_class_is_rejected(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{"class": "normalcy.image.nosuch.NoSuchDetector"})
    with pytest.raises(ModelFileError, match="unknown detector class"):
        modelfile.load(path)


def test_abstract_base_class_is_not_loadable(tmp_path):
    import normalcy.image  # noqa: F401

    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{"class": "normalcy.image.base.ImageDetector"})
    with pytest.raises(ModelFileError, match="unknown detector class"):
        modelfile.load(path)


def test_class_outside_normalcy_is_never_imported_or_called(tmp_path, monkeypatch):
    import os

    called = []
    monkeypatch.setattr(os, "system", lambda *a, **k: called.append(a) or 0)
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{"class": "os.system"})
    imported = []
    real_import = modelfile.importlib.import_module
    monkeypatch.setattr(modelfile.importlib, "import_module",
                        lambda name, *a, **k: imported.append(name) or real_import(name, *a, **k))
    with pytest.raises(ModelFileError, match="unknown detector class"):
        modelfile.load(path)
    assert imported == []
    assert called == []


def test_module_named_by_a_manifest_is_not_imported(tmp_path, monkeypatch):
    # A module on sys.path that would leave a marker file if anything imported it.
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_normalcy_plugin.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from normalcy.core.detector import Detector\n"
        "class Evil(Detector):\n"
        "    def fit(self, X, y=None): return self\n"
        "    def score(self, X): return X\n"
        "    def _get_state(self): return {}, {}\n"
        "    def _set_state(self, arrays, meta): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{"class": "evil_normalcy_plugin.Evil"})
    with pytest.raises(ModelFileError):
        modelfile.load(path)
    assert not marker.exists()
    assert "evil_normalcy_plugin" not in sys.modules


@pytest.mark.parametrize("field, value", [("class", 42), ("params", [1, 2]), ("state", "x")])
def test_wrongly_typed_manifest_fields_are_rejected(tmp_path, field, value):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{field: value})
    with pytest.raises(ModelFileError, match=field):
        modelfile.load(path)


def test_params_the_class_does_not_take_are_rejected(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, params={"scale": 1.0, "bogus": 3})
    with pytest.raises(ModelFileError, match="parameters"):
        modelfile.load(path)


def test_non_numeric_threshold_is_rejected(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, threshold="0.5")
    with pytest.raises(ModelFileError, match="threshold"):
        modelfile.load(path)


def test_state_that_does_not_fit_the_arrays_is_rejected(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, state={"n_features": 6})
    with pytest.raises(ModelFileError, match="shape"):
        modelfile.load(path)


def test_missing_folder_manifest_or_arrays(tmp_path):
    with pytest.raises(ModelFileError, match="no such directory"):
        modelfile.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="manifest.json is missing"):
        modelfile.load(tmp_path / "empty")
    path = _fitted_mean().save(tmp_path / "m")
    (path / "arrays.safetensors").unlink()
    with pytest.raises(ModelFileError, match="arrays.safetensors"):
        modelfile.load(path)


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2, 3]", '{"format": "something-else"}'])
def test_manifest_that_is_not_a_normalcy_manifest(tmp_path, text):
    path = _fitted_mean().save(tmp_path / "m")
    (path / "manifest.json").write_text(text)
    with pytest.raises(ModelFileError):
        modelfile.load(path)


def test_read_manifest_does_not_need_the_arrays(tmp_path):
    det = _fitted_mean()
    path = det.save(tmp_path / "m")
    (path / "arrays.safetensors").unlink()
    assert modelfile.read_manifest(path)["threshold"] == det.threshold_


# --- atomic save ------------------------------------------------------------------------------


def test_crash_while_writing_arrays_keeps_the_old_model(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old = _fitted_mean(scale=1.0)
    old.save(path)
    old_scores = old.score(TEST)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(modelfile, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        _fitted_mean(scale=9.0).save(path)
    loaded = modelfile.load(path)
    assert loaded.scale == 1.0
    assert np.array_equal(loaded.score(TEST), old_scores)
    assert _leftovers(tmp_path, "m") == []


def test_crash_while_swapping_in_keeps_the_old_model(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old = _fitted_mean(scale=1.0)
    old.save(path)
    old_scores = old.score(TEST)
    real_rename = modelfile.os.rename

    def rename(src, dst, *args, **kwargs):
        # The new folder's move into place fails; every other rename happens for real.
        if Path(src).name.startswith(".m.tmp-"):
            raise OSError("power cut")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(modelfile.os, "rename", rename)
    with pytest.raises(OSError, match="power cut"):
        _fitted_mean(scale=9.0).save(path)
    monkeypatch.undo()
    loaded = modelfile.load(path)
    assert loaded.scale == 1.0
    assert np.array_equal(loaded.score(TEST), old_scores)
    assert _leftovers(tmp_path, "m") == []


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(OSError):
        _fitted_mean().save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_a_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(ModelFileError, match="not a normalcy model"):
        _fitted_mean().save(folder)
    assert [p.name for p in folder.iterdir()] == ["holiday.jpg"]
    assert (folder / "holiday.jpg").read_bytes() == b"precious"
    assert _leftovers(tmp_path, "photos") == []


def test_refuses_to_overwrite_a_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(ModelFileError, match="file"):
        _fitted_mean().save(target)
    assert target.read_text() == "keep me"
    assert _leftovers(tmp_path, "notes.txt") == []


# --- Detector.load ------------------------------------------------------------------------------


def test_detector_load_checks_the_class(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    assert type(MeanDetector.load(path)) is MeanDetector
    assert type(Detector.load(path)) is MeanDetector
    with pytest.raises(ModelFileError, match="MeanDetector"):
        OtherDetector.load(path)


# --- a real detector: PatchCore on tiny images ----------------------------------------------------


def test_patchcore_round_trip_is_exact(tmp_path, fitted, image_data):
    from normalcy.image import PaDiM, PatchCore

    det = copy.copy(fitted("patchcore"))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    path = det.save(tmp_path / "pc")
    loaded = PatchCore.load(path)
    scores, maps = det.score_maps(image_data.test)
    loaded_scores, loaded_maps = loaded.score_maps(image_data.test)
    assert np.array_equal(loaded_scores, scores)
    assert np.array_equal(loaded_maps, maps)
    assert loaded.threshold_ == det.threshold_
    assert loaded.get_params() == det.get_params()
    assert np.array_equal(loaded.memory_bank_, det.memory_bank_)
    manifest = _manifest(path)
    assert manifest["class"] == "normalcy.image.patchcore.PatchCore"
    assert manifest["params"]["image_size"] == 64
    assert np.array_equal(load_file(str(path / "arrays.safetensors"))["memory_bank"], det.memory_bank_)
    with pytest.raises(ModelFileError, match="PatchCore"):
        PaDiM.load(path)
    with pytest.raises(ModelFileError, match="MeanDetector"):
        MeanDetector.load(path)


def test_patchcore_tampered_memory_bank_is_caught(tmp_path, fitted):
    path = fitted("patchcore").save(tmp_path / "pc")
    data = bytearray((path / "arrays.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x10
    (path / "arrays.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        modelfile.load(path)


def test_patchcore_memory_bank_with_nan_is_rejected(tmp_path, fitted):
    # Arrays rewritten *and* re-checksummed: the detector's own state check still refuses NaN.
    from safetensors.numpy import save_file

    path = fitted("patchcore").save(tmp_path / "pc")
    bank = load_file(str(path / "arrays.safetensors"))["memory_bank"].copy()
    bank[0, 0] = np.nan
    save_file({"memory_bank": bank}, str(path / "arrays.safetensors"))
    sha = hashlib.sha256((path / "arrays.safetensors").read_bytes()).hexdigest()
    _rewrite_manifest(path, arrays_sha256=sha)
    with pytest.raises(ModelFileError, match="NaN"):
        modelfile.load(path)


def test_saved_model_folder_gets_the_usual_permissions(tmp_path):
    # mkdtemp makes its folder 0700; a model folder must be readable by whoever the umask allows
    # (a server or Spark executors running as another user).
    old = os.umask(0o022)
    try:
        path = _fitted_mean().save(tmp_path / "m.model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
