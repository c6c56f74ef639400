"""Synthetic parts and defects: points lie on the part's surface with outward normals, areas
are sampled evenly, each defect changes the geometry where its truth says, and the dataset
layout is what docs/cloud.md promises."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.cloud import synth
from normalcy.cloud.datasets import load_dataset, read_truth
from normalcy.cloud.io import read_cloud
from normalcy.core.errors import DataError


@pytest.mark.parametrize("kind", synth.PARTS)
def test_samples_lie_on_the_surface_with_outward_normals(kind):
    rng = np.random.default_rng(0)
    part = synth.make_part(kind, rng)
    points, normals = part.sample(3000, rng)
    assert points.shape == normals.shape == (3000, 3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    # Just outside along the normal is outside the solid, just inside is inside it.
    outside = part.inside(points + 0.05 * normals)
    inside = part.inside(points - 0.05 * normals)
    assert (~outside & inside).mean() > 0.97


def test_a_box_is_sampled_evenly_by_area():
    rng = np.random.default_rng(1)
    box = synth.Part([synth._box((0, 0, 0), (40, 20, 10))])
    points, normals = box.sample(40000, rng)
    axis = np.argmax(np.abs(normals), axis=1)
    shares = np.bincount(axis, minlength=3) / len(points)
    areas = np.array([20 * 10, 40 * 10, 40 * 20], dtype=float)  # faces across x, y, z
    np.testing.assert_allclose(shares, areas / areas.sum(), atol=0.01)


@pytest.mark.parametrize("kind", synth.DEFECTS)
def test_defects_change_the_geometry_where_the_truth_says(kind):
    rng = np.random.default_rng(2)
    part = synth.make_part("housing", rng)
    points, normals = part.sample(8000, rng)
    moved, _, labels = synth.add_defect(part, points, normals, kind, rng)
    assert len(moved) == len(labels) and 0 < labels.sum() < 0.2 * len(labels)
    marked = moved[labels == 1]
    if kind == "bulge":  # material added: marked points outside the original solid
        assert (~part.inside(marked)).mean() > 0.9
    elif kind in ("concavity", "crack", "broken"):  # material taken away: marked points inside it
        assert part.inside(marked).mean() > 0.8
    else:  # a hole: a ball of points removed, the rim (within 1.5 mm of the ball) marked
        from scipy.spatial import cKDTree

        removed = points[cKDTree(moved).query(points)[0] > 0]
        assert len(removed) == len(points) - len(moved) > 0
        to_removed = cKDTree(removed).query(moved)[0]
        spacing = np.median(cKDTree(points).query(points, 2)[0][:, 1])
        assert to_removed[labels == 1].max() < 1.5 + 3 * spacing
        assert to_removed[labels == 0].min() >= 1.5 - 1e-9


def test_write_dataset_layout_and_truth(tmp_path):
    root = synth.write_dataset(tmp_path / "set", parts=("bracket",), defects=("bulge", "hole"), n_train=2,
                               n_good=1, n_per_defect=1, n_points=500)
    dataset = load_dataset(root / "bracket")
    assert len(dataset.train) == 2
    assert sorted(s.defect for s in dataset.test) == ["bulge", "good", "hole"]
    for sample in dataset.test:
        n = len(read_cloud(sample.path))
        truth = read_truth(sample, n)
        assert truth.shape == (n,) and truth.any() == (sample.defect != "good")
    with pytest.raises(DataError, match="not empty"):
        synth.write_dataset(root, parts=("bracket",), n_train=1, n_good=1, n_per_defect=1, n_points=200)
    with pytest.raises(DataError, match="unknown part"):
        synth.write_dataset(tmp_path / "other", parts=("gear",))


def test_same_seed_same_clouds():
    a = synth.make_cloud("shaft", 500, np.random.default_rng(7), "crack")
    b = synth.make_cloud("shaft", 500, np.random.default_rng(7), "crack")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
