"""The modality-independent core: detector contract, results, thresholds, model files, metrics."""

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError, NormalcyError, NotFittedError
from normalcy.core.modelfile import load
from normalcy.core.results import Prediction
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, parse_threshold

__all__ = [
    "DataError", "Detector", "F1Optimal", "FalseAlarmRate", "Fixed", "ModelFileError",
    "NormalcyError", "NotFittedError", "Prediction", "load", "parse_threshold",
]
