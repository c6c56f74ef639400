"""Any scikit-learn or PyOD outlier detector as a normalcy table detector.

`Adapter(estimator)` reads and encodes tables like every native detector (`TableEncoder`),
fits a clone of `estimator` on the encoded rows, and scores so that higher = more anomalous:
PyOD's `decision_function` as it is, scikit-learn's `score_samples` negated
(IsolationForest, LocalOutlierFactor(novelty=True), OneClassSVM, EllipticEnvelope). It can be
calibrated, thresholded and used by `normalcy table score` like a native detector.

Saving never pickles. An estimator is saved as its class, its constructor parameters (JSON)
and its fitted attributes (numpy arrays into safetensors, plain numbers and strings into
JSON), and only when

- its class is in `SAVEABLE`: classes whose fitted state is plain arrays and numbers and
  whose reload was checked to score identically (tests/test_tabular_adapter.py), and
- every parameter and fitted attribute is such a plain value.

Anything else (forests of tree objects, neighbour indexes, nested models, callables) makes
`save` raise a ModelFileError that says so and names the native detector to use instead.
Loading imports only a class named in `SAVEABLE`, and refuses a model saved under another
version of the estimator's library, whose private attributes may differ.
"""

from __future__ import annotations

import copy
import importlib
import numbers
from importlib import metadata
from pathlib import Path

import numpy as np
from sklearn.base import clone

from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.base import TabularDetector

# Classes whose fitted state is plain arrays and numbers, restored exactly by setting them.
SAVEABLE = {
    "sklearn.covariance._elliptic_envelope.EllipticEnvelope",
    "sklearn.svm._classes.OneClassSVM",
    "pyod.models.ecod.ECOD",
    "pyod.models.copod.COPOD",
    "pyod.models.hbos.HBOS",
}
# Native detectors that do what an unsaveable estimator does, by class name.
NATIVE = {"IsolationForest": "iforest", "IForest": "iforest", "LocalOutlierFactor": "lof", "LOF": "lof",
          "KNN": "knn", "PCA": "pca", "ECOD": "ecod", "COPOD": "copod", "HBOS": "hbos"}
ARRAY_PREFIX = "adapter."


