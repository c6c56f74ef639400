"""The modality-independent core: detector contract, registry, results, thresholds, model
files, metrics."""

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError, NormalcyError, NotFittedError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.modelfile import load
from normalcy.core.registry import build, detectors
from normalcy.core.results import Calibration, Explanation, Prediction
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, parse_threshold

__all__ = [
    "Calibration", "DataError", "Detector", "Explanation", "F1Optimal", "FalseAlarmRate", "Fixed", "ModelFileError",
    "NormalcyError", "NotFittedError", "Prediction", "build", "detectors", "fit_with_holdout", "load",
    "parse_threshold",
]
