"""The detector contract every modality implements.

scikit-learn conventions: the constructor only stores parameters, `fit` learns from (mostly)
normal data and returns self, learned state ends in an underscore. PyOD's orientation: a
higher score is more anomalous. A subclass implements `fit`, `score`, and the two state hooks
that let the model-file format save it without pickle.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from normalcy.core.errors import ModelFileError, NotFittedError
from normalcy.core.results import Prediction
from normalcy.core.threshold import ThresholdStrategy

# Every concrete detector, by "module.QualName": the only classes a model file may name.
REGISTRY: dict[str, type["Detector"]] = {}


class Detector(BaseEstimator):
    threshold_: float | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Detector is no ABC (BaseEstimator's metaclass is `type`), so `__abstractmethods__`
        # is never set: look for methods still marked abstract instead.
        if not any(getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in dir(cls)):
            REGISTRY[class_path(cls)] = cls

    @abstractmethod
    def fit(self, X, y=None) -> "Detector":
        """Learn what normal looks like from X; returns self."""

    @abstractmethod
    def score(self, X) -> np.ndarray:
        """One anomaly score per item of X, higher = more anomalous."""

    def predict(self, X) -> Prediction:
        """Scores, labels at the detector's threshold, and a localisation where supported."""
        return Prediction.from_scores(self.score(X), self._require_threshold())

    def calibrate(self, X, strategy: ThresholdStrategy, y=None) -> "Detector":
        """Set `threshold_` from held-out data X (normal, or labelled with y) by `strategy`."""
        return self.calibrate_scores(self.score(X), strategy, y)

    def calibrate_scores(self, scores, strategy: ThresholdStrategy, y=None) -> "Detector":
        """Set `threshold_` from scores already computed on held-out data."""
        self.threshold_ = strategy.compute(scores, y)
        return self

    def save(self, path: str | Path) -> Path:
        """Write the model folder atomically (see `normalcy.core.modelfile`)."""
        from normalcy.core import modelfile

        return modelfile.save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> "Detector":
        """Read a model folder; fails clearly if it holds another kind of detector."""
        from normalcy.core import modelfile

        detector = modelfile.load(path)
        if not isinstance(detector, cls):
            raise ModelFileError(f"{path} holds a {type(detector).__name__}; expected a model of kind {cls.__name__}")
        return detector

    # --- state hooks for the model-file format -------------------------------------------
    @abstractmethod
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Learned state as named arrays plus JSON-safe metadata."""

    @abstractmethod
    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Restore what `_get_state` returned; raise ModelFileError on anything unexpected."""

    def _check_fitted(self, attribute: str) -> None:
        if getattr(self, attribute, None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    def _require_threshold(self) -> float:
        if self.threshold_ is None:
            raise NotFittedError(
                f"{type(self).__name__} has no threshold; call calibrate() on held-out normal "
                "data or set threshold_"
            )
        return self.threshold_


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def expect_arrays(arrays: dict[str, np.ndarray], shapes: dict[str, tuple]) -> None:
    """Check a loaded model's arrays by name and shape; None in a shape matches any size."""
    missing = sorted(set(shapes) - set(arrays))
    if missing:
        raise ModelFileError(f"model arrays missing: {', '.join(missing)}")
    for name, shape in shapes.items():
        actual = arrays[name].shape
        if len(actual) != len(shape) or any(e is not None and e != a for e, a in zip(shape, actual)):
            raise ModelFileError(f"model array {name!r} has shape {actual}, expected {shape}")
        if not np.isfinite(arrays[name]).all():
            raise ModelFileError(f"model array {name!r} contains NaN or infinity")
