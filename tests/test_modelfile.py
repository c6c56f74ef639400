"""Tests for the model-file format (normalcy.core.modelfile): round trips, the manifest,
tamper detection, refusing to run foreign code, hostile files, and atomic, careful saves."""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import errno
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from normalcy import __version__
from normalcy.core import modelfile
from normalcy.core.checks import assert_same_scores
from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.registry import CLASSES, class_path
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

    def decision_function(self, X):
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
    assert CLASSES[class_path(MeanDetector)] is MeanDetector


def test_registry_holds_only_concrete_detectors():
    import normalcy.image  # noqa: F401  (registers the image detectors)

    names = set(CLASSES)
    assert {"normalcy.image.patchcore.PatchCore", "normalcy.image.padim.PaDiM",
            "normalcy.image.gaussian.GaussianAD"} <= names
    assert "normalcy.image.base.ImageDetector" not in names
    assert "normalcy.core.detector.Detector" not in names


def test_save_load_round_trip_keeps_scores_threshold_and_calibration(tmp_path):
    det = _fitted_mean()
    out = det.save(tmp_path / "model")
    assert out == tmp_path / "model"
    loaded = modelfile.load(out)
    assert type(loaded) is MeanDetector
    assert_same_scores(loaded.decision_function(TEST), det.decision_function(TEST))
    assert loaded.threshold_ == det.threshold_
    assert loaded.calibration_ == det.calibration_ and loaded.calibration_.n_items == len(HELD_OUT)
    assert loaded.get_params() == det.get_params() == {"scale": 2.5, "note": "roundtrip"}
    np.testing.assert_array_equal(loaded.predict(TEST), det.predict(TEST))


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
    assert_same_scores(loaded.decision_function(TEST), newer.decision_function(TEST))
    assert _leftovers(tmp_path, "m") == []


def test_save_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "m").mkdir()
    det = _fitted_mean()
    det.save(tmp_path / "m")
    assert_same_scores(modelfile.load(tmp_path / "m").decision_function(TEST), det.decision_function(TEST))


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
    assert_same_scores(modelfile.load(path).decision_function(TEST), det.decision_function(TEST))


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
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module",
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
        "    def decision_function(self, X): return X\n"
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
    old_scores = old.decision_function(TEST)

    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(modelfile, "save_file", boom)
    with pytest.raises(ModelFileError, match="cannot write the model to .*No space left on device.*unchanged"):
        _fitted_mean(scale=9.0).save(path)
    loaded = modelfile.load(path)
    assert loaded.scale == 1.0
    assert_same_scores(loaded.decision_function(TEST), old_scores)
    assert _leftovers(tmp_path, "m") == []


def test_crash_while_swapping_in_keeps_the_old_model(tmp_path, monkeypatch):
    path = tmp_path / "m"
    old = _fitted_mean(scale=1.0)
    old.save(path)
    old_scores = old.decision_function(TEST)
    real_rename = modelfile.os.rename

    def rename(src, dst, *args, **kwargs):
        # The new folder's move into place fails; every other rename happens for real.
        if Path(src).name.startswith(".m.tmp-"):
            raise OSError("power cut")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(modelfile.os, "rename", rename)
    with pytest.raises(ModelFileError, match="power cut"):
        _fitted_mean(scale=9.0).save(path)
    monkeypatch.undo()
    loaded = modelfile.load(path)
    assert loaded.scale == 1.0
    assert_same_scores(loaded.decision_function(TEST), old_scores)
    assert _leftovers(tmp_path, "m") == []


def test_crash_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(modelfile, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("x")))
    with pytest.raises(ModelFileError):
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
    with pytest.raises(ModelFileError, match="not a folder"):
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


def test_patchcore_round_trip_keeps_scores_and_maps(tmp_path, fitted, image_data):
    from normalcy.image import PaDiM, PatchCore

    det = copy.copy(fitted("patchcore"))
    det.calibrate(image_data.calib, FalseAlarmRate(0.0))
    path = det.save(tmp_path / "pc")
    loaded = PatchCore.load(path)
    first, again = det.detect(image_data.test), loaded.detect(image_data.test)
    assert_same_scores(again.scores, first.scores)
    assert_same_scores(again.localization, first.localization, "maps")
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


def test_saved_arrays_and_manifest_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = _fitted_mean().save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert stat.S_IMODE((path / "arrays.safetensors").stat().st_mode) == 0o640
    assert stat.S_IMODE((path / "manifest.json").stat().st_mode) == 0o640


# --- saving never destroys what is not a model ------------------------------------------------


@pytest.mark.parametrize("manifest", ["{}", '{"format": "normalcy-model"}'])
def test_a_folder_with_a_manifest_and_other_files_is_never_replaced(tmp_path, manifest):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text(manifest)
    (project / "README.md").write_text("my notes")
    (project / "src" / "main.py").write_text("print('hi')")
    with pytest.raises(ModelFileError, match="not a normalcy model folder"):
        _fitted_mean().save(project)
    assert sorted(p.name for p in project.rglob("*")) == ["README.md", "main.py", "manifest.json", "src"]
    assert (project / "manifest.json").read_text() == manifest
    assert _leftovers(tmp_path, "project") == []