class Adapter(TabularDetector):
    """A scikit-learn or PyOD outlier detector on the encoded table (see the module notes).

    It has no registry name (an estimator object cannot be named on the command line): use it
    from Python, and load its model files like any other.

    Parameters
    ----------
    estimator : estimator, default None
        An unfitted PyOD detector, or a scikit-learn outlier detector with `score_samples`
        (IsolationForest, LocalOutlierFactor(novelty=True), OneClassSVM, EllipticEnvelope). A
        clone of it is fitted; it is required to fit (None only in a loaded model's shell).
    """

    def __init__(self, estimator=None):
        self.estimator = estimator

    def _check_params(self):
        if self.estimator is not None and not callable(getattr(self.estimator, "fit", None)):
            raise DataError(f"Adapter: estimator must be a scikit-learn or PyOD detector, got {self.estimator!r:.80}")

    # --- fit and score -------------------------------------------------------------------
    def _fit_encoded(self, Z):
        if self.estimator is None:
            raise DataError("Adapter needs an estimator, e.g. Adapter(sklearn.svm.OneClassSVM())")
        _score_method(self.estimator)  # fails early, before a long fit, if it cannot score new rows
        estimator = clone(self.estimator)
        try:
            estimator.fit(Z)
        except ValueError as exc:
            raise DataError(f"{type(estimator).__name__}: {exc}") from exc
        if _class_path(type(estimator)) in SAVEABLE:
            # C order, as a reloaded model's arrays have it, so both score by the same path.
            for key, value in vars(estimator).items():
                if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                    setattr(estimator, key, np.ascontiguousarray(value))
        self.estimator_ = estimator

    def _score_encoded(self, Z):
        self._check_fitted("estimator_")
        scores = np.asarray(_score_method(self.estimator_)(Z), dtype=np.float64).reshape(-1)
        if _is_pyod(self.estimator_):
            return scores
        return -scores

    # --- model file ----------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from normalcy.core import modelfile

        self._check_fitted("estimator_")
        self._estimator_state()  # refuses before anything is written
        # The manifest's params are JSON; the estimator travels in the state instead.
        shell = copy.copy(self)
        shell.estimator = None
        return modelfile.save(shell, path)

    def _own_state(self):
        return self._estimator_state()

    def _estimator_state(self) -> tuple[dict[str, np.ndarray], dict]:
        self._check_fitted("estimator_")
        estimator = self.estimator_
        name = _class_path(type(estimator))
        if name not in SAVEABLE:
            raise ModelFileError(_cannot_save(estimator, "its fitted state is not known to be plain arrays "
                                              "that restore exactly"))
        params = estimator.get_params(deep=False)
        for key, value in params.items():
            if _plain(value) is None:
                raise ModelFileError(_cannot_save(estimator, f"parameter {key}={value!r} is not a plain value"))
        arrays, values = {}, {}
        for key, value in vars(estimator).items():
            if key in params:
                continue
            if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
                arrays[ARRAY_PREFIX + key] = value
            elif isinstance(value, np.generic) and value.dtype.kind in "biuf":
                arrays[ARRAY_PREFIX + key] = np.asarray(value).reshape(1)  # keeps the exact dtype
                values[key] = {"scalar": True}
            elif _plain(value) is not None:
                values[key] = _plain(value)
            else:
                raise ModelFileError(_cannot_save(estimator, f"its fitted attribute {key} is a "
                                                  f"{type(value).__name__}, not plain numbers"))
        meta = {"class": name, "params": {k: _plain(v) for k, v in params.items()}, "attributes": values,
                "library": _library(name), "library_version": _library_version(name)}
        return arrays, meta

    def _set_own_state(self, arrays, meta, n_features):
        name = meta.get("class")
        if name not in SAVEABLE:
            raise ModelFileError(f"model state names estimator {name!r}, which is not one normalcy restores; "
                                 f"expected one of {', '.join(sorted(SAVEABLE))}")
        library, version = _library(name), _library_version(name)
        if meta.get("library_version") != version:
            raise ModelFileError(f"the model's {name} was saved with {library} {meta.get('library_version')}, "
                                 f"this is {library} {version}: its fitted state may differ; refit it")
        params, values = meta.get("params"), meta.get("attributes")
        if not isinstance(params, dict) or not isinstance(values, dict):
            raise ModelFileError("model state: the adapter's estimator parameters are missing")
        module, _, qualname = name.rpartition(".")
        cls = getattr(importlib.import_module(module), qualname)
        try:
            estimator = cls(**{k: _restore(v) for k, v in params.items()})
        except (TypeError, ValueError) as exc:
            raise ModelFileError(f"model state: parameters do not fit {qualname}: {exc}") from exc
        for key, value in values.items():
            if not key.isidentifier() or key.startswith("__") or key in params:
                raise ModelFileError(f"model state: unexpected estimator attribute {key!r}")
            if isinstance(value, dict) and value.get("scalar") is True:
                array = arrays.get(ARRAY_PREFIX + key)
                if array is None or array.shape != (1,):
                    raise ModelFileError(f"model state: estimator attribute {key!r} is missing")
                setattr(estimator, key, array[0])
            else:
                setattr(estimator, key, _restore(value))
        for key, array in arrays.items():
            if key.startswith(ARRAY_PREFIX) and key[len(ARRAY_PREFIX):] not in values:
                attribute = key[len(ARRAY_PREFIX):]
                if not attribute.isidentifier() or attribute.startswith("__") or attribute in params:
                    raise ModelFileError(f"model state: unexpected estimator array {key!r}")
                setattr(estimator, attribute, array)
        if getattr(estimator, "n_features_in_", n_features) != n_features:
            raise ModelFileError(f"model state: the estimator was fitted on {estimator.n_features_in_} columns, "
                                 f"the encoder has {n_features}")
        self.estimator_ = estimator
        self.estimator = clone(estimator)  # unfitted, so that the loaded adapter can be refitted


def _score_method(estimator):
    if _is_pyod(estimator):
        if not hasattr(estimator, "decision_function"):
            raise DataError(f"{type(estimator).__name__} has no decision_function; is it a PyOD detector?")
        return estimator.decision_function
    try:
        return estimator.score_samples
    except AttributeError:
        hint = " (LocalOutlierFactor scores new rows only with novelty=True)" \
            if type(estimator).__name__ == "LocalOutlierFactor" else ""
        raise DataError(f"{type(estimator).__name__} has no score_samples, so it cannot score new rows"
                        f"{hint}; expected a PyOD detector or a scikit-learn outlier detector") from None


def _is_pyod(estimator) -> bool:
    return type(estimator).__module__.split(".")[0] == "pyod"


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _library(name: str) -> str:
    return {"sklearn": "scikit-learn"}.get(name.split(".")[0], name.split(".")[0])


def _library_version(name: str) -> str:
    return metadata.version(_library(name))


def _plain(value):
    """A JSON form of None, a bool, number, string or a tuple/list of them; None if there is none.
    Tuples are marked, so that they come back as tuples."""
    if value is None:
        return {"none": True}
    if isinstance(value, (bool, str)) or (isinstance(value, numbers.Real) and not isinstance(value, np.generic)):
        return value if not (isinstance(value, float) and not np.isfinite(value)) else None
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        if any(i is None for i in items):
            return None
        return {"tuple": items} if isinstance(value, tuple) else {"list": items}
    return None


def _restore(value):
    if isinstance(value, dict):
        if value.get("none") is True:
            return None
        if "tuple" in value:
            return tuple(_restore(v) for v in value["tuple"])
        if "list" in value:
            return [_restore(v) for v in value["list"]]
        raise ModelFileError(f"model state: unexpected estimator value {value!r}")
    return value


def _cannot_save(estimator, why: str) -> str:
    name = type(estimator).__name__
    native = NATIVE.get(name, "ensemble")
    return (f"{name} cannot be saved safely: {why}, and normalcy never pickles. Use the native "
            f"detector instead (normalcy table fit --model {native}), or refit the adapter where it is used")

