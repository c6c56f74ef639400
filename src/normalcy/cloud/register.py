"""Rigid registration of a part to a template, for parts that come in any pose.

A cloud is first normalised (centroid at the origin, RMS radius 1: part size no longer
matters). Its principal axes then give candidate rotations onto the template's: the four
proper sign choices of the axes and, for a round part (two variances within 15%: the
principal axes across its axis are arbitrary), each also turned in steps of 30 degrees about
its axis. Each candidate gets a few point-to-point ICP steps (Besl & McKay 1992) on a small
subset; the one with the smallest residual is refined on more points (rotation and shift). Small deliberate
subsets keep it to milliseconds per cloud.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

COARSE_POINTS, COARSE_STEPS = 128, 5
FINE_POINTS, FINE_STEPS = 1024, 20
TURNS = 12
ROUND = 0.15  # relative gap between two variances under which an axis counts as round


def normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Points centred and scaled to RMS radius 1, with the centre and scale used."""
    centre = points.mean(axis=0)
    scale = float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean())) or 1.0
    return (points - centre) / scale, centre, scale


def principal_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and axes (columns, a proper rotation) of the covariance."""
    values, vectors = np.linalg.eigh(np.cov(points.T))
    values, vectors = values[::-1], vectors[:, ::-1]
    if np.linalg.det(vectors) < 0:
        vectors[:, 2] *= -1
    return values, vectors


def candidates(values: np.ndarray) -> list[np.ndarray]:
    """Rotations in the principal frame to try: the four sign flips, each also turned about
    the axis whose partners' variances are within ROUND of each other, if one is."""
    v = np.maximum(values, 1e-12)  # a flat or straight cloud has zero variances
    gaps = [abs(v[1] - v[2]) / v[1], abs(v[0] - v[2]) / v[0], abs(v[0] - v[1]) / v[0]]
    axis = int(np.argmin(gaps))
    flips = [np.diag(s) for s in ((1.0, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))]
    if gaps[axis] > ROUND:
        return flips
    return [_rotation_about(axis, 2 * np.pi * step / TURNS) @ f for step in range(TURNS) for f in flips]


def register(points: np.ndarray, template: np.ndarray, tree: cKDTree, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray, float]:
    """The rotation R and shift t taking normalised `points` (n x 3) onto the normalised
    `template` (`tree` its KD-tree) as points @ R.T + t, and the RMS residual of the fit."""
    rng = np.random.default_rng(seed)
    coarse = points[rng.choice(len(points), min(COARSE_POINTS, len(points)), replace=False)]
    fine = points[rng.choice(len(points), min(FINE_POINTS, len(points)), replace=False)]
    values, axes = principal_axes(points)
    _, template_axes = principal_axes(template)
    best, best_error = None, np.inf
    for candidate in candidates(values):
        rotation, shift, error = icp(coarse, tree, template, template_axes @ candidate @ axes.T, np.zeros(3),
                                     COARSE_STEPS)
        if error < best_error:
            best, best_error = (rotation, shift), error
    return icp(fine, tree, template, *best, FINE_STEPS)


def icp(points: np.ndarray, tree: cKDTree, template: np.ndarray, rotation: np.ndarray, shift: np.ndarray,
        steps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Point-to-point ICP from (rotation, shift); returns them refined and the RMS residual."""
    for _ in range(steps):
        _, index = tree.query(points @ rotation.T + shift)
        target = template[index]
        p_mean, t_mean = points.mean(axis=0), target.mean(axis=0)
        # Kabsch: the rotation best taking the points to their current matches.
        u, _, vt = np.linalg.svd((target - t_mean).T @ (points - p_mean))
        fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = u @ fix @ vt
        shift = t_mean - p_mean @ rotation.T
    distance, _ = tree.query(points @ rotation.T + shift)
    return rotation, shift, float(np.sqrt((distance ** 2).mean()))


def _rotation_about(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r
