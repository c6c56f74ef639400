"""Defect-type discovery (after AnomalyNCD, Huang et al. 2025): which kinds of defect are
among the flagged images?

For each flagged image (every image with `flagged_only=False`), its anomaly map is binarised
by Otsu's threshold on that map's own values (maps differ in scale from detector to detector
and image to image, so a fixed cut would not carry over; Otsu needs no parameter). Connected
regions (8-connected, `scipy.ndimage.label`) smaller than MIN_AREA of the image are dropped.
Each region is cropped from the image with a margin (MARGIN of its size, at least
MIN_MARGIN pixels at the working size), and embedded by the backbone's features of the crop
averaged over the region's map values (map-weighted pooling: the defect's appearance more
than its surroundings'), with three numbers for its outline (`shape_features`: log area,
elongation, fill of its box; the pooled appearance of a thin scratch and of a small chip can
be alike); every feature is standardised and each level, and the outline, weighs the same in
the distance. The regions are then clustered by
agglomerative clustering (Ward) on those embeddings, with the number of clusters chosen
automatically: the k in 2..max_clusters with the best silhouette. Agglomerative over HDBSCAN:
it is deterministic, assigns every region (HDBSCAN labels some as noise, and a defect left
unclustered answers nothing) and needs no density parameter to tune.

Output (`discover`): OUT/regions.csv, one row per region (path, region, cluster, area in the
image's own pixels, score: the region's largest map value) and OUT/cluster_<k>.html, a contact
sheet of each cluster's crops (OUT/crops/), written whole or not at all.
"""

from __future__ import annotations

import csv
import html
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from normalcy.core.errors import DataError
from normalcy.core.threads import thread_limit
from normalcy.image.backbone import to_tensor
from normalcy.image.base import _extractor, load_square
from normalcy.image.io import read_image
from normalcy.image.report import _STYLE

MIN_AREA = 0.001  # share of the working square below which a region is noise
MARGIN = 0.25  # crop margin, share of the region's box
MIN_MARGIN = 8  # pixels at the working size
CROP_SIZE = 128  # crops are embedded at this size
MAX_CLUSTERS = 8
SHAPE_FEATURES = 3  # `shape_features`
REGION_COLUMNS = ["path", "region", "cluster", "area", "score"]


@dataclass
class Region:
    path: str
    region: int  # 1-based, per image, largest score first
    area: int  # pixels of the image at its own size
    score: float
    crop: np.ndarray  # H x W x 3 uint8, from the working square
    embedding: np.ndarray
    cluster: int = 0


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut of a histogram that maximises the between-class variance."""
    values = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = values.min(), values.max()
    if hi <= lo:
        return float(hi)
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)[:-1]
    w1 = values.size - w0
    m0 = np.cumsum(counts * centres)[:-1] / w0.clip(1)
    m1 = ((counts * centres).sum() - np.cumsum(counts * centres)[:-1]) / w1.clip(1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[1:-1][np.argmax(between)])


def find_regions(anomaly_map: np.ndarray, min_area: float = MIN_AREA) -> list[tuple[np.ndarray, float]]:
    """The map's regions above its Otsu threshold, as (boolean mask, largest value), largest
    value first; regions under `min_area` of the map are dropped."""
    labelled, n = ndimage.label(anomaly_map > otsu(anomaly_map), structure=np.ones((3, 3), bool))
    regions = []
    for k in range(1, n + 1):
        mask = labelled == k
        if mask.sum() >= min_area * anomaly_map.size:
            regions.append((mask, float(anomaly_map[mask].max())))
    return sorted(regions, key=lambda r: -r[1])


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    mr = max(MIN_MARGIN, int(MARGIN * (r1 - r0)))
    mc = max(MIN_MARGIN, int(MARGIN * (c1 - c0)))
    size = mask.shape[0]
    return max(0, r0 - mr), min(size, r1 + mr), max(0, c0 - mc), min(size, c1 + mc)


def embed_regions(extractor, crops: list[np.ndarray], weights: list[np.ndarray]) -> np.ndarray:
    """Each crop's backbone features (all levels but the stem), averaged with the region's map
    values as weights; one row per crop."""
    batch = to_tensor([np.asarray(Image.fromarray(c).resize((CROP_SIZE, CROP_SIZE), Image.BILINEAR)) for c in crops])
    w = torch.from_numpy(np.stack([np.asarray(Image.fromarray(m.astype(np.float32)).resize(
        (CROP_SIZE, CROP_SIZE), Image.BILINEAR)) for m in weights]))[:, None]
    levels = tuple(range(1, len(extractor.channels)))
    with torch.inference_mode():
        feats = extractor(batch, levels)
    pooled = []
    for f in feats:
        wl = F.adaptive_avg_pool2d(w, f.shape[-2:]).clamp_min(0) + 1e-6
        pooled.append(((f * wl).sum((2, 3)) / wl.sum((2, 3))).numpy())
    return np.concatenate(pooled, axis=1)


def shape_features(mask: np.ndarray) -> np.ndarray:
    """What the crop's pooled appearance loses, its outline: log area, elongation (log ratio
    of the principal axes' spreads) and how much of its bounding box it fills."""
    rows, cols = np.nonzero(mask)
    spread = np.linalg.eigvalsh(np.cov(np.stack([rows, cols])) + 0.25 * np.eye(2))  # +1/4: a pixel's own extent
    box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    return np.array([np.log(len(rows)), 0.5 * np.log(spread[1] / spread[0]), len(rows) / box])


