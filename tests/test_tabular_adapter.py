"""The adapter: scikit-learn and PyOD outlier detectors fitted, scored, thresholded, saved
(where that is safe) and served like native table detectors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from normalcy.core import FalseAlarmRate, checks, load
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import CLASSES, detectors
from normalcy.tabular.adapter import Adapter


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    train = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
    train["kind"] = rng.choice(["x", "y"], size=300)
    test = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    test["kind"] = rng.choice(["x", "y"], size=60)
    test.loc[:9, ["a", "b"]] += 6.0
    test.loc[10, "kind"] = "never seen"
    labels = np.r_[np.ones(10), np.zeros(50)]
    return train, test, labels


SKLEARN = {
    "elliptic": lambda: EllipticEnvelope(random_state=0),
    "ocsvm": lambda: OneClassSVM(nu=0.05, gamma="scale"),
    "iforest": lambda: SkIsolationForest(random_state=0),
    "lof": lambda: LocalOutlierFactor(n_neighbors=20, novelty=True),
}


@pytest.mark.parametrize("name", list(SKLEARN))
def test_sklearn_scores_are_negated_score_samples_on_the_encoded_rows(name, data):
    train, test, labels = data
    adapter = Adapter(SKLEARN[name]()).fit(train)
    reference = SKLEARN[name]().fit(adapter.encoder_.transform(train))
    expected = -reference.score_samples(adapter.encoder_.transform(test))
    np.testing.assert_allclose(adapter.decision_function(test), expected, rtol=1e-10)
    assert adapter.score(test, labels) > 0.95  # higher = more anomalous


def test_the_given_estimator_is_left_unfitted(data):
    estimator = EllipticEnvelope(random_state=0)
    Adapter(estimator).fit(data[0])
    assert not hasattr(estimator, "location_")


def test_threshold_and_predict_work_like_a_native_detector(data):
    train, test, _ = data
    adapter = Adapter(SKLEARN["elliptic"]()).fit(train.iloc[:250])
    adapter.calibrate(train.iloc[250:], FalseAlarmRate(0.1))
    assert adapter.calibration_.n_items == 50
    prediction = adapter.detect(test)
    assert (prediction.labels == (prediction.scores >= adapter.threshold_)).all()
    np.testing.assert_array_equal(adapter.predict(test), prediction.labels)
    assert prediction.labels[:10].all()


@pytest.mark.parametrize("name", ["elliptic", "ocsvm"])
def test_saveable_sklearn_estimators_reload_with_the_same_scores(name, data, tmp_path):
    train, test, _ = data
    adapter = Adapter(SKLEARN[name]()).fit(train).set_threshold(1.5)
    path = adapter.save(tmp_path / name)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.tabular.adapter.Adapter"
    assert sorted(p.name for p in path.iterdir()) == ["arrays.safetensors", "manifest.json"]
    loaded = load(path)
    assert type(loaded.estimator_) is type(adapter.estimator_)
    assert_same_scores(loaded.decision_function(test), adapter.decision_function(test))
    assert loaded.threshold_ == 1.5
    # The loaded adapter can be refitted: its estimator is an unfitted copy with the same params.
    assert loaded.estimator.get_params() == adapter.estimator_.get_params()


@pytest.mark.parametrize("name, native", [("iforest", "iforest"), ("lof", "lof")])
def test_unsaveable_estimators_say_so_and_name_a_native_alternative(name, native, data, tmp_path):
    adapter = Adapter(SKLEARN[name]()).fit(data[0])
    with pytest.raises(ModelFileError, match=f"cannot be saved safely.*--model {native}"):
        adapter.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unplain_parameters_are_not_saved(data, tmp_path):
    adapter = Adapter(EllipticEnvelope(random_state=np.random.RandomState(0))).fit(data[0])
    with pytest.raises(ModelFileError, match="random_state"):
        adapter.save(tmp_path / "m")


def test_a_model_saved_with_another_library_version_is_refused(data, tmp_path):
    import hashlib

    path = Adapter(SKLEARN["elliptic"]()).fit(data[0]).save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["state"]["detector"]["library_version"] = "0.0.1"
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="0.0.1"):
        load(path)


def test_a_class_outside_the_allowlist_is_never_imported(data, tmp_path):
    import hashlib

    path = Adapter(SKLEARN["elliptic"]()).fit(data[0]).save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["state"]["detector"]["class"] = "os.system"
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="os.system"):
        load(path)


def test_bad_estimators_and_input_fail_clearly(data):
    train, test, _ = data
    with pytest.raises(DataError, match="novelty=True"):
        Adapter(LocalOutlierFactor()).fit(train)
    with pytest.raises(DataError, match="needs an estimator"):
        Adapter().fit(train)
    adapter = Adapter(SKLEARN["elliptic"]()).fit(train)
    with pytest.raises(DataError, match="kind"):
        adapter.decision_function(test.drop(columns=["kind"]))
    with pytest.raises(DataError, match="empty"):
        adapter.decision_function(test.iloc[:0])
    bad = test.copy()
    bad["a"] = bad["a"].astype(object)
    bad.loc[3, "a"] = "lots"
    with pytest.raises(DataError, match="lots"):
        adapter.decision_function(bad)
    with pytest.raises(DataError, match="scikit-learn or PyOD detector"):
        Adapter("OneClassSVM").fit(train)


def test_pyod_detectors_are_adapted_and_saved(data, tmp_path):
    pytest.importorskip("pyod")
    from pyod.models.ecod import ECOD as PyodECOD
    from pyod.models.hbos import HBOS as PyodHBOS
    from pyod.models.knn import KNN as PyodKNN

    train, test, labels = data
    for estimator in (PyodECOD(), PyodHBOS()):
        adapter = Adapter(estimator).fit(train)
        Z = adapter.encoder_.transform(test)
        reference = type(estimator)().fit(adapter.encoder_.transform(train)).decision_function(Z)
        np.testing.assert_allclose(adapter.decision_function(test), reference)  # PyOD's orientation, as it is
        loaded = load(adapter.save(tmp_path / type(estimator).__name__))
        assert_same_scores(loaded.decision_function(test), adapter.decision_function(test))
    knn = Adapter(PyodKNN()).fit(train)
    assert roc_auc_score(labels, knn.decision_function(test)) > 0.95
    with pytest.raises(ModelFileError, match="--model knn"):
        knn.save(tmp_path / "knn")


BY_IDENTITY = (checks.check_clone_and_params, checks.check_save_load)


@pytest.mark.parametrize("check", [c for c in checks.CHECKS if c not in BY_IDENTITY],
                         ids=lambda c: c.__name__.removeprefix("check_"))
def test_the_adapter_keeps_the_detector_contract(check, tmp_path):
    """The contract suite runs on registered names; the adapter has none (an estimator object
    is no command-line value), so it runs here. Two checks compare parameters with ==, which
    compares estimator objects by identity: a clone or a reloaded adapter holds an equal, not
    the same, estimator. Cloning is tested by scikit-learn's use below, save and load above."""
    from contract_tabular import case

    check(Adapter(EllipticEnvelope(random_state=0)), case(), tmp_path)


def test_the_adapter_is_loadable_but_not_a_named_detector():
    assert "normalcy.tabular.adapter.Adapter" in CLASSES
    assert Adapter not in detectors("tabular").values()


def test_fitted_saveable_estimators_hold_c_ordered_arrays_as_reloaded_ones_do(data):
    adapter = Adapter(SKLEARN["elliptic"]()).fit(np.asfortranarray(data[0][["a", "b", "c"]].to_numpy()))
    arrays = adapter._get_state()[0]
    assert {k for k, a in arrays.items() if not a.flags.c_contiguous} == set()


def test_a_clone_of_an_adapter_fits_and_scores_like_the_original(data):
    from sklearn.base import clone

    train, test, _ = data
    adapter = Adapter(SKLEARN["elliptic"]())
    twin = clone(adapter)
    assert twin.estimator is not adapter.estimator and twin.estimator.get_params() == adapter.estimator.get_params()
    np.testing.assert_array_equal(twin.fit(train).decision_function(test), adapter.fit(train).decision_function(test))
