"""Zero-shot batch scoring: a batch of images scored against itself, with no training image.

Mutual scoring, after MuSc (Li et al., "MuSc: Zero-Shot Industrial Anomaly Classification and
Segmentation with Mutual Scoring of the Unlabeled Images", ICLR 2024): every patch of an image
is compared with the patches of each OTHER image of the batch; its distance to image j is the
distance to its nearest patch in j. A normal patch finds a close match in most other images;
a defect is rare, so it finds none in most. A patch's score is the mean of the smallest SHARE
of its per-image distances: the closest images, so that a few images with the same defect
(or a few unusual ones) neither hide a defect nor make a normal patch look anomalous. The
image score is the largest patch score, maps are smoothed as every image detector's are.

Assumption: defects are a minority of the batch, and any one kind of defect at any one place
is rarer than SHARE of the images. A batch where most parts carry the same defect at the same
place scores that defect as normal. Batches under MIN_BATCH images give unstable scores
(`SmallBatchWarning`).

Labels: no threshold exists without normal images, so the label rule is a robust outlier
rule on the batch's own image scores: flagged above median + THRESHOLD_MADS x 1.4826 x MAD
(the scaled median absolute deviation, a standard-deviation estimate that the anomalous
minority cannot inflate). With many defective images in the batch the median moves up and
fewer are flagged: use the scores (the ranking), not only the labels, then.

Patch features, reading and resizing are those of every image detector (`ImageDetector`,
EfficientNet-Lite, locally aware patch features). The nearest-patch search is exact, by
matrix products (torch), each pair of images computed once: N^2 / 2 products of
(h*w) x C x (h*w), about 5.4 * 10^11 multiply-adds for 83 images at 256 px; the N x N x (h*w)
table of nearest distances (28 MB for those 83) grows with the square of the batch.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.core.threads import check_threads, thread_limit
from normalcy.image.backbone import BACKBONES
from normalcy.image.base import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, RESIZE_MODES, ImageDetector, _as_items, _crop, is_int

MIN_BATCH = 10
SHARE = 0.3
THRESHOLD_MADS = 3.0
PAIR_CHUNK = 8  # other images per distance product: bounds memory at 8 x (h*w)^2 floats


class SmallBatchWarning(UserWarning):
    """A batch too small for mutual scoring to be reliable."""


class BatchScorer:
    """Mutual scoring of a batch (module docstring).

    Parameters: share (SHARE: the smallest share of per-image distances averaged), backbone,
    image_size, resize, batch_size, threads and weights as for every image detector.
    """

    # The same reading, backbone features and map smoothing as every image detector.
    _batches = ImageDetector._batches
    _encode = ImageDetector._encode
    _smooth = ImageDetector._smooth
    extractor = ImageDetector.extractor

    def __init__(self, share: float = SHARE, backbone: str = "efficientnet-lite0", image_size: int = 256,
                 resize: str = "squash", batch_size: int = 8, threads: int | None = None,
                 weights: str | None = None):
        self.share = share
        self.backbone = backbone
        self.image_size = image_size
        self.resize = resize
        self.batch_size = batch_size
        self.threads = threads
        self.weights = weights

    def check(self) -> None:
        if not (isinstance(self.share, (int, float)) and not isinstance(self.share, bool) and 0 < self.share <= 1):
            raise DataError(f"share must be a number in (0, 1], got {self.share!r}")
        if self.backbone not in BACKBONES:
            raise DataError(f"unknown backbone {self.backbone!r}; expected one of {', '.join(BACKBONES)}")
        if not (is_int(self.image_size) and MIN_IMAGE_SIZE <= self.image_size <= MAX_IMAGE_SIZE
                and self.image_size % 16 == 0):
            raise DataError(f"image_size must be a multiple of 16 in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], "
                            f"got {self.image_size!r}")
        if self.resize not in RESIZE_MODES:
            raise DataError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}")
        if not (is_int(self.batch_size) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        check_threads(self.threads)

    def score(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Image scores (N) and per-pixel maps (N x S x S) of a batch of images (paths or
        H x W x 3 uint8 arrays); warns below MIN_BATCH images, fails below 2."""
        self.check()
        images = _as_items(X)
        if len(images) < 2:
            raise DataError(f"zero-shot scoring compares images with each other: it needs at least 2, got "
                            f"{len(images)} (and {MIN_BATCH} or more for stable scores)")
        if len(images) < MIN_BATCH:
            warnings.warn(f"only {len(images)} images in the batch: mutual scoring needs {MIN_BATCH} or more "
                          "for stable scores (each image is judged against the others)", SmallBatchWarning,
                          stacklevel=2)
        with thread_limit(self.threads):
            feats, boxes = [], []
            for f, b in self._batches(images, "features"):
                feats.append(f)
                boxes.extend(b)
            features = torch.cat(feats)
            patch = mutual_scores(features, self.share)
            scores = np.array([float(_crop(p, box, self.image_size).max()) for p, box in zip(patch, boxes)])
            maps = self._smooth(patch, boxes)
        return scores, maps