def cluster(embeddings: np.ndarray, max_clusters: int = MAX_CLUSTERS, blocks: list[int] | None = None) -> np.ndarray:
    """Ward clusters of the embeddings, k in 2..max_clusters by silhouette; one cluster when
    there are fewer than 3 regions. `blocks`: column counts of blocks standardised to equal
    weight (each backbone level)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    if n < 3:
        return np.zeros(n, dtype=int)
    x = (embeddings - embeddings.mean(0)) / (embeddings.std(0) + 1e-8)
    if blocks:  # each level counts the same, whatever its channel count
        x = np.concatenate([b / np.sqrt(b.shape[1]) for b in np.split(x, np.cumsum(blocks)[:-1], axis=1)], axis=1)
    best, best_labels = -np.inf, np.zeros(n, dtype=int)
    for k in range(2, min(max_clusters, n - 1) + 1):
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
        quality = silhouette_score(x, labels)
        if quality > best:
            best, best_labels = quality, labels
    return best_labels


def regions_of(detector, paths: list, flagged_only: bool = True, min_area: float = MIN_AREA,
               max_clusters: int = MAX_CLUSTERS, batch_size: int = 16) -> list[Region]:
    """The clustered regions of the images `paths` (those flagged at the detector's threshold,
    or all); needs a detector with maps."""
    if not detector.explains:
        raise DataError(f"{type(detector).__name__} scores whole images only: discovery needs a detector with maps")
    if flagged_only:
        detector._require_threshold()
    extractor = _extractor(getattr(detector, "backbone", "efficientnet-lite0"), getattr(detector, "weights", None))
    size = detector.image_size
    regions: list[Region] = []
    with thread_limit(detector.threads):
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start : start + batch_size])
            explanation = detector.explain(chunk)
            squares, _ = load_square(chunk, size, "squash")
            for path, square, score, anomaly_map in zip(chunk, squares, explanation.scores, explanation.localization):
                if flagged_only and score < detector.threshold_:
                    continue
                h, w = _shape(path)
                found = find_regions(anomaly_map, min_area)
                crops, weights = [], []
                for mask, _ in found:
                    r0, r1, c0, c1 = _box(mask)
                    crops.append(square[r0:r1, c0:c1])
                    weights.append(np.where(mask, anomaly_map, 0)[r0:r1, c0:c1])
                if not found:
                    continue
                shapes = np.stack([shape_features(mask) for mask, _ in found])
                embeddings = np.concatenate([embed_regions(extractor, crops, weights), shapes], axis=1)
                for k, ((mask, peak), crop, e) in enumerate(zip(found, crops, embeddings), start=1):
                    area = int(round(mask.sum() * h * w / size**2))
                    regions.append(Region(str(path), k, area, peak, crop, e))
    if regions:
        blocks = [*extractor.channels[1:], SHAPE_FEATURES]
        labels = cluster(np.stack([r.embedding for r in regions]), max_clusters, blocks)
        for r, c in zip(regions, labels):
            r.cluster = int(c)
    return regions


def image_clusters(regions: list[Region]) -> dict[str, int]:
    """Each image's cluster: that of its largest-scoring region."""
    best: dict[str, Region] = {}
    for r in regions:
        if r.path not in best or r.score > best[r.path].score:
            best[r.path] = r
    return {p: r.cluster for p, r in best.items()}


