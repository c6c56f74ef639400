"""Serving event detectors: one BYTES input per entity column (user, host, ...), named as the
column, all shape [n]. Outputs `score` FP64 [n] and `label` BOOL [n] (with a threshold)."""

from __future__ import annotations

from normalcy.events.base import EventDetector
from normalcy.serve.codec import Codec, Limits, TensorSpec
from normalcy.tabular.serving import frame_from


class EventCodec(Codec):
    modality = "events"

    def __init__(self, detector: EventDetector, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec(c, ("BYTES",), (-1,)) for c in detector.columns_]
        self.outputs = self.score_outputs()

    def decode(self, tensors, parameters):
        return frame_from(tensors, self.detector.columns_)

    def predict(self, frame, parameters):
        return self.scored(self.detector.decision_frame(frame, "request"))


CODECS = {EventDetector: EventCodec}
