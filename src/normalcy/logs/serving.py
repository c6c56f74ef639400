"""Serving log models (what `normalcy logs fit` writes): input `lines`, BYTES [n], raw log
lines in order. The model parses and groups them as it was fitted to (sessions by
identifier, time windows, or each line alone), so outputs are per group, g of them:
`group` BYTES [g] (the session key or window), `n_lines` INT64 [g], `score` FP64 [g] and
`label` BOOL [g] (with a threshold)."""

from __future__ import annotations

import numpy as np

from normalcy.logs.model import LogModel
from normalcy.serve.codec import Codec, Limits, Output, TensorSpec


class LogCodec(Codec):
    modality = "logs"

    def __init__(self, detector: LogModel, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec("lines", ("BYTES",), (-1,))]
        self.outputs = [TensorSpec("group", ("BYTES",), (-1,)), TensorSpec("n_lines", ("INT64",), (-1,)),
                        *self.score_outputs()]

    def parameters(self) -> dict:
        model = self.detector
        grouping = {"sessions": "identifier", "windows": "window", "lines": "line"}[model.unit]
        return {**super().parameters(), "log_detector": model.detector, "log_format": model.log_format,
                "grouping": grouping}

    def decode(self, tensors, parameters) -> list[str]:
        return tensors["lines"].data

    def predict(self, lines, parameters):
        analysis = self.detector.analyse(lines, explain=False)
        sizes = np.array([len(idx) for idx in analysis.groups.lines], dtype=np.int64)
        return [Output("group", "BYTES", list(analysis.groups.keys)), Output("n_lines", "INT64", sizes),
                *self.scored(analysis.scores)]


CODECS = {LogModel: LogCodec}
