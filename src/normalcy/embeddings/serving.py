"""Serving embedding detectors: input `embedding`, FP32 or FP64, shape [n, dim] (row-major),
and for the re-embedding detector `content`, BYTES [n], each vector's source text. Outputs
`score` FP64 [n] and `label` BOOL [n] (with a threshold).

A null or infinite value is refused with a 400 naming the vector; values beyond +-1e6 count as
+-1e6 (`normalcy.embeddings.data.MAX_VALUE`)."""

from __future__ import annotations

import numpy as np

from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import Vectors
from normalcy.serve.codec import Codec, Limits, RequestError, TensorSpec


class EmbeddingCodec(Codec):
    modality = "embeddings"

    def __init__(self, detector: EmbeddingDetector, limits: Limits):
        super().__init__(detector, limits)
        self.inputs = [TensorSpec("embedding", ("FP32", "FP64"), (-1, detector.dim_))]
        if detector.needs_content:
            self.inputs.append(TensorSpec("content", ("BYTES",), (-1,)))
        self.outputs = self.score_outputs()

    def parameters(self) -> dict:
        return {**super().parameters(), "dim": self.detector.dim_}

    def decode(self, tensors, parameters) -> Vectors:
        embedding = tensors["embedding"]
        n = embedding.shape[0]
        if not n:
            raise RequestError("input 'embedding' has no vectors")
        matrix = embedding.data.astype(np.float64).reshape(n, self.detector.dim_)
        bad = ~np.isfinite(matrix).all(axis=1)
        if bad.any():
            raise RequestError(f"input 'embedding': vector {int(np.flatnonzero(bad)[0])} holds a null, NaN or "
                               "infinite value")
        content = None
        if self.detector.needs_content:
            content = tensors["content"].data
            if len(content) != n:
                raise RequestError(f"input 'content' has {len(content)} texts for {n} vectors; give one per vector")
        return Vectors(matrix, content)

    def predict(self, vectors, parameters):
        return self.scored(self.detector.decision_function(vectors))


CODECS = {EmbeddingDetector: EmbeddingCodec}