def discover(detector, paths: list, out: str | Path, flagged_only: bool = True, min_area: float = MIN_AREA,
             max_clusters: int = MAX_CLUSTERS) -> list[Region]:
    """`regions_of`, written to `out`: regions.csv, crops/ and cluster_<k>.html per cluster."""
    out = Path(out)
    regions = regions_of(detector, paths, flagged_only, min_area, max_clusters)
    if not regions:
        warnings.warn("no anomalous region found: regions.csv has no rows", stacklevel=2)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".discover-", dir=out))
    try:
        (staging / "crops").mkdir()
        with open(staging / "regions.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=REGION_COLUMNS)
            writer.writeheader()
            for r in regions:
                writer.writerow({"path": r.path, "region": r.region, "cluster": r.cluster, "area": r.area,
                                 "score": r.score})
        for i, r in enumerate(regions):
            Image.fromarray(np.ascontiguousarray(r.crop)).save(staging / "crops" / f"{i:05d}.png")
        for k in sorted({r.cluster for r in regions}):
            _contact_sheet(staging / f"cluster_{k}.html", k, [(i, r) for i, r in enumerate(regions) if r.cluster == k])
        if (out / "crops").is_dir():
            shutil.rmtree(out / "crops")
        for old in out.glob("cluster_*.html"):
            old.unlink()
        for item in staging.iterdir():
            os.replace(item, out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return regions


def _contact_sheet(path: Path, k: int, members: list[tuple[int, Region]]) -> None:
    cards = "".join(
        f'<div class="card"><img src="crops/{i:05d}.png" alt="region {r.region}">'
        f"<div>{html.escape(Path(r.path).name)} #{r.region}</div><div>score {r.score:.3f}, area {r.area}</div></div>"
        for i, r in sorted(members, key=lambda m: -m[1].score))
    images = len({r.path for _, r in members})
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>cluster {k}</title>"
                    f"<style>{_STYLE}</style></head><body><h1>Defect cluster {k}</h1>"
                    f"<p>{len(members)} regions from {images} images, most anomalous first.</p>"
                    f"<div class='grid'>{cards}</div></body></html>")


def _shape(path) -> tuple[int, int]:
    if isinstance(path, np.ndarray):
        return path.shape[:2]
    try:
        with Image.open(path) as image:
            return image.size[::-1]
    except OSError:
        return read_image(path).shape[:2]  # its error names the file and the problem


BENCH_COLUMNS = ["dataset", "detector", "n_images", "n_with_region", "n_regions", "n_clusters", "n_types", "nmi",
                 "ari", "seconds"]
DEMO_PER_DEFECT = 20
DEMO_SEED = 1  # not seed 0, the demo set the method was developed on


def benchmark(datasets: list, params: dict, json_path, scratch, detector: str = "patchcore", seed: int = 0) -> tuple:
    """Discovery on the defective test images of each MVTec-layout dataset, and of the demo's
    discs (DEMO_PER_DEFECT of each kind, drawn in `scratch`): NMI and ARI of each image's
    cluster (that of its largest-scoring region; images without a region form one more
    cluster) against its defect folder. Every defective image is used, flagged or not, so the
    figure judges the clustering, not the threshold. JSON + Markdown."""
    import time

    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from normalcy.core.benchmark import write_results
    from normalcy.core.holdout import fit_with_holdout
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.core.threshold import FalseAlarmRate
    from normalcy.image.benchmark import PACKAGES
    from normalcy.image.datasets import load_dataset
    from normalcy.image.demo import make_dataset

    demo = make_dataset(Path(scratch) / "demo-discs", n_per_defect=DEMO_PER_DEFECT, seed=DEMO_SEED)
    accepted = parameter_names(detector_class("image", detector))
    records = []
    for root in [*map(Path, datasets), demo]:
        dataset = load_dataset(root)
        model = build("image", detector, {k: v for k, v in params.items() if k in accepted and v is not None})
        fit_with_holdout(model, dataset.train, FalseAlarmRate(0.01), 0.1, seed, unit="images")
        bad = [s for s in dataset.test if s.label == 1]
        start = time.perf_counter()
        regions = regions_of(model, [s.path for s in bad], flagged_only=False)
        seconds = time.perf_counter() - start
        found = image_clusters(regions)
        truth = [s.defect for s in bad]
        pred = [found.get(str(s.path), -1) for s in bad]
        records.append({"dataset": "demo-discs" if root == demo else root.name, "detector": detector,
                        "n_images": len(bad), "n_with_region": len(found), "n_regions": len(regions),
                        "n_clusters": len(set(pred)), "n_types": len(set(truth)),
                        "nmi": float(normalized_mutual_info_score(truth, pred)),
                        "ari": float(adjusted_rand_score(truth, pred)), "seconds": seconds,
                        "confusion": _confusion(truth, pred)})
    settings = {**params, "demo": f"{DEMO_PER_DEFECT} per defect kind, seed {DEMO_SEED}", "seed": seed}
    return (*write_results(records, json_path, PACKAGES, "Defect-type discovery", BENCH_COLUMNS, settings), records)


def _confusion(truth: list[str], pred: list[int]) -> dict:
    """defect type -> {cluster: images}."""
    table: dict = {}
    for t, p in zip(truth, pred):
        table.setdefault(t, {}).setdefault(str(p), 0)
        table[t][str(p)] += 1
    return table
