"""Serving text detectors: input `text`, BYTES [n]. Outputs `score` FP64 [n], `label` BOOL
[n] (with a threshold) and, for kNN models, `nearest` BYTES [n]: the closest training text,
as evidence."""

from __future__ import annotations

from normalcy.serve.codec import Codec, Limits, Output, TensorSpec
from normalcy.text.detector import TextDetector


class TextCodec(Codec):
    modality = "text"

    def __init__(self, detector: TextDetector, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec("text", ("BYTES",), (-1,))]
        self.outputs = self.score_outputs()
        if detector.train_texts_ is not None:
            self.outputs.append(TensorSpec("nearest", ("BYTES",), (-1,)))

    def decode(self, tensors, parameters) -> list[str]:
        return tensors["text"].data

    def predict(self, texts, parameters):
        scores, nearest = self.detector.score_with_evidence(texts)
        return self.scored(scores) + ([] if nearest is None else [Output("nearest", "BYTES", nearest)])


CODECS = {TextDetector: TextCodec}
