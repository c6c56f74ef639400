"""Detectors from the statistics of the vectors themselves: no source text needed.

Each learns a robust centre (median) and scale (1.4826 x the median absolute deviation) of
some statistics over the training vectors, and scores a vector by how many scales its
statistics lie from the centre. Scales are floored at FLOOR: a model that normalises its
output (all-MiniLM-L6-v2 does) gives norms equal to float32 precision, so the spread of the
training norms is ~1e-8 and without a floor any rounding difference would look anomalous;
1e-6 is well below any change that moves a vector's neighbours.

- `norm`: the log of the vector's length. Noise, offsets and scaling change it; rotations
  do not.
- `moments`: the shape of the vector's values: log length, and of the unit vector the mean,
  skewness, kurtosis, largest magnitude and share of zeros (fragments zero most values).
- `dims`: each dimension against its own training distribution, the mean squared robust
  z-score over the dimensions (a diagonal Gaussian model).
"""

from __future__ import annotations

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import ModelFileError
from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import Vectors

FLOOR = 1e-6
MAD_TO_SD = 1.4826  # the MAD of a normal distribution is 0.6745 of its standard deviation
ZERO = 1e-12  # a unit vector's value this small counts as zero
TINY_NORM = 1e-300


def robust_scale(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and floored MAD-based scale of each column."""
    center = np.median(values, axis=0)
    scale = MAD_TO_SD * np.median(np.abs(values - center), axis=0)
    return center, np.maximum(scale, FLOOR)


class _Robust(EmbeddingDetector):
    """Robust z-scores of per-vector statistics (`_statistics`, n x k) against training."""

    explains = True
    prefix: str = ""

    def _statistics(self, matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fit_encoded(self, vectors: Vectors) -> None:
        self.center_, self.scale_ = robust_scale(self._statistics(vectors.matrix))

    def _z(self, vectors: Vectors) -> np.ndarray:
        self._check_fitted("center_")
        return np.abs(self._statistics(vectors.matrix) - self.center_) / self.scale_

    def _own_state(self):
        return {f"{self.prefix}.center": self.center_, f"{self.prefix}.scale": self.scale_}, {}

    def _set_own_state(self, arrays, meta, dim):
        k = self._n_statistics(dim)
        keys = {f"{self.prefix}.center": (k,), f"{self.prefix}.scale": (k,)}
        expect_arrays(arrays, keys)
        scale = arrays[f"{self.prefix}.scale"].astype(np.float64)
        if not (scale >= FLOOR).all():
            raise ModelFileError(f"model array {self.prefix}.scale must be at least {FLOOR:g} everywhere")
        self.center_, self.scale_ = arrays[f"{self.prefix}.center"].astype(np.float64), scale

    def _n_statistics(self, dim: int) -> int:
        return len(self._parts())


class Norm(_Robust):
    """How far a vector's length is from the training lengths: |log length - median| over
    the robust scale of the training log lengths (see the module notes). No parameters."""

    name = "norm"
    prefix = "norm"

    def _statistics(self, matrix):
        return np.log(np.maximum(_lengths(matrix), TINY_NORM))[:, None]

    def _score_encoded(self, vectors):
        return self._z(vectors)[:, 0]

    def _explain_encoded(self, vectors):
        return self._z(vectors)

    def _parts(self):
        return ["log_norm"]


class Moments(_Robust):
    """The largest robust z-score among a vector's value statistics: log length, and of the
    unit vector mean, skewness, kurtosis, largest magnitude and share of zeros (see the module
    notes). No parameters."""

    name = "moments"
    prefix = "moments"
    PARTS = ["log_norm", "mean", "skewness", "kurtosis", "max_abs", "zero_share"]

    def _statistics(self, matrix):
        lengths = _lengths(matrix)
        unit = matrix / np.maximum(lengths, TINY_NORM)[:, None]
        mean = unit.mean(axis=1)
        centred = unit - mean[:, None]
        sd = np.sqrt((centred ** 2).mean(axis=1))
        safe = np.where(sd > 0, sd, 1.0)
        skew = np.where(sd > 0, (centred ** 3).mean(axis=1) / safe ** 3, 0.0)
        kurt = np.where(sd > 0, (centred ** 4).mean(axis=1) / safe ** 4, 0.0)
        return np.column_stack([np.log(np.maximum(lengths, TINY_NORM)), mean, skew, kurt,
                                np.abs(unit).max(axis=1), (np.abs(unit) < ZERO).mean(axis=1)])

    def _score_encoded(self, vectors):
        return self._z(vectors).max(axis=1)

    def _explain_encoded(self, vectors):
        return self._z(vectors)

    def _parts(self):
        return list(self.PARTS)


class Dims(_Robust):
    """The mean over dimensions of each value's squared robust z-score against that
    dimension's training values (see the module notes). No parameters."""

    name = "dims"
    prefix = "dims"

    def _statistics(self, matrix):
        return matrix

    def _score_encoded(self, vectors):
        return (self._z(vectors) ** 2).mean(axis=1)

    def _explain_encoded(self, vectors):
        z = self._z(vectors)
        return z ** 2 / z.shape[1]

    def _parts(self):
        return [f"dim {j}" for j in range(self.dim_)]

    def _n_statistics(self, dim):
        return dim


def _lengths(matrix: np.ndarray) -> np.ndarray:
    # Values are within MAX_VALUE (1e6), so the sum of squares cannot overflow.
    return np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
