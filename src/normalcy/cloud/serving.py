"""Serving cloud detectors: one input `cloud`, either FP32 or FP64 [n, 3], the points of one
cloud (x y z per row, row-major), or BYTES [1], one cloud file (PLY, PCD, XYZ/TXT or .npy, told
apart by its first bytes; raw bytes in binary tensor data, base64 in JSON). Outputs `score`
FP64 [1], `label` BOOL [1] (with a threshold) and `point_score` FP32 [n], one score per point
in the order sent (for a file, in the file's order).

A file is decoded by the cloud reader (`normalcy.cloud.io`): its point count is checked from
the header before a coordinate is read, and a truncated, corrupt or oversized file is a 400,
never a crash. A request has at most MAX_SERVED_POINTS points either way.
"""

from __future__ import annotations

import numpy as np

from normalcy.cloud.base import MIN_POINTS, CloudDetector
from normalcy.cloud.io import decode_cloud
from normalcy.core.errors import DataError
from normalcy.serve.codec import Codec, Limits, Output, RequestError, TensorSpec

MAX_SERVED_POINTS = 1_000_000


class CloudCodec(Codec):
    modality = "cloud"
    # Scoring reads the detector only, but detectors keep lazily built helpers (a KD-tree of
    # the template, a faiss index, a torch module): one request at a time per model.
    concurrent = False

    def __init__(self, detector: CloudDetector, limits: Limits):
        super().__init__(detector, limits)
        # Threads are the server's to set for the whole process.
        detector.threads = None
        self.inputs = [TensorSpec("cloud", ("FP32", "FP64", "BYTES"), (-1, 3), ((1,),), raw=True)]
        self.outputs = [*self.score_outputs(1), TensorSpec("point_score", ("FP32",), (-1,))]

    def parameters(self) -> dict:
        return {**super().parameters(), "max_points": MAX_SERVED_POINTS, "n_points": self.detector.n_points}

    def decode(self, tensors, parameters) -> np.ndarray:
        tensor = tensors["cloud"]
        if tensor.datatype == "BYTES":
            if len(tensor.shape) != 1:
                raise RequestError(f"input 'cloud' as BYTES must have shape [1] (one file), got {list(tensor.shape)}")
            try:
                points = decode_cloud(bytes(tensor.data[0]), "input 'cloud'", max_points=MAX_SERVED_POINTS).points
            except DataError as exc:
                raise RequestError(str(exc)) from None
        else:
            if len(tensor.shape) != 2:
                raise RequestError(f"input 'cloud' as numbers must have shape [n, 3], got {list(tensor.shape)}")
            points = tensor.data.astype(np.float64).reshape(-1, 3)
        if not MIN_POINTS <= len(points) <= MAX_SERVED_POINTS:
            raise RequestError(f"input 'cloud' has {len(points)} points; expected between {MIN_POINTS} and "
                               f"{MAX_SERVED_POINTS}")
        if not np.isfinite(points).all():
            row = int(np.argmin(np.isfinite(points).all(axis=1)))
            raise RequestError(f"input 'cloud': point {row} has a coordinate that is not a finite number "
                               "(an FP32 value past its range arrives as infinite)")
        return points

    def predict(self, points, parameters) -> list[Output]:
        explanation = self.detector.explain([points])
        return [*self.scored(explanation.scores),
                Output("point_score", "FP32", np.asarray(explanation.localization[0], dtype=np.float32))]


CODECS = {CloudDetector: CloudCodec}
