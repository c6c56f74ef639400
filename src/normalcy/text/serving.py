"""Serving text detectors: input `text`, BYTES [n]. Outputs `score` FP64 [n], `label` BOOL
[n] (with a threshold) and, for kNN models, `nearest` BYTES [n], the closest training text as
evidence, and `nearest_weak` BOOL [n], true where that text is too far to explain anything
(`TextDetector.weak_distance`)."""

from __future__ import annotations

import numpy as np

from normalcy.serve.codec import Codec, Limits, Output, TensorSpec
from normalcy.text.detector import TextDetector


class TextCodec(Codec):
    modality = "text"

    def __init__(self, detector: TextDetector, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec("text", ("BYTES",), (-1,))]
        self.outputs = self.score_outputs()
        if detector.train_texts_ is not None:
            self.outputs += [TensorSpec("nearest", ("BYTES",), (-1,)), TensorSpec("nearest_weak", ("BOOL",), (-1,))]

    def decode(self, tensors, parameters) -> list[str]:
        return tensors["text"].data

    def predict(self, texts, parameters):
        explanation = self.detector.explain(texts)
        out = self.scored(explanation.scores)
        if explanation.evidence is not None:
            out += [Output("nearest", "BYTES", [evidence[0] for evidence in explanation.evidence]),
                    Output("nearest_weak", "BOOL", np.array([len(evidence) > 1 for evidence in explanation.evidence]))]
        return out


CODECS = {TextDetector: TextCodec}
