"""`normalcy.image.evaluate`: pixel metrics from histograms in bounded memory, checked against
the exact pooled metrics of normalcy.core.metrics (themselves checked against scikit-learn and
the MVTec AD reference in tests/test_metrics.py), the per-defect breakdown, and clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.registry import build
from normalcy.image import evaluate as ev
from normalcy.image.datasets import load_dataset, load_mask_for
from normalcy.image.demo import make_dataset


def random_case(seed: int, n: int = 6, size: int = 48):
    """Blob masks and smooth maps that are hotter on the blobs, with noise."""
    rng = np.random.default_rng(seed)
    masks = gaussian_filter(rng.normal(size=(n, size, size)), (0, 3, 3)) > 0.25
    masks[: n // 3] = False  # some normal images
    maps = masks * rng.uniform(0.5, 1.5) + gaussian_filter(rng.normal(size=(n, size, size)), (0, 2, 2))
    return masks, maps.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binned_pixel_metrics_equal_the_exact_pooled_ones(seed):
    masks, maps = random_case(seed)
    hist = ev._Histograms(float(maps.min()), float(maps.max() - maps.min()) / ev.BINS)
    for m, a in zip(masks, maps):
        hist.add("any", a, m)
    got = ev._pixel_figures(hist, None)
    assert got["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(masks, maps), abs=1e-5)
    assert got["aupro"] == pytest.approx(metrics.aupro(masks, maps), abs=1e-4)
    assert got["pixel_f1_max"] == pytest.approx(metrics.pixel_f1_max(masks, maps)[0], abs=1e-4)


def test_binned_auroc_counts_a_shared_bin_as_half():
    # Two normal pixels in bins 0 and 1, one defect pixel in bin 1: it beats one, ties one.
    normal, defect = np.array([1, 1, 0]), np.array([0, 1, 0])
    assert ev.binned_auroc(normal, defect) == 0.75
    assert ev.binned_f1_max(normal, defect) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("ev") / "parts", n_train=6, n_good=3, n_per_defect=2)


@pytest.fixture(scope="module")
def model(parts):
    return build("image", "patchcore", {"image_size": 64, "threads": 1}).fit(load_dataset(parts).train)


def test_evaluate_in_chunks_equals_the_exact_metrics_on_all_maps_at_once(parts, model, monkeypatch):
    monkeypatch.setattr(ev, "CHUNK", 4)  # 9 test images: three chunks, the last one short
    sizes = []
    scored = ev.scores_and_maps
    monkeypatch.setattr(ev, "scores_and_maps", lambda det, paths: sizes.append(len(paths)) or scored(det, paths))
    dataset = load_dataset(parts)
    result, scores = ev.evaluate(model, dataset)
    assert sizes == [4, 4, 1]  # never more than CHUNK maps in memory
    explanation = model.explain([s.path for s in dataset.test])
    masks = np.stack([load_mask_for(s, (256, 256), (64, 64)) for s in dataset.test])
    np.testing.assert_array_equal(scores, explanation.scores)
    assert result["pixel_auroc"] == pytest.approx(metrics.pixel_auroc(masks, explanation.localization), abs=1e-5)
    assert result["aupro"] == pytest.approx(metrics.aupro(masks, explanation.localization), abs=1e-4)
    labels = np.array([s.label for s in dataset.test])
    assert result["image_auroc"] == roc_auc_score(labels, scores)


def test_per_defect_figures_compare_each_kind_with_the_normal_images(parts, model):
    dataset = load_dataset(parts)
    result, scores = ev.evaluate(model, dataset)
    defects = np.array([s.defect for s in dataset.test])
    assert sorted(result["per_defect"]) == ["chip", "scratch", "spot"]
    explanation = model.explain([s.path for s in dataset.test])
    masks = np.stack([load_mask_for(s, (256, 256), (64, 64)) for s in dataset.test])
    for defect, figures in result["per_defect"].items():
        keep = (defects == defect) | (defects == "good")
        assert figures["n_images"] == int((defects == defect).sum())
        assert figures["image_auroc"] == roc_auc_score(defects[keep] == defect, scores[keep])
        assert figures["pixel_auroc"] == pytest.approx(
            metrics.pixel_auroc(masks[keep], explanation.localization[keep]), abs=1e-5)


def test_a_test_set_without_normals_names_the_missing_folder(parts, model, tmp_path):
    broken = tmp_path / "no-good"
    shutil.copytree(parts, broken)
    shutil.rmtree(broken / "test" / "good")
    with pytest.raises(DataError, match=f"normal test images; expected them in {broken / 'test' / 'good'}"):
        ev.evaluate(model, load_dataset(broken))
    folder = tmp_path / "folder"
    (folder / "anomalous").mkdir(parents=True)
    for i, src in enumerate(sorted((parts / "train" / "good").iterdir())[:2]):
        shutil.copy(src, folder / f"{i}.png")
    shutil.copy(next((parts / "test" / "spot").iterdir()), folder / "anomalous" / "a.png")
    with pytest.raises(DataError, match="test_good"):
        ev.evaluate(model, load_dataset(folder))


def test_a_test_set_without_anomalies_names_where_they_belong(parts, model, tmp_path):
    only_good = tmp_path / "only-good"
    shutil.copytree(parts, only_good, ignore=shutil.ignore_patterns("scratch", "spot", "chip"))
    with pytest.raises(DataError, match="anomalous test images; expected them in .*test/<defect>/"):
        ev.evaluate(model, load_dataset(only_good))
