"""Serving API models: input `lines`, BYTES [n], access-log lines in the model's format (JSON
lines, combined log format, ...), in order. Lines that are no request are skipped, so outputs
are per request, m of them: `line` INT64 [m] (the 1-based position of the request's line in
the input), `score` FP64 [m] (the number of invariants broken) and `label` BOOL [m]. The
requests of one call are one batch: call order and rates are judged within it."""

from __future__ import annotations

import numpy as np

from normalcy.api.access import WHERE, read_requests
from normalcy.api.base import ApiDetector
from normalcy.serve.codec import Codec, Limits, Output, TensorSpec


class ApiCodec(Codec):
    modality = "api"

    def __init__(self, detector: ApiDetector, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec("lines", ("BYTES",), (-1,))]
        self.outputs = [TensorSpec("line", ("INT64",), (-1,)), *self.score_outputs()]

    def parameters(self) -> dict:
        return {**super().parameters(), "log_format": self.detector.log_format}

    def decode(self, tensors, parameters):
        return read_requests(tensors["lines"].data, self.detector.log_format)[0]

    def predict(self, frame, parameters):
        lines = np.array([int(w.rsplit(":", 1)[1]) for w in frame[WHERE]], dtype=np.int64)
        return [Output("line", "INT64", lines), *self.scored(self.detector.decision_function(frame))]


CODECS = {ApiDetector: ApiCodec}
