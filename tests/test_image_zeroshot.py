"""Zero-shot batch scoring (normalcy.image.zeroshot): mutual scoring against a brute-force
computation, ranking and localising a planted defect, the label rule, small batches, and
`normalcy image score-batch`."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from clirunner import run_in_process as run
from conftest import IMAGE_SIZE, SQUARE, paste_square, texture
from normalcy.core.errors import DataError
from normalcy.image import zeroshot
from normalcy.image.workflow import RESULT_COLUMNS


def _brute_force(features: np.ndarray, share: float) -> np.ndarray:
    """Patch scores by loops: mean of the k smallest nearest-patch distances to the other images."""
    n, c, h, w = features.shape
    rows = features.transpose(0, 2, 3, 1).reshape(n, h * w, c).astype(np.float64)
    k = max(1, round(share * (n - 1)))
    out = np.zeros((n, h * w))
    for i in range(n):
        for p in range(h * w):
            per_image = sorted(np.sqrt(((rows[j] - rows[i, p]) ** 2).sum(1)).min() for j in range(n) if j != i)
            out[i, p] = np.mean(per_image[:k])
    return out.reshape(n, h, w)


@pytest.mark.parametrize("n,share", [(2, 0.3), (5, 0.5), (7, 1.0)])
def test_mutual_scores_match_a_brute_force_computation(n, share):
    features = torch.from_numpy(np.random.default_rng(n).normal(size=(n, 4, 3, 5)).astype(np.float32))
    got = zeroshot.mutual_scores(features, share).numpy()
    np.testing.assert_allclose(got, _brute_force(features.numpy(), share), rtol=1e-4, atol=1e-4)


def test_a_patch_seen_in_no_other_image_scores_highest():
    rng = np.random.default_rng(0)
    features = np.repeat(rng.normal(size=(1, 3, 4, 4)), 12, axis=0) + rng.normal(0, 0.01, (12, 3, 4, 4))
    features[5, :, 2, 1] += 10.0
    scores = zeroshot.mutual_scores(torch.from_numpy(features.astype(np.float32))).numpy()
    assert np.unravel_index(np.argmax(scores), scores.shape) == (5, 2, 1)


def test_the_outlier_rule_is_median_plus_three_scaled_mads():
    scores = np.array([1.0, 2.0, 2.0, 3.0, 10.0])  # median 2, MAD 0 for 2,2 -> |dev| = 1,0,0,1,8: MAD 1
    assert zeroshot.outlier_threshold(scores) == pytest.approx(2.0 + 3.0 * 1.4826)


@pytest.fixture(scope="module")
def batch():
    """12 normal textures and one with a white square (index 4), and its corner."""
    rng = np.random.default_rng(7)
    images = [texture(rng) for _ in range(12)]
    images[4], corner = paste_square(rng, images[4])
    return images, corner


def test_a_planted_defect_ranks_first_and_its_map_peaks_on_it(batch):
    images, (row, col) = batch
    scorer = zeroshot.BatchScorer(image_size=IMAGE_SIZE, threads=1)
    scores, maps = scorer.score(images)
    assert scores.shape == (12,) and maps.shape == (12, IMAGE_SIZE, IMAGE_SIZE)
    assert int(np.argmax(scores)) == 4
    r, c = np.unravel_index(np.argmax(maps[4]), maps[4].shape)
    assert row - 4 <= r < row + SQUARE + 4 and col - 4 <= c < col + SQUARE + 4


def test_a_small_batch_warns_and_a_single_image_is_a_data_error(batch):
    images, _ = batch
    scorer = zeroshot.BatchScorer(image_size=IMAGE_SIZE, threads=1)
    with pytest.warns(zeroshot.SmallBatchWarning, match="only 3 images"):
        scorer.score(images[:3])
    with pytest.raises(DataError, match="at least 2"):
        scorer.score(images[:1])
    for bad in ({"share": 0.0}, {"share": 1.5}, {"image_size": 50}, {"backbone": "resnet"}, {"resize": "crop"}):
        with pytest.raises(DataError):
            zeroshot.BatchScorer(**{"image_size": IMAGE_SIZE, **bad}).score(images)


@pytest.fixture
def folder(batch, tmp_path):
    images, _ = batch
    (tmp_path / "batch").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "batch" / f"{i:02d}.png")
    return tmp_path / "batch"


def test_score_batch_writes_predict_columns_overlays_and_a_report(folder, tmp_path):
    out = tmp_path / "out"
    result = run("image", "score-batch", str(folder), "--out", str(out), "--image-size", str(IMAGE_SIZE),
                 "--threads", "1")
    assert result.returncode == 0, result.stderr
    with open(out / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == RESULT_COLUMNS
    assert len(rows) == 12
    scores = np.array([float(r["score"]) for r in rows])
    assert rows[int(np.argmax(scores))]["path"].endswith("04.png")
    threshold = zeroshot.outlier_threshold(scores)
    assert all(float(r["threshold"]) == pytest.approx(threshold) for r in rows)
    assert [int(r["label"]) for r in rows] == [int(s > threshold) for s in scores]
    assert int(rows[4]["label"]) == 1
    assert all((out / r["overlay"]).is_file() for r in rows)
    page = (out / "report.html").read_text()
    assert "minority of the batch" in page and "truth:" not in page
    assert "12 images scored against each other" in result.stdout


def test_score_batch_warns_on_a_small_batch(folder, tmp_path):
    for f in sorted(folder.iterdir())[5:]:
        f.unlink()
    result = run("image", "score-batch", str(folder), "--out", str(tmp_path / "out"), "--image-size",
                 str(IMAGE_SIZE), "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "warning: only 5 images in the batch" in result.stderr


@pytest.mark.parametrize("case", ["empty", "missing", "unreadable"])
def test_score_batch_bad_inputs_are_clear_errors_and_write_nothing(tmp_path, folder, case):
    target = {"empty": tmp_path / "empty", "missing": tmp_path / "nope", "unreadable": folder}[case]
    if case == "empty":
        target.mkdir()
    if case == "unreadable":
        (folder / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    result = run("image", "score-batch", str(target), "--out", str(out), "--image-size", str(IMAGE_SIZE),
                 "--threads", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert {"empty": "no images found", "missing": "does not exist", "unreadable": "broken.png"}[case] in result.stderr
    assert not (out / "results.csv").exists()


def test_the_zero_shot_benchmark_scores_the_whole_test_set_as_one_batch(tmp_path):
    from sklearn.metrics import roc_auc_score

    from normalcy.image.datasets import load_dataset
    from normalcy.image.demo import make_dataset
    from normalcy.image.fewshot_benchmark import run_zero_shot

    data = make_dataset(tmp_path / "parts", n_train=1, n_good=4, n_per_defect=2)
    _, _, (record,) = run_zero_shot(data, {"image_size": IMAGE_SIZE, "threads": 1}, tmp_path / "z.json")
    test = load_dataset(data).test
    scores, _ = zeroshot.BatchScorer(image_size=IMAGE_SIZE, threads=1).score([s.path for s in test])
    assert record["n_images"] == len(test) == 10
    assert record["image_auroc"] == pytest.approx(roc_auc_score([s.label for s in test], scores))
    assert 0.5 <= record["pixel_auroc"] <= 1.0
