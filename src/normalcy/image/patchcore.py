"""PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022).

Nothing is trained: `fit` extracts locally aware patch features from the normal images and
keeps a greedy k-center coreset of them as the memory bank. A test patch's score is the
distance to its nearest bank entry (faiss); the image score is the largest patch score.

Departure: greedy k-center selection costs (bank size) x (rows), so with a bank that is a
fixed share of the rows it grows with the square of the training set (685 images 91 s, 950
images 164 s). Rows are therefore split into consecutive chunks of at most CORESET_CHUNK
(about 64 images at 256 px) and each chunk keeps its share of the bank by its own greedy
selection: time grows linearly with the training set, and a set of at most CORESET_CHUNK
rows is selected exactly as the paper does.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.image.base import ImageDetector, is_int


MIN_BANK = 1000
CORESET_CHUNK = 1 << 16  # rows per independent greedy selection


class PatchCore(ImageDetector):
    """PatchCore: distance of each patch to a coreset memory bank of normal patch features.

    Parameters:

    - coreset_ratio: the share of training patches kept in the memory bank (default 0.01); at
      least MIN_BANK (1,000) patches are kept, or every patch if there are fewer.
    - projection_dim: dimensions of the random projection the coreset selection measures
      distances in (default 64; 0 selects in the full feature space).
    - seed: seed of the projection and of the coreset's first pick (default 0).
    - backbone ("efficientnet-lite0"), image_size (256), batch_size (8), threads (None),
      weights (None) and resize ("squash"): as for every image detector (`ImageDetector`).
    """

    name = "patchcore"
    _fitted_attribute = "memory_bank_"

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        coreset_ratio: float = 0.01,
        projection_dim: int = 64,
        seed: int = 0,
        batch_size: int = 8,
        threads: int | None = None,
        weights: str | None = None,
        resize: str = "squash",
    ):
        super().__init__(backbone, image_size, batch_size, threads, weights, resize)
        self.coreset_ratio = coreset_ratio
        self.projection_dim = projection_dim
        self.seed = seed

    def _check_params(self):
        super()._check_params()
        ratio = self.coreset_ratio
        if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and 0.0 < ratio <= 1.0):
            raise DataError(f"coreset_ratio must be a number in (0, 1], got {ratio!r}")
        if not (is_int(self.projection_dim) and self.projection_dim >= 0):
            raise DataError(f"projection_dim must be a non-negative integer, got {self.projection_dim!r}")
        if not is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")

    def _fit_encoded(self, batches, n_images):
        feats = torch.cat([_rows(f) for f in batches])
        # A ratio suited to hundreds of images leaves a handful of patches for a dozen, too few
        # to cover normal variation: keep at least MIN_BANK (or every patch, if fewer).
        n_keep = max(math.ceil(self.coreset_ratio * len(feats)), min(MIN_BANK, len(feats)))
        keep = chunked_coreset(feats, n_keep, self.projection_dim, self.seed)
        self.memory_bank_ = feats[keep].numpy().astype(np.float32)
        self._index = None

    def _score_encoded(self, features):
        n, c, h, w = features.shape
        if c != self.memory_bank_.shape[1]:
            raise ModelFileError(
                f"memory bank has {self.memory_bank_.shape[1]} features but {self.backbone} gives {c}"
            )
        rows = _rows(features)
        _, nearest = self.index.search(rows.numpy(), 1)
        # faiss finds the neighbour; its distance is recomputed from the difference, which keeps
        # the ~1e-3 rounding of the |x|^2 - 2xy + |y|^2 expansion out of the scores and maps.
        difference = rows - torch.from_numpy(self.memory_bank_[nearest[:, 0]])
        return difference.double().square().sum(1).sqrt().reshape(n, h, w)

    def _export_scores(self, features):
        """`_score_encoded` in torch for ONNX: the neighbour by squared distances from one matrix
        product (as faiss's IndexFlatL2 finds it), its distance from the difference."""
        n, c, h, w = features.shape
        bank = torch.from_numpy(self.memory_bank_)
        rows = features.permute(0, 2, 3, 1).reshape(-1, c)
        d2 = (rows * rows).sum(1, keepdim=True) - 2 * rows @ bank.T + (bank * bank).sum(1)
        difference = rows - bank[d2.argmin(1)]
        return difference.double().square().sum(1).sqrt().reshape(-1, h, w)

    @property
    def index(self):
        if getattr(self, "_index", None) is None:
            import faiss

            self._index = faiss.IndexFlatL2(self.memory_bank_.shape[1])
            self._index.add(self.memory_bank_)
        return self._index

    def _get_state(self):
        return {"memory_bank": self.memory_bank_}, {}

    def _set_state(self, arrays, meta):
        expect_arrays(arrays, {"memory_bank": (None, None)})
        self.memory_bank_ = arrays["memory_bank"].astype(np.float32)
        self._index = None


def chunked_coreset(features: torch.Tensor, n: int, projection_dim: int, seed: int,
                    chunk: int = CORESET_CHUNK) -> np.ndarray:
    """Indices of n rows: consecutive chunks of at most `chunk` rows each keep their share of n
    (largest remainders) by `greedy_coreset`; one chunk is plain greedy selection."""
    total = len(features)
    if n >= total:
        return np.arange(total)
    bounds = np.linspace(0, total, -(-total // chunk) + 1).astype(int)
    sizes = np.diff(bounds)
    quota = n * sizes / total
    keep = np.floor(quota).astype(int)
    keep[np.argsort(keep - quota)[: n - keep.sum()]] += 1
    return np.concatenate([start + greedy_coreset(features[start:stop], k, projection_dim, seed)
                           for start, stop, k in zip(bounds[:-1], bounds[1:], keep) if k])


def greedy_coreset(features: torch.Tensor, n: int, projection_dim: int, seed: int) -> np.ndarray:
    """Indices of n rows chosen by greedy k-center selection (Sener & Savarese 2018).

    Distances are taken after a random Gaussian projection to projection_dim dimensions
    (Johnson-Lindenstrauss), as PatchCore does; a small projection keeps the working matrix in
    cache, which is what makes this loop fast on a CPU. Each step is one matrix-vector product.
    """
    if n >= len(features):
        return np.arange(len(features))
    generator = torch.Generator().manual_seed(seed)
    dim = features.shape[1]
    if projection_dim and projection_dim < dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / math.sqrt(projection_dim)
        z = (features @ projection).contiguous()
    else:
        z = features.contiguous()
    sq = (z * z).sum(1)
    first = int(torch.randint(len(z), (1,), generator=generator))
    chosen = [first]
    nearest = sq - 2 * (z @ z[first]) + sq[first]
    nearest[first] = -math.inf  # never pick a row twice, even among exact duplicates
    for _ in progress(range(n - 1), desc="coreset", unit="pt"):
        j = int(torch.argmax(nearest))
        chosen.append(j)
        torch.minimum(nearest, sq - 2 * (z @ z[j]) + sq[j], out=nearest)
        nearest[j] = -math.inf
    return np.asarray(chosen)


def _rows(features: torch.Tensor) -> torch.Tensor:
    """N x C x h x w -> (N*h*w) x C, contiguous for faiss."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1]).contiguous()