def mutual_scores(features: torch.Tensor, share: float = SHARE) -> torch.Tensor:
    """N x C x h x w patch features -> N x h x w patch scores: for each patch, the mean of
    the smallest `share` (at least one) of its N - 1 distances to its nearest patch in each
    other image."""
    n, c, h, w = features.shape
    rows = features.permute(0, 2, 3, 1).reshape(n, h * w, c).float().contiguous()
    sq = (rows * rows).sum(-1)  # n x P
    nearest = torch.full((n, n, h * w), math.inf)  # [i, j, p]: patch p of image i to image j
    for i in progress(range(n - 1), desc="mutual", unit="image"):
        for start in range(i + 1, n, PAIR_CHUNK):
            m = min(PAIR_CHUNK, n - start)
            # squared distances |a|^2 + |b|^2 - 2 a.b as one matrix product, P x (m * P)
            d = torch.addmm(sq[start : start + m].reshape(1, -1), rows[i], rows[start : start + m].reshape(-1, c).T,
                            alpha=-2).add_(sq[i][:, None]).clamp_min_(0).reshape(len(rows[i]), m, -1)
            nearest[i, start : start + m] = d.amin(dim=2).T
            nearest[start : start + m, i] = d.amin(dim=0)
    k = max(1, round(share * (n - 1)))
    closest = torch.sort(nearest, dim=1).values[:, :k]  # the diagonal (inf) sorts last
    return closest.sqrt().mean(dim=1).reshape(n, h, w)


def outlier_threshold(scores: np.ndarray) -> float:
    """median + THRESHOLD_MADS x 1.4826 x MAD of the batch's scores."""
    median = float(np.median(scores))
    return median + THRESHOLD_MADS * 1.4826 * float(np.median(np.abs(scores - median)))


def score_batch_to_folder(scorer: BatchScorer, paths: list[Path], out_dir: str | Path) -> list[dict]:
    """Score a batch, write results.csv (the columns of `normalcy image predict`), an overlay
    per image and report.html into out_dir, all or nothing. Returns the rows."""
    from normalcy.image.io import read_image
    from normalcy.image.overlay import color_range, overlay, save_png
    from normalcy.image.report import write_report
    from normalcy.image.workflow import RESULT_COLUMNS, _overlay_name

    images = [read_image(p) for p in paths]  # an unreadable file fails here, naming it
    scores, maps = scorer.score(images)
    threshold = outlier_threshold(scores)
    labels = (scores > threshold).astype(int)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".score-batch-", dir=out_dir))
    common = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    vmin, vmax = color_range(threshold, maps)
    rows, names = [], set()
    try:
        for path, image, score, label, anomaly_map in zip(paths, images, scores, labels, maps):
            name = _overlay_name(path, common, names)
            save_png(overlay(image, anomaly_map, vmin, vmax), staging / name)
            rows.append({"path": str(path), "score": float(score), "label": int(label), "threshold": threshold,
                         "overlay": name, "error": ""})
        with open(staging / "results.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        summary = {"images": len(rows), "flagged": int(labels.sum()),
                   "threshold": f"{threshold:.4f}: median + {THRESHOLD_MADS:g} x 1.4826 x MAD of the batch's scores",
                   "assumption": "defects are a minority of the batch; each image is scored against the others",
                   "share": scorer.share, "backbone": scorer.backbone, "image_size": scorer.image_size}
        items = [{"overlay": r["overlay"], "name": Path(r["path"]).resolve().relative_to(common).as_posix(),
                  "truth": None, "score": r["score"], "label": r["label"]} for r in rows]
        write_report(staging / "report.html", "normalcy zero-shot batch scoring", summary, items)
        for item in staging.iterdir():
            os.replace(item, out_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return rows