def test_a_model_folder_with_an_extra_file_is_not_replaced(tmp_path):
    path = _fitted_mean(scale=1.0).save(tmp_path / "m")
    (path / "notes.txt").write_text("mine")
    with pytest.raises(ModelFileError, match="not a normalcy model folder"):
        _fitted_mean(scale=3.0).save(path)
    assert (path / "notes.txt").read_text() == "mine" and modelfile.load(path).scale == 1.0


@pytest.mark.parametrize("target", [".", ".."])
def test_saving_over_the_current_directory_is_refused_and_leaves_nothing(tmp_path, monkeypatch, target):
    work = tmp_path / "a" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    with pytest.raises(ModelFileError, match="current directory"):
        _fitted_mean().save(target)
    assert list(work.iterdir()) == [] and sorted(p.name for p in (tmp_path / "a").iterdir()) == ["work"]


def test_state_that_is_not_finite_is_refused_at_save_and_nothing_is_written(tmp_path):
    with np.errstate(over="ignore"):
        det = MeanDetector().fit(np.array([[1e308, 0.0], [1e308, 1.0]]))
    assert det.mean_[0] == np.inf  # the sum overflowed the float range
    with pytest.raises(ModelFileError, match="'mean' holds NaN or infinity"):
        det.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []
    det = _fitted_mean()
    det.threshold_ = float("inf")
    with pytest.raises(ModelFileError, match="NaN or infinity"):
        det.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_a_safetensors_failure_while_saving_is_one_clear_error(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(modelfile, "save_file", full)
    with pytest.raises(ModelFileError, match="No space left"):
        _fitted_mean().save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


# --- hostile model folders -----------------------------------------------------------------------


def test_loading_never_imports_normalcy_main(tmp_path):
    # normalcy.__main__ runs the CLI on import, with the host process's sys.argv.
    sys.modules.pop("normalcy.__main__", None)
    path = _fitted_mean().save(tmp_path / "m")
    _rewrite_manifest(path, **{"class": "normalcy.__main__.X"})
    with pytest.raises(ModelFileError, match="unknown detector class"):
        modelfile.load(path)
    assert "normalcy.__main__" not in sys.modules


def test_a_manifest_that_is_a_fifo_or_a_device_is_refused_without_reading(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    (path / "manifest.json").unlink()
    os.mkfifo(path / "manifest.json")  # opening it for reading would block until a writer came
    with pytest.raises(ModelFileError, match="not a regular file"):
        modelfile.load(path)
    (path / "manifest.json").unlink()
    (path / "manifest.json").symlink_to("/dev/zero")  # reading it would never end
    with pytest.raises(ModelFileError, match="not a regular file"):
        modelfile.load(path)


def test_arrays_that_are_a_device_are_refused(tmp_path):
    path = _fitted_mean().save(tmp_path / "m")
    (path / "arrays.safetensors").unlink()
    (path / "arrays.safetensors").symlink_to("/dev/zero")
    with pytest.raises(ModelFileError, match="not a regular file"):
        modelfile.load(path)


def test_an_oversized_manifest_is_refused(tmp_path, monkeypatch):
    path = _fitted_mean().save(tmp_path / "m")
    monkeypatch.setattr(modelfile, "MAX_MANIFEST_BYTES", 100)
    with pytest.raises(ModelFileError, match="over the 100-byte limit"):
        modelfile.load(path)


@pytest.mark.parametrize("text", ['{"format": "normalcy-model", "x": NaN}', "[" * 100_000 + "]" * 100_000])
def test_non_json_numbers_and_deep_nesting_are_clear_errors(tmp_path, text):
    path = _fitted_mean().save(tmp_path / "m")
    (path / "manifest.json").write_text(text)
    with pytest.raises(ModelFileError, match="cannot read"):
        modelfile.load(path)


@pytest.mark.parametrize("field, value, message", [
    ("threshold", True, "threshold"), ("threshold", 1e999, "Infinity is not a JSON number"), ("library_version", 3, "library_version"),
    ("arrays_sha256", "abc", "arrays_sha256"), ("surprise", 1, "surprise"), ("class", "os system", "class"),
    ("calibration", {"rule": "fpr:0.01", "threshold": "x"}, "calibration"),
])
def test_manifest_fields_are_checked_against_the_schema(tmp_path, field, value, message):
    path = _fitted_mean().save(tmp_path / "m")
    manifest = _manifest(path)
    manifest[field] = value
    manifest["manifest_sha256"] = _digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=message):
        modelfile.load(path)


class RenamedDetector(MeanDetector):
    renamed_params = {"factor": "scale"}


def test_a_parameter_renamed_since_a_release_still_loads(tmp_path):
    path = RenamedDetector(scale=2.0).fit(TRAIN).save(tmp_path / "m")
    _rewrite_manifest(path, params={"factor": 2.0, "note": "plain"})  # as the older release wrote it
    loaded = modelfile.load(path)
    assert loaded.get_params() == {"scale": 2.0, "note": "plain"}
    with pytest.raises(ModelFileError, match="no parameter"):
        _rewrite_manifest(path, params={"factr": 2.0}) or modelfile.load(path)
