"""Tests for normalcy.core.metrics against hand-worked values, scikit-learn and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn import metrics as skm

from normalcy.core.errors import DataError
from normalcy.core.metrics import (
    aupro,
    auprc,
    auroc,
    binary_scores,
    f1_max,
    pixel_auroc,
    pixel_f1_max,
)

# Small hand-worked case shared by several tests.
HAND_LABELS = np.array([0, 0, 1, 1])
HAND_SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _random_task(seed: int, n: int = 200):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]  # both classes always present
    # Informative but imperfect scores, rounded so that ties occur.
    scores = np.round(labels * 0.8 + rng.normal(size=n), 1)
    return labels, scores


def _random_pixels(seed: int, n: int = 3, h: int = 16, w: int = 16):
    """Blob-shaped defect masks (image 0 kept defect-free) and noisy, partly tied maps."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(n, h, w)), sigma=(0, 1.5, 1.5))
    masks = noise > np.quantile(noise, 0.8)
    masks[0] = False
    maps = np.round(masks * 0.6 + rng.normal(scale=0.5, size=(n, h, w)), 2)
    return masks, maps


# --- image-level metrics ---------------------------------------------------------------


def test_auroc_hand_case():
    # Positive/negative pairs: 0.35 beats 0.1 but not 0.4; 0.8 beats both -> 3 of 4 pairs.
    assert auroc(HAND_LABELS, HAND_SCORES) == pytest.approx(0.75)


def test_auprc_hand_case():
    # Ranked descending: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1.
    # AP = sum (R_k - R_{k-1}) * P_k = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert auprc(HAND_LABELS, HAND_SCORES) == pytest.approx(5 / 6)


def test_f1_max_hand_case():
    # t=0.8: TP1 FP0 FN1 -> F1 2/3; t=0.4: TP1 FP1 FN1 -> 1/2;
    # t=0.35: TP2 FP1 FN0 -> P 2/3, R 1, F1 0.8; t=0.1: TP2 FP2 -> 2/3. Best: 0.8 at 0.35.
    best, threshold = f1_max(HAND_LABELS, HAND_SCORES)
    assert best == pytest.approx(0.8)
    assert threshold == pytest.approx(0.35)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_auprc_match_sklearn(seed):
    labels, scores = _random_task(seed)
    assert auroc(labels, scores) == pytest.approx(skm.roc_auc_score(labels, scores))
    assert auprc(labels, scores) == pytest.approx(skm.average_precision_score(labels, scores))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_max_matches_brute_force_over_thresholds(seed):
    labels, scores = _random_task(seed)
    f1s = {t: skm.f1_score(labels, scores >= t) for t in np.unique(scores)}
    expected = max(f1s.values())
    best, threshold = f1_max(labels, scores)
    assert best == pytest.approx(expected)
    assert f1s[threshold] == pytest.approx(expected)


def test_f1_max_threshold_agrees_with_binary_scores():
    labels, scores = _random_task(3)
    best, threshold = f1_max(labels, scores)
    assert binary_scores(labels, scores, threshold)["f1"] == pytest.approx(best)


def test_binary_scores_hand_case():
    # score >= 0.35 flags 0.4 (normal), 0.35 and 0.8 (anomalies): TP2 FP1 TN1 FN0.
    result = binary_scores(HAND_LABELS, HAND_SCORES, 0.35)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (2, 1, 1, 0)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(1.0)
    assert result["f1"] == pytest.approx(0.8)
    assert result["fpr"] == pytest.approx(0.5)


def test_binary_scores_matches_sklearn_confusion_matrix():
    labels, scores = _random_task(4)
    predicted = scores >= 0.5
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted).ravel()
    result = binary_scores(labels, scores, 0.5)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (tp, fp, tn, fn)
    assert result["precision"] == pytest.approx(skm.precision_score(labels, predicted))
    assert result["recall"] == pytest.approx(skm.recall_score(labels, predicted))
    assert result["f1"] == pytest.approx(skm.f1_score(labels, predicted))
    assert result["fpr"] == pytest.approx(fp / (fp + tn))


def test_binary_scores_nothing_flagged_gives_zero_rates():
    result = binary_scores(HAND_LABELS, HAND_SCORES, 1.0)
    assert (result["tp"], result["fp"], result["tn"], result["fn"]) == (0, 0, 2, 2)
    assert result["precision"] == 0.0
    assert result["f1"] == 0.0
    assert result["fpr"] == 0.0


