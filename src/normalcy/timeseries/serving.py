"""Serving time-series detectors: input `values`, FP64 or FP32, shape [n] (one variable) or
[n, d] (d variables, rows in time order, data row-major). Outputs `score` FP64 [n] and
`label` BOOL [n] (with a threshold).

Each request is scored as the continuation of what the model was fitted on, and is not
learned: the served model never changes, so two requests with the same values get the same
scores, whatever came between them.
"""

from __future__ import annotations

import numpy as np

from normalcy.serve.codec import Codec, Limits, RequestError, TensorSpec
from normalcy.timeseries.base import TimeSeriesDetector


class SeriesCodec(Codec):
    modality = "timeseries"
    # score() steps through the readings on the detector's own state and restores it after:
    # one request at a time per model.
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
        return values.data.astype(np.float64).reshape(values.shape[0], -1)

    def predict(self, values, parameters):
        return self.scored(self.detector.score(values))


CODECS = {TimeSeriesDetector: SeriesCodec}
