"""Serving alert rankers: one input per column the ranker reads, all shape [n], one alert per
element: the time (FP64 or INT64 seconds since 1970, or BYTES ISO 8601 text), the type and the
entity columns (BYTES), and the raw score (FP64) where the model has one. The alerts of one
request are one queue: each is judged after the earlier alerts of its stream in that request
(and, with a source column, corroborated by the other sources' alerts on it, before or after).
Outputs `score` FP64 [n] (higher = more likely a true alert; sort by it) and `label` BOOL [n]
(with a threshold). Verdicts are not taken by the service: feed them back with `normalcy alerts
fit` (kept in the model) or `rank --feedback`."""

from __future__ import annotations

import pandas as pd

from normalcy.alerts.base import AlertRanker
from normalcy.serve.codec import NUMBERS, Codec, Limits, TensorSpec
from normalcy.tabular.serving import frame_from


class AlertCodec(Codec):
    modality = "alerts"

    def __init__(self, detector: AlertRanker, limits: Limits):
        super().__init__(detector, limits)
        ranker = detector
        self.inputs = [TensorSpec(ranker.time_column, (*NUMBERS, "BYTES"), (-1,)),
                       TensorSpec(ranker.type_column, ("BYTES",), (-1,)),
                       *(TensorSpec(c, ("BYTES",), (-1,)) for c in ranker.columns_)]
        if ranker.scored_:
            self.inputs.append(TensorSpec(ranker.score_column, NUMBERS, (-1,)))
        self.outputs = self.score_outputs()

    def decode(self, tensors, parameters) -> pd.DataFrame:
        return frame_from(tensors, [s.name for s in self.inputs])

    def predict(self, frame, parameters):
        return self.scored(self.detector.decision_function(frame))


CODECS = {AlertRanker: AlertCodec}