# --- pixel-level metrics ---------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_metrics_match_sklearn_on_flattened_pixels(seed):
    masks, maps = _random_pixels(seed)
    flat_masks, flat_maps = masks.ravel(), maps.ravel()
    assert pixel_auroc(masks, maps) == pytest.approx(skm.roc_auc_score(flat_masks, flat_maps))
    best, threshold = pixel_f1_max(masks, maps)
    expected = max(skm.f1_score(flat_masks, flat_maps >= t) for t in np.unique(flat_maps))
    assert best == pytest.approx(expected)
    assert skm.f1_score(flat_masks, flat_maps >= threshold) == pytest.approx(expected)


def test_pixel_metrics_accept_uint8_masks():
    masks, maps = _random_pixels(5)
    assert pixel_auroc(masks.astype(np.uint8), maps) == pytest.approx(pixel_auroc(masks, maps))


# --- AUPRO -----------------------------------------------------------------------------


def test_aupro_perfect_map_is_one():
    masks, _ = _random_pixels(0)
    assert aupro(masks, masks.astype(float)) == pytest.approx(1.0)


def test_aupro_constant_map():
    # All pixels share one score, so there is a single threshold at which FPR jumps 0 -> 1
    # and PRO jumps 0 -> 1: the curve is the straight line (0,0)-(1,1). Its area on
    # [0, 0.3] is 0.3^2 / 2 = 0.045; divided by 0.3 -> 0.15.
    masks, maps = _random_pixels(1)
    assert aupro(masks, np.full(maps.shape, 0.5)) == pytest.approx(0.15)


def _two_region_case():
    # One 4x4 image: region A = 2 pixels (row 0), region B = 4 pixels (row 3), separated by
    # two all-normal rows so they stay distinct under 8-connectivity. 10 normal pixels.
    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 0, :2] = True  # A
    masks[0, 3, :] = True  # B
    maps = np.full((1, 4, 4), 0.3)  # 9 normal pixels at 0.3 ...
    maps[0, 1, 1] = 0.8  # ... and one normal pixel at 0.8
    maps[0, 0, :2] = 0.9  # A: above every normal pixel
    maps[0, 3, :2] = 0.6  # B: half between the two normal levels ...
    maps[0, 3, 2:] = 0.1  # ... half below every normal pixel
    return masks, maps


def test_aupro_two_regions_hand_worked():
    # Thresholds in descending order, with (FPR, PRO = mean of the two region overlaps):
    #   start          (0,   0)
    #   t=0.9: A in    (0,   (1 + 0)/2   = 0.5)
    #   t=0.8: 1 FP    (0.1, 0.5)
    #   t=0.6: half B  (0.1, (1 + 0.5)/2 = 0.75)
    #   t=0.3: 9 FP    (1.0, 0.75)
    #   t=0.1: all B   (1.0, 1.0)
    # Area on [0, 0.3]: 0.1 * 0.5 + (0.3 - 0.1) * 0.75 = 0.05 + 0.15 = 0.2
    # (the point at FPR 0.3 interpolates the flat segment (0.1,.75)-(1,.75) -> 0.75).
    # Normalised: 0.2 / 0.3 = 2/3.
    masks, maps = _two_region_case()
    assert aupro(masks, maps) == pytest.approx(2 / 3)
    # Full range: 0.05 + 0.9 * 0.75 = 0.725 (the vertical jump at FPR 1 adds no area).
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(0.725)
    # Limit inside the first segment: area 0.05 * 0.5 -> normalised 0.5.
    assert aupro(masks, maps, fpr_limit=0.05) == pytest.approx(0.5)


