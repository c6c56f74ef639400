"""Defect-type discovery: its pieces on hand-made maps and features, and the whole job on tiny
synthetic images with two planted defect kinds."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from clirunner import run_in_process as run
from contract_image import texture
from normalcy.core.errors import DataError
from normalcy.core.registry import build
from normalcy.image.discover import REGION_COLUMNS, cluster, find_regions, image_clusters, otsu, shape_features

SIZE = 128  # at 64 pixels PatchCore's map is 8 x 8 patches, too coarse for a region's outline


def test_otsu_splits_two_modes():
    values = np.r_[np.full(60, 1.0), np.full(40, 5.0)]
    assert 1.0 <= otsu(values) < 5.0
    # Between-class variance checked by brute force over every cut of a noisy bimodal set.
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0, 1, 500), rng.normal(6, 1, 100)]
    cut = otsu(values)
    def between(t):
        lo, hi = values[values <= t], values[values > t]
        return len(lo) * len(hi) * (lo.mean() - hi.mean()) ** 2
    best = max(np.linspace(values.min() + 0.1, values.max() - 0.1, 400), key=between)
    assert abs(cut - best) < 0.2


def test_find_regions_drops_specks_and_orders_by_score():
    m = np.zeros((64, 64), np.float32)
    m[5:15, 5:15] = 2.0
    m[40:50, 30:45] = 3.0
    m[60, 60] = 4.0  # one pixel: noise
    regions = find_regions(m, min_area=0.005)
    assert [peak for _, peak in regions] == [3.0, 2.0]
    assert regions[0][0].sum() == 150 and regions[1][0].sum() == 100


def test_shape_features_tell_a_line_from_a_square():
    line, square = np.zeros((40, 40), bool), np.zeros((40, 40), bool)
    line[20, 5:35] = True
    square[10:20, 10:20] = True
    (a_line, e_line, f_line), (a_sq, e_sq, f_sq) = shape_features(line), shape_features(square)
    assert a_line == pytest.approx(np.log(30)) and a_sq == pytest.approx(np.log(100))
    assert e_line > 2 and abs(e_sq) < 1e-9 and f_line == f_sq == 1.0


def test_cluster_finds_separated_groups():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0, 0.1, (10, 4)), rng.normal(3, 0.1, (8, 4)), rng.normal(-3, 0.1, (6, 4))]
    truth = [0] * 10 + [1] * 8 + [2] * 6
    assert adjusted_rand_score(truth, cluster(x)) == 1.0
    assert list(cluster(x[:2])) == [0, 0]  # too few to split


def _planted(tmp_path):
    """Normal textures, and defects of two kinds: white squares and long dark bars."""
    rng = np.random.default_rng(5)
    train = [texture(rng, SIZE) for _ in range(10)]
    folder = tmp_path / "defects"
    folder.mkdir()
    kinds = {}
    for i in range(12):
        img = texture(rng, SIZE)
        r, c = (int(v) for v in rng.integers(30, 70, 2))
        if i % 2:
            img[r : r + 24, c : c + 24] = 255
        else:
            img[r : r + 4, 16:112] = 0
        path = folder / f"{i:02d}.png"
        Image.fromarray(img).save(path)
        kinds[str(path)] = "square" if i % 2 else "bar"
    return train, kinds


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("discover")
    train, kinds = _planted(tmp)
    model = build("image", "patchcore", {"image_size": SIZE, "threads": 1, "coreset_ratio": 0.25}).fit(train)
    model.set_threshold(0.0)  # every image flagged
    model.save(tmp / "model")
    return tmp, kinds


def test_discover_separates_two_planted_kinds(planted):
    tmp, kinds = planted
    out = tmp / "out"
    result = run("image", "discover", str(tmp / "model"), str(tmp / "defects"), "--out", str(out), "--threads", "1")
    assert result.returncode == 0, result.stderr
    with open(out / "regions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == REGION_COLUMNS
    assert {r["path"] for r in rows} == set(kinds)
    for r in rows:
        assert int(r["area"]) > 0 and float(r["score"]) > 0 and int(r["region"]) >= 1
    best = {}
    for r in rows:  # each image's largest-scoring region
        if r["path"] not in best or float(r["score"]) > float(best[r["path"]]["score"]):
            best[r["path"]] = r
    paths = sorted(kinds)
    assert adjusted_rand_score([kinds[p] for p in paths], [best[p]["cluster"] for p in paths]) == 1.0
    clusters = {r["cluster"] for r in rows}
    assert {p.name for p in out.glob("cluster_*.html")} == {f"cluster_{k}.html" for k in clusters}
    assert len(list((out / "crops").glob("*.png"))) == len(rows)
    assert "regions in" in result.stdout


def test_discover_only_takes_flagged_images(planted):
    tmp, _ = planted
    from normalcy.core.modelfile import load
    from normalcy.image.discover import regions_of

    model = load(tmp / "model")
    model.set_threshold(1e9)
    paths = sorted((tmp / "defects").glob("*.png"))
    assert regions_of(model, paths) == []
    regions = regions_of(model, paths, flagged_only=False)
    assert set(image_clusters(regions)) == {str(p) for p in paths}


def test_discover_needs_maps():
    rng = np.random.default_rng(0)
    model = build("image", "gaussian", {"image_size": SIZE, "threads": 1}).fit([texture(rng) for _ in range(4)])
    from normalcy.image.discover import regions_of

    with pytest.raises(DataError, match="needs a detector with maps"):
        regions_of(model, [texture(rng)], flagged_only=False)
