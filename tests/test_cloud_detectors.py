"""Cloud geometry and detectors: FPFH against a hand-worked plane and rotation invariance,
normal orientation against the synthetic parts' true normals, registration undoing a known
pose, the detectors finding and localising defects on small synthetic clouds, and AUPRO over
points against the image AUPRO (normalcy.core.metrics) on the same regions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from normalcy.cloud import features, synth
from normalcy.cloud.evaluate import defect_regions, point_aupro
from normalcy.cloud.register import normalise, register
from normalcy.core import metrics
from normalcy.core.registry import build

N = 1500


def test_fpfh_of_a_plane_is_the_middle_bin_of_each_angle():
    # On a plane every normal is parallel and every neighbour lies in the tangent plane, so
    # alpha = phi = theta = 0: the middle of the 11 bins of each third, holding all its 100.
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(0, 10, 400), rng.uniform(0, 10, 400), np.zeros(400)])
    distances, index = features.neighbours(points, 12)
    normal = features.normals(points, index)
    expected = np.zeros(33)
    expected[[5, 16, 27]] = 100.0
    np.testing.assert_allclose(features.fpfh(points, normal, distances, index), np.tile(expected, (400, 1)),
                               atol=1e-9)


def test_fpfh_and_boundary_do_not_change_with_pose():
    rng = np.random.default_rng(1)
    points, _, _ = synth.make_cloud("bracket", N, rng)
    moved = points @ Rotation.random(random_state=2).as_matrix().T + [5.0, -3.0, 40.0]
    out = []
    for p in (points, moved):
        distances, index = features.neighbours(p, 16)
        normal = features.normals(p, index)
        out.append((features.fpfh(p, normal, distances, index), features.boundary(p, normal, distances, index)))
    # The same descriptors, except where a normal's sign flips with the pose: at a sharp edge
    # the orientation's spanning tree may cross a little elsewhere (rounding breaks its ties).
    same = np.isclose(out[0][0], out[1][0], atol=1e-6).all(axis=1)
    assert same.mean() > 0.95
    np.testing.assert_allclose(out[0][1], out[1][1], atol=1e-9)


def test_boundary_cue_marks_the_rim_of_a_hole():
    rng = np.random.default_rng(3)
    plane = np.column_stack([rng.uniform(-10, 10, 3000), rng.uniform(-10, 10, 3000), np.zeros(3000)])
    holed = plane[np.linalg.norm(plane[:, :2], axis=1) > 4]
    distances, index = features.neighbours(holed, 16)
    cue = features.boundary(holed, features.normals(holed, index), distances, index)
    radius = np.linalg.norm(holed[:, :2], axis=1)
    rim, inner = cue[radius < 4.5], cue[(radius > 6) & (np.abs(holed[:, :2]).max(axis=1) < 8)]
    assert metrics.auroc(np.r_[np.ones(len(rim)), np.zeros(len(inner))], np.r_[rim, inner]) > 0.85


@pytest.mark.parametrize("kind", ["housing", "flange"])
def test_normals_are_oriented_as_the_true_outward_normals(kind):
    rng = np.random.default_rng(4)
    part = synth.make_part(kind, rng)
    points, true_normals = part.sample(N, rng)
    _, index = features.neighbours(points, 16)
    estimated = features.normals(points, index)
    agree = (estimated * true_normals).sum(axis=1)
    clear = np.abs(agree) > 0.5  # away from edges, where a PCA normal is the faces' blend
    assert (agree[clear] > 0).mean() > 0.95


def test_registration_undoes_a_pose():
    rng = np.random.default_rng(5)
    part = synth.make_part("bracket", rng)
    points, _ = part.sample(N, rng)
    template, _, _ = normalise(points)
    rotation = Rotation.random(random_state=6).as_matrix()
    posed, _, _ = normalise((points @ rotation.T)[rng.permutation(N)])
    found, shift, residual = register(posed, template, cKDTree(template))
    np.testing.assert_allclose(found, rotation.T, atol=0.05)
    assert residual < 0.01 and np.linalg.norm(shift) < 0.01


@pytest.fixture(scope="module")
def housings():
    rng = np.random.default_rng(8)
    n = 3000
    train = [synth.make_cloud("housing", n, rng)[0] for _ in range(6)]
    good = [synth.make_cloud("housing", n, rng)[0] for _ in range(4)]
    bad = [synth.make_cloud("housing", n, rng, kind) for kind in ("bulge", "broken", "bulge", "broken")]
    return train, good, bad


# Small clouds (3,000 points, 768 sampled) and, for the network, many passes over few rows.
@pytest.mark.parametrize("name, params", [("fpfh", {}), ("displacement", {"epochs": 40})])
def test_detectors_find_and_localise_defects(housings, name, params):
    train, good, bad = housings
    detector = build("cloud", name, {"n_points": 768, "threads": 1, **params}).fit(train)
    explanation = detector.explain(good + [b[0] for b in bad])
    labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    assert metrics.auroc(labels, explanation.scores) >= 0.75
    per_point = explanation.localization
    assert [len(s) for s in per_point] == [len(c) for c in good] + [len(b[0]) for b in bad]
    truth = np.concatenate([b[2] for b in bad])
    assert metrics.auroc(truth, np.concatenate(list(per_point[len(good):]))) >= 0.75
    np.testing.assert_array_equal(explanation.scores, detector.decision_function(good + [b[0] for b in bad]))


def test_point_aupro_equals_the_image_aupro_on_the_same_regions():
    rng = np.random.default_rng(9)
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[0, 2:6, 3:7] = True
    masks[1, 10:12, 1:15] = True
    masks[1, 1:3, 1:3] = True
    maps = rng.uniform(size=masks.shape) + masks * rng.uniform(0, 1.5, masks.shape)
    regions = [ndimage.label(m, structure=np.ones((3, 3)))[0].reshape(-1) for m in masks]
    got = point_aupro(regions, [m.reshape(-1) for m in maps])
    assert got == pytest.approx(metrics.aupro(masks, maps), abs=1e-12)


def test_defect_regions_are_connected_pieces():
    grid = np.arange(0, 30, 0.5)
    points = np.stack(np.meshgrid(grid, grid, [0.0]), axis=-1).reshape(-1, 3)
    truth = (np.linalg.norm(points - [5, 5, 0], axis=1) < 3) | (np.linalg.norm(points - [25, 25, 0], axis=1) < 3)
    labels = defect_regions(points, truth)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert labels[~truth].max() == 0
