"""A memory bank of local geometric descriptors (Horwitz & Hoshen, "Back to the Feature:
Classical 3D Features are (Almost) All You Need for 3D Anomaly Detection", 2022).

Nothing is trained: `fit` describes every sampled point of the normal clouds by its FPFH,
a boundary cue and, optionally, its position after registration to the template, and keeps a
greedy k-center coreset of them (as PatchCore). A point's score is the distance from its
descriptor to the nearest one in the bank (faiss).

A descriptor can only score points that are there: material that is missing (a hole, a
chipped edge) leaves no point to score. So, with registration, each template point's distance
to the cloud is also compared with the same distance over the training clouds (a z-score per
template point), and the excess is given to the cloud's point nearest that template point:
the rim of a hole lights up.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial import cKDTree

from normalcy.cloud import features
from normalcy.cloud.base import CloudDetector, Prepared
from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.threads import thread_limit

MIN_BANK = 2000


class FPFHMemory(CloudDetector):
    """FPFH memory bank: distance of each point's local descriptor to its nearest normal one.

    Parameters:

    - position_weight: weight of the point's registered position (in units of the part's RMS
      radius) beside its FPFH (bins summing to 100 per third); 0 ignores positions and skips
      registration (default 100: 5% of the part's radius away from any normal point counts as
      much as 5 FPFH units).
    - boundary_weight: weight of the boundary cue (about 0 inside a surface, 1 on a rim)
      beside the FPFH (default 20).
    - missing_weight: weight of the missing-surface score (the z-score above, per point) beside
      the descriptor distance; 0 turns it off (default 2).
    - coreset_ratio: share of the training descriptors kept in the bank (default 0.1; at least
      MIN_BANK, 2,000, or all of them if fewer).
    - n_points (2048), sampling ("voxel"), neighbors (16), seed (0), threads (None): as for every
      cloud detector (`CloudDetector`).
    """

    name = "fpfh"
    _fitted_attribute = "memory_bank_"

    def __init__(self, position_weight: float = 100.0, boundary_weight: float = 20.0, missing_weight: float = 2.0,
                 coreset_ratio: float = 0.1,
                 n_points: int = 2048, sampling: str = "voxel", neighbors: int = 16, seed: int = 0,
                 threads: int | None = None):
        super().__init__(n_points, sampling, neighbors, seed, threads)
        self.position_weight = position_weight
        self.boundary_weight = boundary_weight
        self.missing_weight = missing_weight
        self.coreset_ratio = coreset_ratio

    @property
    def registers(self) -> bool:
        return bool(self.position_weight or self.missing_weight)

    def _check_params(self):
        super()._check_params()
        for name in ("position_weight", "boundary_weight", "missing_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1e6):
                raise DataError(f"{name} must be a number in [0, 1e6], got {value!r}")
        ratio = self.coreset_ratio
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0.0 < ratio <= 1.0):
            raise DataError(f"coreset_ratio must be a number in (0, 1], got {ratio!r}")

    def describe(self, cloud: Prepared) -> np.ndarray:
        """Descriptors of the sampled points: FPFH, weighted boundary cue, weighted position."""
        parts = [features.fpfh(cloud.xyz, cloud.normals, cloud.distances, cloud.index),
                 self.boundary_weight * features.boundary(cloud.xyz, cloud.normals, cloud.distances,
                                                          cloud.index)[:, None]]
        if self.position_weight:
            parts.append(self.position_weight * cloud.xyz)
        return np.concatenate(parts, axis=1).astype(np.float32)

    def _fit_prepared(self, clouds):
        import torch

        from normalcy.image.patchcore import greedy_coreset

        descriptors = np.concatenate([self.describe(c) for c in clouds])
        n_keep = max(math.ceil(self.coreset_ratio * len(descriptors)), min(MIN_BANK, len(descriptors)))
        # One thread: the loop is thousands of small steps, and on a busy machine a second
        # thread waiting at each step's barrier made it ten times slower (measured: 17 s vs 1.7 s).
        with thread_limit(1):
            keep = greedy_coreset(torch.from_numpy(descriptors), n_keep, 0, self.seed)
        self.memory_bank_ = np.ascontiguousarray(descriptors[keep])
        self._index = None
        if self.missing_weight:
            # The first cloud is the template itself: its distances are 0, not a sample.
            gaps = np.array([cKDTree(c.xyz).query(self.template_)[0] for c in clouds[1:]])
            self.missing_mean_ = gaps.mean(axis=0) if len(gaps) else np.zeros(len(self.template_))
            self.missing_std_ = gaps.std(axis=0) if len(gaps) > 1 else np.zeros(len(self.template_))

    def _score_prepared(self, cloud):
        described = self.describe(cloud)
        if described.shape[1] != self.memory_bank_.shape[1]:
            raise ModelFileError(f"memory bank has {self.memory_bank_.shape[1]} features, descriptors have "
                                 f"{described.shape[1]}")
        distances, _ = self.index.search(described, 1)
        scores = np.sqrt(np.maximum(distances[:, 0], 0.0))
        if self.missing_weight:
            scores = scores + self.missing_weight * self.missing(cloud)
        return scores

    def missing(self, cloud: Prepared) -> np.ndarray:
        """Per sampled point: the largest z-score of the template points it is nearest to, of
        their distance to this cloud against the training clouds' (0 if none is higher)."""
        gap, nearest = cKDTree(cloud.xyz).query(self.template_)
        # A floor on the spread: where every training cloud fits the template equally well, a
        # tiny spread would make noise look significant.
        spread = self.missing_std_ + max(float(np.median(self.missing_std_)), 1e-3)
        z = np.maximum((gap - self.missing_mean_) / spread, 0.0)
        out = np.zeros(len(cloud.xyz))
        np.maximum.at(out, nearest, z)
        return out

    @property
    def index(self):
        if getattr(self, "_index", None) is None:
            import faiss

            self._index = faiss.IndexFlatL2(self.memory_bank_.shape[1])
            self._index.add(self.memory_bank_)
        return self._index

    def _own_state(self):
        arrays = {"memory_bank": self.memory_bank_}
        if self.missing_weight:
            arrays.update(missing_mean=self.missing_mean_, missing_std=self.missing_std_)
        return arrays, {}

    def _set_own_state(self, arrays, meta):
        width = features.FPFH_DIM + 1 + (3 if self.position_weight else 0)
        shapes = {"memory_bank": (None, width)}
        if self.missing_weight:
            shapes.update(missing_mean=(len(self.template_),), missing_std=(len(self.template_),))
        expect_arrays(arrays, shapes)
        self.memory_bank_ = np.ascontiguousarray(arrays["memory_bank"], dtype=np.float32)
        if self.missing_weight:
            if (arrays["missing_std"] < 0).any():
                raise ModelFileError("model array 'missing_std' has negative values")
            self.missing_mean_ = arrays["missing_mean"].astype(np.float64)
            self.missing_std_ = arrays["missing_std"].astype(np.float64)
        self._index = None
