"""Which points to keep (PointSP's question): voxel-grid, farthest-point and random sampling.

Each returns indices into the cloud, so per-point ground truth and scores follow the points
kept. Voxel sampling keeps, per occupied voxel, the point nearest the voxel's centroid (an
original point, not a new one); `voxel_sample` searches the voxel size that keeps about `n`
points (within 2%). Farthest-point sampling starts at the point farthest from the centroid (no seed) and
adds the point farthest from those kept, so it covers the surface evenly whatever the scanner's
density. docs/cloud.md measures the three on accuracy and time.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError

METHODS = ("fps", "voxel", "random")


def sample(points: np.ndarray, n: int, method: str, seed: int = 0) -> np.ndarray:
    """Indices of about n points (exactly n for fps and random; all if the cloud has fewer)."""
    if len(points) <= n:
        return np.arange(len(points))
    if method == "fps":
        return farthest_point_sample(points, n)
    if method == "voxel":
        return voxel_sample(points, n)
    if method == "random":
        return np.sort(np.random.default_rng(seed).choice(len(points), n, replace=False))
    raise DataError(f"unknown sampling {method!r}; expected one of {', '.join(METHODS)}")


def farthest_point_sample(points: np.ndarray, n: int) -> np.ndarray:
    # One contiguous array per coordinate: numpy sums three of them far faster than along
    # the short axis of an n x 3 array.
    x, y, z = (np.ascontiguousarray(points[:, d], dtype=np.float64) for d in range(3))
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = int(np.argmax((x - x.mean()) ** 2 + (y - y.mean()) ** 2 + (z - z.mean()) ** 2))
    nearest = np.full(len(x), np.inf)
    for i in range(n):
        j = chosen[i - 1] if i else chosen[0]
        np.minimum(nearest, (x - x[j]) ** 2 + (y - y[j]) ** 2 + (z - z[j]) ** 2, out=nearest)
        if i:
            chosen[i] = int(np.argmax(nearest))
            nearest[chosen[i]] = 0.0
    return np.sort(chosen)


def voxel_downsample(points: np.ndarray, voxel: float) -> np.ndarray:
    """Indices of one point per occupied voxel of edge `voxel`: the one nearest its centroid."""
    if not (voxel > 0 and np.isfinite(voxel)):
        raise DataError(f"voxel size must be a positive number, got {voxel!r}")
    cells = np.floor((points - points.min(axis=0)) / voxel).astype(np.int64)
    span = cells.max(axis=0) + 1
    keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]  # one integer per voxel
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    centroids = np.stack([np.bincount(inverse, points[:, d]) for d in range(3)], axis=1) / counts[:, None]
    distance = ((points - centroids[inverse]) ** 2).sum(axis=1)
    order = np.lexsort((distance, inverse))  # by voxel, nearest first
    first = np.r_[True, inverse[order][1:] != inverse[order][:-1]]
    return np.sort(order[first])


def voxel_sample(points: np.ndarray, n: int, steps: int = 8) -> np.ndarray:
    """Voxel sampling with the voxel size that keeps closest to n points: on a surface the
    count falls as the square of the voxel size, so each step rescales the size by
    sqrt(count / n)."""
    extent = float(np.ptp(points, axis=0).max()) or 1.0
    size = extent / np.sqrt(n)
    best = None
    for _ in range(steps):
        kept = voxel_downsample(points, size)
        if best is None or abs(len(kept) - n) < abs(len(best) - n):
            best = kept
        if abs(len(kept) - n) <= 0.02 * n:
            break
        size *= np.clip(np.sqrt(len(kept) / n), 0.5, 2.0)
    return best
