"""Local geometry of a point cloud: normals, FPFH descriptors and a boundary cue.

FPFH (Rusu et al., ICRA 2009) as in PCL, on k nearest neighbours instead of a radius (equal
cost per point whatever the density): for each point p and neighbour q, the Darboux-frame
angles (alpha, phi, theta) of their normals, binned 11 ways each into a point's SPFH (each
third sums to 100); the FPFH is the SPFH plus the neighbours' SPFHs weighted by 1/distance,
each third normalised to 100 again. The descriptor ignores where the neighbours lie around the
point, so it cannot see the rim of a hole on a flat face: `boundary` adds the length of the
offset from a point to its neighbours' centroid, in the tangent plane, over the mean
neighbour distance (about 0 inside a surface, near 1 on a rim).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

BINS = 11
FPFH_DIM = 3 * BINS


def neighbours(points: np.ndarray, k: int, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each point's k nearest other points (n x k each)."""
    k = min(k, len(points) - 1)
    distances, index = cKDTree(points).query(points, k + 1, workers=workers)
    return distances[:, 1:], index[:, 1:]


def normals(points: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Unit normals by PCA of each neighbourhood, oriented consistently by `orient`."""
    return orient(points, pca_normals(points, index), index)


def pca_normals(points: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Unit normals, of either sign: the least-variance axis of each point and its neighbours."""
    hood = np.concatenate([points[:, None], points[index]], axis=1)
    centred = hood - hood.mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
    return vectors[:, :, 0]


def orient(points: np.ndarray, normal: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Consistent normal signs (Hoppe et al. 1992): over a minimum spanning tree of the
    neighbour graph (weights below), each normal takes the side of its
    parent's, starting, in each connected piece, from the point farthest from the centroid,
    whose normal points away from it. Orienting each normal away from the centroid alone
    flips at random on bores and inner corners, where a normal is nearly at right angles to
    the direction from the centroid."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import breadth_first_order, connected_components, minimum_spanning_tree

    n, k = index.shape
    k = min(k, 8)
    rows, cols = np.repeat(np.arange(n), k), index[:, :k].reshape(-1)
    direction = points[cols] - points[rows]
    direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    # Cheap edges join points on one smooth surface: parallel normals, each at right angles to
    # the step. The second term keeps the tree from stepping across a thin wall, whose two
    # sides have parallel (opposite) normals too.
    weight = (1.0 - np.abs((normal[rows] * normal[cols]).sum(axis=1))
              + 0.5 * (np.abs((normal[rows] * direction).sum(axis=1)) + np.abs((normal[cols] * direction).sum(axis=1)))
              + 1e-6)
    graph = coo_matrix((weight, (rows, cols)), shape=(n, n)).tocsr()
    tree = minimum_spanning_tree(graph.maximum(graph.T))
    tree = tree + tree.T
    outward = points - points.mean(axis=0)
    radius = (outward ** 2).sum(axis=1)
    _, piece = connected_components(tree, directed=False)
    out = normal.copy()
    sign = np.zeros(n)
    for label in np.unique(piece):
        members = np.flatnonzero(piece == label)
        root = int(members[np.argmax(radius[members])])
        order, parent = breadth_first_order(tree, root, directed=False, return_predecessors=True)
        sign[root] = 1.0 if outward[root] @ normal[root] >= 0 else -1.0
        agree = np.sign((normal[order[1:]] * normal[parent[order[1:]]]).sum(axis=1))
        agree[agree == 0] = 1.0
        for v, a in zip(order[1:].tolist(), agree.tolist()):
            sign[v] = sign[parent[v]] * a
    return out * sign[:, None]


def fpfh(points: np.ndarray, normal: np.ndarray, distances: np.ndarray, index: np.ndarray) -> np.ndarray:
    """n x 33 FPFH descriptors over the given neighbourhoods."""
    n, k = index.shape
    p1, n1 = points[:, None, :], normal[:, None, :]
    p2, n2 = points[index], normal[index]
    d = p2 - p1
    length = np.maximum(np.linalg.norm(d, axis=2, keepdims=True), 1e-12)
    d = d / length
    a1, a2 = (n1 * d).sum(axis=2), (n2 * d).sum(axis=2)
    # PCL's choice of source: the end whose normal makes the smaller angle with the line. Ties
    # (parallel normals along the line) keep the point as source, whatever rounding says, so
    # the descriptor does not change with the pose.
    swap = np.abs(a1) < np.abs(a2) - 1e-9
    src = np.where(swap[..., None], n2, np.broadcast_to(n1, n2.shape))
    tgt = np.where(swap[..., None], np.broadcast_to(n1, n2.shape), n2)
    d = np.where(swap[..., None], -d, d)
    theta = np.where(swap, -a2, a1)
    v = np.cross(d, src)
    v_len = np.linalg.norm(v, axis=2, keepdims=True)
    valid = v_len[..., 0] > 1e-12
    v = v / np.maximum(v_len, 1e-12)
    w = np.cross(src, v)
    phi = (v * tgt).sum(axis=2)
    alpha = np.arctan2((w * tgt).sum(axis=2), (src * tgt).sum(axis=2))
    bins = [_bin(alpha, -np.pi, np.pi), _bin(phi, -1, 1), _bin(theta, -1, 1)]
    spfh = np.zeros((n, FPFH_DIM))
    rows = np.repeat(np.arange(n), k)
    weight = valid.reshape(-1).astype(np.float64)
    for j, b in enumerate(bins):
        np.add.at(spfh, (rows, j * BINS + b.reshape(-1)), weight)
    spfh = _normalise(spfh)
    inverse = 1.0 / np.maximum(distances, 1e-12)
    combined = spfh + (spfh[index] * inverse[..., None]).sum(axis=1) / k
    return _normalise(combined)


def boundary(points: np.ndarray, normal: np.ndarray, distances: np.ndarray, index: np.ndarray) -> np.ndarray:
    offset = points[index].mean(axis=1) - points
    offset -= (offset * normal).sum(axis=1, keepdims=True) * normal
    return np.linalg.norm(offset, axis=1) / np.maximum(distances.mean(axis=1), 1e-12)


def _bin(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip(((values - low) / (high - low) * BINS).astype(np.int64), 0, BINS - 1)


def _normalise(hist: np.ndarray) -> np.ndarray:
    out = hist.copy()
    for j in range(3):
        part = out[:, j * BINS:(j + 1) * BINS]
        total = part.sum(axis=1, keepdims=True)
        part *= np.where(total > 0, 100.0 / np.maximum(total, 1e-300), 0.0)
    return out
