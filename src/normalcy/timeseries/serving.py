"""Serving time-series detectors: input `values`, FP64 or FP32, shape [n] (one variable) or
[n, d] (d variables, rows in time order, data row-major). Outputs `score` FP64 [n] and
`label` BOOL [n] (with a threshold).

Each request is scored as the continuation of what the model was fitted on, and is not
learned: the served model never changes, so two requests with the same values get the same
scores, whatever came between them. A null is a missing value (the last reading is carried
forward); an infinite value, or one beyond MAX_READING in magnitude (an FP32 value past its
range arrives as infinite), is refused with a 400 naming the reading and the variable.
"""

from __future__ import annotations

import numpy as np

from normalcy.serve.codec import Codec, Limits, RequestError, TensorSpec
from normalcy.timeseries.base import TimeSeriesDetector
from normalcy.timeseries.data import MAX_READING


class SeriesCodec(Codec):
    modality = "timeseries"
    # decision_function steps through the readings on the detector's own state and restores
    # it after: one request at a time per model.
    concurrent = False

    def __init__(self, detector: TimeSeriesDetector, limits: Limits):
        super().__init__(detector, limits)
        d = len(detector.columns_)
        shape, more = ((-1,), ((-1, 1),)) if d == 1 else ((-1, d), ())
        self.inputs = [TensorSpec("values", ("FP64", "FP32"), shape, more)]
        self.outputs = self.score_outputs()

    def parameters(self) -> dict:
        return {**super().parameters(), "variables": list(self.detector.columns_)}

    def decode(self, tensors, parameters) -> np.ndarray:
        values = tensors["values"]
        if not values.data.size:
            raise RequestError("input 'values' has no readings")
        data = values.data.astype(np.float64).reshape(values.shape[0], -1)
        with np.errstate(invalid="ignore"):
            bad = np.argwhere(np.abs(data) > MAX_READING)
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise RequestError(f"input 'values': reading {i} of variable {self.detector.columns_[j]!r} is "
                               f"{data[i, j]:g}; readings must be finite numbers between {-MAX_READING:g} and "
                               f"{MAX_READING:g} (null is a missing value)")
        return data

    def predict(self, values, parameters):
        return self.scored(self.detector.decision_function(values))


CODECS = {TimeSeriesDetector: SeriesCodec}
