"""What every point-cloud detector shares: reading clouds, choosing the points to work on,
their local geometry, registration to a template, and per-point scores for every input point.

A cloud is sampled to about `n_points` points (voxel grid by default; `sampling`), which
are normalised (centroid at the origin, RMS radius 1) and given normals and k-nearest-neighbour
neighbourhoods. Detectors score the sampled points; scores are smoothed over each point's
neighbourhood, the object score is the largest smoothed score, and every point of the input
gets the score of its nearest sampled point, so ground truth on the full cloud can be scored.
Detectors that compare positions (`registers`) also rotate each cloud onto a template, the
first training cloud (normalcy.cloud.register).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree

from normalcy.cloud import features
from normalcy.cloud.io import MAX_POINTS, PointCloud, read_cloud
from normalcy.cloud.register import normalise, register
from normalcy.cloud.sampling import METHODS, sample
from normalcy.core.detector import Detector, expect_arrays
from normalcy.core.errors import DataError, ModelFileError, NotFittedError
from normalcy.core.progress import progress
from normalcy.core.results import Explanation, Prediction
from normalcy.core.threads import check_threads, thread_limit

CloudInput = Sequence[str | Path | np.ndarray | PointCloud] | np.ndarray

MIN_POINTS = 32
MAX_COORDINATE = 1e9
SMOOTH = 8  # neighbours a sampled point's score is averaged over


@dataclass
class Prepared:
    """One cloud as detectors see it."""

    points: np.ndarray  # the input points, n x 3
    keep: np.ndarray  # indices of the sampled points
    xyz: np.ndarray  # sampled points, normalised (and registered, for detectors that register)
    normals: np.ndarray
    distances: np.ndarray  # to each sampled point's k nearest sampled points
    index: np.ndarray

    def per_point(self, sampled_scores: np.ndarray) -> np.ndarray:
        """Every input point gets the score of its nearest sampled point."""
        _, nearest = cKDTree(self.points[self.keep]).query(self.points)
        return sampled_scores[nearest].astype(np.float32)


class CloudDetector(Detector):
    """Base for point-cloud detectors.

    Parameters every cloud detector takes:

    - n_points: points sampled from each cloud to work on (default 2048, at least 64); every
      input point still gets a score.
    - sampling: which points to keep: "voxel" (default), "fps" (farthest-point) or "random";
      farthest-point sampling was a little more accurate on the two part kinds compared, at 1.3-1.7
      times the CPU per scored cloud (docs/cloud.md, "Which points to keep").
    - neighbors: neighbourhood size for normals and descriptors (default 16).
    - seed: seed of random sampling and of the detector's own randomness (default 0).
    - threads: CPU threads for neighbour search, BLAS, torch and faiss (default None: the
      libraries' own choice).

    A subclass implements `_fit_prepared(clouds)` and `_score_prepared(cloud)` (raw scores of
    the sampled points, higher = more anomalous), `_own_state` / `_set_own_state` for its
    arrays and `_check_params` for its own parameters; it sets `registers = True` to get its
    clouds rotated onto the template.
    """

    modality = "cloud"
    explains = True
    registers = False
    _fitted_attribute = ""

    def __init__(self, n_points: int = 2048, sampling: str = "voxel", neighbors: int = 16, seed: int = 0,
                 threads: int | None = None):
        self.n_points = n_points
        self.sampling = sampling
        self.neighbors = neighbors
        self.seed = seed
        self.threads = threads

    # --- public contract -------------------------------------------------------------------
    def fit(self, X: CloudInput, y=None) -> "CloudDetector":
        self._check_params()
        clouds = _as_clouds(X)
        with thread_limit(self.threads):
            prepared = []
            self.template_ = None
            for i, cloud in enumerate(progress(clouds, desc="prepare", unit="cloud")):
                if i == 0 and self.registers:
                    self.template_ = self._normalised(_points(cloud))[1]
                prepared.append(self._prepare(cloud))
            self._fit_prepared(prepared)
        return self

    def decision_function(self, X: CloudInput) -> np.ndarray:
        return self._score(X, maps=False)[0]

    def detect(self, X: CloudInput) -> Prediction:
        """Scores, labels, and per-point scores as `localization`: an object array of n
        float32 arrays, one score per input point of each cloud, in the input's order."""
        threshold = self._require_threshold()
        scores, maps = self._score(X, maps=True)
        return Prediction.from_scores(scores, threshold, maps)

    def explain(self, X: CloudInput) -> Explanation:
        """Where each cloud is anomalous: per-point scores as `localization` (see `detect`);
        needs no threshold."""
        scores, maps = self._score(X, maps=True)
        return Explanation(scores, localization=maps)

    def _check_params(self) -> None:
        if not (_is_int(self.n_points) and 64 <= self.n_points <= 100_000):
            raise DataError(f"n_points must be an integer in [64, 100000], got {self.n_points!r}")
        if self.sampling not in METHODS:
            raise DataError(f"sampling must be one of {', '.join(METHODS)}, got {self.sampling!r}")
        if not (_is_int(self.neighbors) and 4 <= self.neighbors <= 64):
            raise DataError(f"neighbors must be an integer in [4, 64], got {self.neighbors!r}")
        if not _is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")
        check_threads(self.threads)

    # --- hooks -------------------------------------------------------------------------------
    @abstractmethod
    def _fit_prepared(self, clouds: list[Prepared]) -> None:
        """Learn from the prepared training clouds."""

    @abstractmethod
    def _score_prepared(self, cloud: Prepared) -> np.ndarray:
        """Raw scores of a prepared cloud's sampled points."""

    def _own_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {}, {}

    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore what `_own_state` gave; ModelFileError on anything unexpected."""

    # --- shared machinery ----------------------------------------------------------------------
    def _get_state(self):
        arrays, meta = self._own_state()
        if self.registers:
            arrays = {**arrays, "template": self.template_}
        return arrays, meta

    def _set_state(self, arrays, meta):
        if self.registers:
            arrays = dict(arrays)
            expect_arrays(arrays, {"template": (None, 3)})
            self.template_ = arrays.pop("template").astype(np.float64)
            if len(self.template_) < MIN_POINTS:
                raise ModelFileError(f"model template has {len(self.template_)} points, fewer than {MIN_POINTS}")
            self._tree = None
        self._set_own_state(arrays, meta)

    def _normalised(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # Checked before sampling: `normalise` stands a zero spread in for 1 (no division by 0),
        # and a voxel grid keeps one point of a cloud whose points all coincide.
        spread = float(np.sqrt(points.var(axis=0).sum()))
        if not spread > 1e-9 * max(1.0, float(np.abs(points).max())):
            raise DataError("a cloud has all its points in one place; expected a surface")
        keep = sample(points, self.n_points, self.sampling, self.seed)
        if len(keep) <= self.neighbors:
            raise DataError(f"a cloud has only {len(keep)} distinct places among its points; "
                            f"neighbors={self.neighbors} needs more than that")
        xyz, _, _ = normalise(points[keep])
        return keep, xyz

    def _prepare(self, cloud) -> Prepared:
        points = _points(cloud)
        if len(points) <= self.neighbors:
            raise DataError(f"a cloud has {len(points)} points; neighbors={self.neighbors} needs more than that")
        keep, xyz = self._normalised(points)
        if self.registers:
            if getattr(self, "_tree", None) is None:
                self._tree = cKDTree(self.template_)
            rotation, shift, _ = register(xyz, self.template_, self._tree, self.seed)
            xyz = xyz @ rotation.T + shift
        workers = self.threads or 1
        distances, index = features.neighbours(xyz, self.neighbors, workers)
        return Prepared(points, keep, xyz, features.normals(xyz, index), distances, index)

    def _score(self, X: CloudInput, maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if not self._fitted_attribute or getattr(self, self._fitted_attribute, None) is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")
        clouds = _as_clouds(X)
        scores, per_point = [], []
        with thread_limit(self.threads):
            for cloud in progress(clouds, desc="score", unit="cloud"):
                prepared = self._prepare(cloud)
                raw = np.asarray(self._score_prepared(prepared), dtype=np.float64)
                k = min(SMOOTH, prepared.index.shape[1])
                smooth = (raw + raw[prepared.index[:, :k]].sum(axis=1)) / (k + 1)
                scores.append(float(smooth.max()))
                if maps:
                    per_point.append(prepared.per_point(smooth))
        localization = None
        if maps:
            localization = np.empty(len(per_point), dtype=object)
            localization[:] = per_point
        return np.asarray(scores, dtype=np.float64), localization


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _as_clouds(X: CloudInput) -> list:
    if isinstance(X, np.ndarray):
        if X.ndim == 3:
            return list(X)
        raise DataError(f"expected a list of clouds (or an N x n x 3 array), got an array of shape {X.shape}; "
                        "wrap one cloud in a list")
    if isinstance(X, (str, Path, PointCloud)):
        raise DataError("expected a list of clouds, got a single one; wrap it in a list")
    try:
        items = list(X)
    except TypeError:
        raise DataError(f"expected a list of clouds (paths, n x 3 arrays or PointClouds), got {type(X).__name__}"
                        ) from None
    if not items:
        raise DataError("no clouds given")
    return items


def _points(item) -> np.ndarray:
    """A cloud's n x 3 float64 points, checked."""
    if isinstance(item, (str, Path)):
        item = read_cloud(item)
    if isinstance(item, PointCloud):
        item = item.points
    if not isinstance(item, np.ndarray):
        raise DataError(f"a cloud must be a file path, an n x 3 array or a PointCloud, got {type(item).__name__}")
    if item.dtype.kind not in "iuf":
        raise DataError(f"a cloud array must hold numbers, got dtype {item.dtype}")
    if item.ndim != 2 or item.shape[1] < 3:
        raise DataError(f"a cloud array must be n x 3 (x y z, further columns ignored), got shape {item.shape}")
    if not MIN_POINTS <= len(item) <= MAX_POINTS:
        raise DataError(f"a cloud has {len(item)} points; expected between {MIN_POINTS} and {MAX_POINTS}")
    points = np.asarray(item[:, :3], dtype=np.float64)
    if not np.isfinite(points).all() or np.abs(points).max() > MAX_COORDINATE:
        raise DataError(f"a cloud has coordinates that are not finite numbers within +-{MAX_COORDINATE:g}")
    return points
