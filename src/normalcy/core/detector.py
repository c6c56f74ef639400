"""The detector contract every modality implements.

scikit-learn conventions: the constructor only stores parameters, `fit` learns from (mostly)
normal data and returns self, learned state ends in an underscore, and `score(X, y)` is a
figure of merit (AUROC against labels y), so `clone`, pipelines, `GridSearchCV` and
`cross_val_score` work. PyOD's orientation and names: `decision_function(X)` gives one anomaly
score per item, higher = more anomalous; `predict(X)` gives 0/1 labels (1 = anomaly) at the
detector's threshold. `detect(X)` gives both plus localisation (`Prediction`), `explain(X)`
says why (`Explanation`).

A subclass implements `fit`, `decision_function` and the two model-file hooks `_get_state`
and `_set_state`; each modality's base class does this once and asks its detectors for the
same hooks under the same names: `_fit_encoded`, `_score_encoded`, `_explain_encoded` (where
`explains` is True) on the modality's encoded input, and `_own_state` / `_set_own_state` for
the detector's own arrays. A concrete class with a `name` joins its modality's registry
(`normalcy.core.registry`). Parameters shared across modalities have one name each:
`threads` (CPU threads), `seed` (randomness).
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from normalcy.core import registry
from normalcy.core.errors import DataError, ModelFileError, NotFittedError
from normalcy.core.results import Calibration, Explanation, Prediction
from normalcy.core.threshold import ThresholdStrategy


class Detector(BaseEstimator):
    # Set by a concrete detector: its registry name (CLI --model, benchmarks, serving).
    name: ClassVar[str]
    # Set by each modality's base class.
    modality: ClassVar[str | None] = None
    # Whether `explain` gives per-part contributions.
    explains: ClassVar[bool] = False
    # Parameters renamed since a release (old name -> new name): model files saved before
    # the rename still load.
    renamed_params: ClassVar[dict[str, str]] = {}

    threshold_: float | None = None
    calibration_: Calibration | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Detector is no ABC (BaseEstimator's metaclass is `type`), so `__abstractmethods__`
        # is never set: look for methods still marked abstract instead.
        if not any(getattr(getattr(cls, attr, None), "__isabstractmethod__", False) for attr in dir(cls)):
            registry.register(cls)

    @abstractmethod
    def fit(self, X, y=None) -> "Detector":
        """Learn what normal looks like from X; returns self."""

    @abstractmethod
    def decision_function(self, X) -> np.ndarray:
        """One anomaly score per item of X, higher = more anomalous."""

    def predict(self, X) -> np.ndarray:
        """0/1 labels (1 = anomaly) at the detector's threshold."""
        return self.detect(X).labels

    def detect(self, X) -> Prediction:
        """Scores, labels at the detector's threshold, and a localisation where supported."""
        return Prediction.from_scores(self.decision_function(X), self._require_threshold())

    def explain(self, X) -> Explanation:
        """Why each item scored as it did (see `Explanation`); detectors with `explains`."""
        raise DataError(f"{type(self).__name__} gives no explanation")

    def score(self, X, y) -> float:
        """AUROC of the anomaly scores against labels y (1 = anomaly): scikit-learn's figure of
        merit, higher is better, so model selection works on detectors."""
        from normalcy.core import metrics

        if y is None:
            raise DataError("score(X, y) is the AUROC against labels y; for anomaly scores use decision_function(X)")
        return metrics.auroc(np.asarray(y), self.decision_function(X))

    def calibrate(self, X, strategy: ThresholdStrategy, y=None) -> "Detector":
        """Set `threshold_` from held-out data X (normal, or labelled with y) by `strategy`."""
        return self.calibrate_scores(self.decision_function(X), strategy, y)

    def calibrate_scores(self, scores, strategy: ThresholdStrategy, y=None) -> "Detector":
        """Set `threshold_` from scores already computed on held-out data; `calibration_` says
        how many items set it, which share of the normal ones it flags, and any caveat."""
        self.calibration_ = strategy.calibrate(scores, y)
        self.threshold_ = self.calibration_.threshold
        return self

    def set_threshold(self, value: float, rule: str = "fixed") -> "Detector":
        """A threshold chosen without held-out data (a fixed value, or the detector's own rule)."""
        self.threshold_ = float(value)
        self.calibration_ = Calibration(rule=rule, threshold=self.threshold_, n_items=0)
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

    def _check_params(self) -> None:
        """Raise DataError on a parameter value the detector cannot work with; called by `fit`
        and when a model file is loaded (whose parameters are untrusted input)."""

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
                "data or set_threshold()"
            )
        return self.threshold_


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