def test_aupro_regions_are_8_connected():
    # (0,0) touches (1,1) only diagonally; (1,1)-(1,2) are side neighbours. With
    # 8-connectivity (MVTec AD reference) this is ONE region of 3 pixels; only (0,0) scores
    # above the normals, so PRO = 1/3 on FPR [0, 1) -> normalised AUPRO 1/3.
    # (4-connectivity would give regions {(0,0)} and {(1,1),(1,2)} and PRO = 0.5.)
    masks = np.zeros((1, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = True
    maps = np.where(masks, 0.0, 0.5)
    maps[0, 0, 0] = 1.0
    assert aupro(masks, maps) == pytest.approx(1 / 3)


def test_aupro_is_invariant_to_monotone_rescaling():
    masks, maps = _random_pixels(2)
    assert aupro(masks, np.exp(3 * maps) - 7) == pytest.approx(aupro(masks, maps))


def _brute_force_aupro(masks, maps, fpr_limit):
    """PRO curve by explicit thresholding at every distinct score, then a dense trapezoid."""
    regions = []
    for i in range(masks.shape[0]):
        labeled, k = ndimage.label(masks[i], structure=np.ones((3, 3)))
        for r in range(1, k + 1):
            region = np.zeros(masks.shape, dtype=bool)
            region[i] = labeled == r
            regions.append(region)
    normal = ~masks
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        flagged = maps >= t
        fprs.append((flagged & normal).sum() / normal.sum())
        pros.append(np.mean([(flagged & r).sum() / r.sum() for r in regions]))
    fprs, pros = np.array(fprs), np.array(pros)

    # Evaluate the polyline on a dense uniform grid: for each x, take the segment from the
    # last curve point with FPR <= x to the next one (vertical jumps have no width).
    xs = np.linspace(0.0, fpr_limit, 200_001)
    left = np.searchsorted(fprs, xs, side="right") - 1
    right = np.minimum(left + 1, len(fprs) - 1)
    width = fprs[right] - fprs[left]
    frac = np.divide(xs - fprs[left], width, out=np.zeros_like(xs), where=width > 0)
    ys = pros[left] + frac * (pros[right] - pros[left])
    step = xs[1] - xs[0]
    return step * (ys.sum() - 0.5 * (ys[0] + ys[-1])) / fpr_limit


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_brute_force(seed, fpr_limit):
    masks, maps = _random_pixels(seed)
    expected = _brute_force_aupro(masks, maps, fpr_limit)
    assert aupro(masks, maps, fpr_limit=fpr_limit) == pytest.approx(expected, abs=1e-3)


def test_brute_force_reference_reproduces_hand_case():
    # Guards the reference itself: it must agree with the hand-derived 2/3.
    masks, maps = _two_region_case()
    assert _brute_force_aupro(masks, maps, 0.3) == pytest.approx(2 / 3, abs=1e-4)


# --- input errors ----------------------------------------------------------------------


@pytest.mark.parametrize("metric", [auroc, auprc, f1_max])
def test_single_class_labels_rejected(metric):
    with pytest.raises(DataError, match="only normals"):
        metric([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="only anomalies"):
        metric([1, 1], [0.1, 0.2])


@pytest.mark.parametrize("metric", [auroc, auprc, f1_max])
def test_length_mismatch_rejected(metric):
    with pytest.raises(DataError, match="labels has 3 entries but scores has 4"):
        metric([0, 1, 1], [0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_scores_rejected(bad):
    with pytest.raises(DataError, match="scores contains NaN or infinite"):
        auroc([0, 1, 1], [0.1, bad, 0.3])


def test_malformed_labels_and_scores_rejected():
    with pytest.raises(DataError, match="labels must contain only 0/1"):
        auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="labels must be a non-empty 1-D"):
        auroc([[0, 1], [1, 0]], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(DataError, match="labels must be a non-empty 1-D"):
        auroc([], [])
    with pytest.raises(DataError, match="scores must hold real numbers"):
        auroc([0, 1], ["a", "b"])


def test_binary_scores_rejects_bad_threshold_and_lengths():
    with pytest.raises(DataError, match="threshold"):
        binary_scores(HAND_LABELS, HAND_SCORES, float("nan"))
    with pytest.raises(DataError, match="labels has 4 entries but scores has 3"):
        binary_scores(HAND_LABELS, HAND_SCORES[:3], 0.5)


@pytest.mark.parametrize("metric", [pixel_auroc, pixel_f1_max, aupro])
def test_pixel_shape_mismatch_names_both_shapes(metric):
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 0, 0] = True
    with pytest.raises(DataError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        metric(masks, np.zeros((2, 4, 5)))


@pytest.mark.parametrize("metric", [pixel_auroc, pixel_f1_max, aupro])
def test_pixel_inputs_validated(metric):
    masks, maps = _random_pixels(0)
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        metric(masks[0], maps[0])
    with pytest.raises(DataError, match="masks must contain only 0/1"):
        metric(masks.astype(np.uint8) * 255, maps)
    bad_maps = maps.copy()
    bad_maps[1, 2, 3] = np.nan
    with pytest.raises(DataError, match="maps contains NaN"):
        metric(masks, bad_maps)


def test_aupro_needs_defects_and_normals():
    with pytest.raises(DataError, match="no anomalous pixel"):
        aupro(np.zeros((2, 4, 4), dtype=bool), np.zeros((2, 4, 4)))
    with pytest.raises(DataError, match="no normal pixel"):
        aupro(np.ones((2, 4, 4), dtype=bool), np.zeros((2, 4, 4)))


@pytest.mark.parametrize("limit", [0.0, -0.1, 1.5, float("nan"), "0.3"])
def test_aupro_rejects_bad_fpr_limit(limit):
    masks, maps = _two_region_case()
    with pytest.raises(DataError, match="fpr_limit"):
        aupro(masks, maps, fpr_limit=limit)
