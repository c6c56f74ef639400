"""Distance to a re-embedding of the source text: the stored vector against the one the model
makes from its content now.

A vector that the model made from its text is that text's embedding again: with
all-MiniLM-L6-v2 on one machine the distance was exactly 0 for every untouched vector of the
benchmark's 17 corpora, though the texts were re-embedded in other batches (other padding).
Any change made to the vector after embedding adds its own size to the distance, whichever
direction it takes, so this catches rotations that leave every statistic of the vector as it
was. Another CPU or torch build may round differently, so distances up to `tolerance`
(default 1e-5, about a hundred float32 roundings of a unit vector, and 100x below the
smallest change in the benchmark that moved a neighbour) count as 0; a change smaller than
that, e.g. data hidden in the low bits of values near 0, needs the signatures
(`normalcy.embeddings.pin`). It needs the text and costs an embedding per vector (about 100
texts/s per core for MiniLM).

Fitting re-embeds up to `check_items` training texts to check that the vectors are this
model's embeddings of their content: a store made by another model (or with another token
limit) would score as entirely anomalous, so it is refused with the median distance found.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.threads import check_threads
from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import Vectors
from normalcy.text.embedding import BATCH_SIZE, DEFAULT, THREADS, BertEmbedder, Embedder, from_spec, get_embedder

CHECK_ITEMS = 256
MAX_MEDIAN_DISTANCE = 0.05
TOLERANCE = 1e-5


class ReEmbed(EmbeddingDetector):
    """The Euclidean distance between each vector and a fresh embedding of its `content`.

    Parameters
    ----------
    embedder : str or Embedder, default "all-MiniLM-L6-v2"
        The model that made the vectors: the built-in all-MiniLM-L6-v2 or a local
        sentence-transformers folder (an `Embedder` object works but cannot be saved).
    max_tokens : int or None, default None
        The token limit the vectors were made with (None: the model's, 256 for MiniLM).
    batch_size : int, default 64
        Texts per forward pass (speed only).
    threads : int or None, default 1
        CPU threads while embedding (speed only).
    check_items : int, default 256
        Training texts re-embedded at fit to check that the vectors are this model's.
    max_median_distance : float, default 0.05
        Fit refuses vectors whose median distance to their re-embedding is larger: they were
        made by another model or setting.
    tolerance : float, default 1e-5
        Distances up to this count as 0 (rounding on another machine; see the module notes).
    """

    name = "reembed"
    needs_content = True

    def __init__(self, embedder: "str | Embedder" = DEFAULT, max_tokens: int | None = None,
                 batch_size: int = BATCH_SIZE, threads: int | None = THREADS, check_items: int = CHECK_ITEMS,
                 max_median_distance: float = MAX_MEDIAN_DISTANCE, tolerance: float = TOLERANCE):
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.check_items = check_items
        self.max_median_distance = max_median_distance
        self.tolerance = tolerance

    def _check_params(self):
        if not isinstance(self.embedder, (str, Path, Embedder)):
            raise DataError(f"embedder must be {DEFAULT!r}, a model folder or an Embedder, got {self.embedder!r:.80}")
        if self.max_tokens is not None and not (_integer(self.max_tokens) and self.max_tokens >= 3):
            raise DataError(f"max_tokens must be an integer of at least 3 or None, got {self.max_tokens!r}")
        if not (_integer(self.batch_size) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        check_threads(self.threads)
        if not (_integer(self.check_items) and self.check_items >= 1):
            raise DataError(f"check_items must be a positive integer, got {self.check_items!r}")
        if not (isinstance(self.max_median_distance, numbers.Real) and not isinstance(self.max_median_distance, bool)
                and 0 < self.max_median_distance < math.inf):
            raise DataError(f"max_median_distance must be a positive number, got {self.max_median_distance!r}")
        if not (isinstance(self.tolerance, numbers.Real) and not isinstance(self.tolerance, bool)
                and 0 <= self.tolerance < math.inf):
            raise DataError(f"tolerance must be a number of at least 0, got {self.tolerance!r}")

    def _fit_encoded(self, vectors: Vectors) -> None:
        embedder = get_embedder(self.embedder, self.max_tokens, self.batch_size, self.threads)
        rows = np.unique(np.linspace(0, len(vectors) - 1, min(self.check_items, len(vectors))).astype(int))
        fresh = embedder.embed([vectors.content[i] for i in rows]).astype(np.float64)
        if fresh.shape[1] != vectors.dim:
            raise DataError(f"the vectors have {vectors.dim} dimensions, the embedder makes {fresh.shape[1]}: they "
                            "are not its embeddings")
        median = float(np.median(distances(vectors.matrix[rows], fresh)))
        if median > self.max_median_distance:
            raise DataError(f"the vectors are not this embedder's embeddings of their content: the median distance "
                            f"to a re-embedding is {median:.3g} over {len(rows)} training texts (at most "
                            f"{self.max_median_distance:g} expected); fit with the model and token limit that "
                            "made them")
        self.embedder_, self.fit_median_ = embedder, median

    def reembed(self, texts: list[str]) -> np.ndarray:
        """Fresh embeddings of the texts (n x dim, float64)."""
        self._check_fitted("embedder_")
        if isinstance(self.embedder_, BertEmbedder):  # speed settings may change after loading
            self.embedder_.batch_size, self.embedder_.threads = self.batch_size, self.threads
        return self.embedder_.embed(texts).astype(np.float64)

    def _score_encoded(self, vectors: Vectors) -> np.ndarray:
        return self.scores(vectors.matrix, self.reembed(vectors.content))

    def scores(self, matrix: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """The scores of stored vectors given their texts' fresh embeddings."""
        d = distances(matrix, fresh)
        return np.where(d <= self.tolerance, 0.0, d)

    def save(self, path: str | Path) -> Path:
        if not isinstance(self.embedder, (str, Path)):
            raise ModelFileError(f"cannot save a ReEmbed detector whose embedder is a {type(self.embedder).__name__}; "
                                 f"give {DEFAULT!r} or a model folder")
        return super().save(path)

    def _own_state(self):
        self._check_fitted("embedder_")
        return {}, {"embedder": self.embedder_.spec(), "fit_median": self.fit_median_}

    def _set_own_state(self, arrays, meta, dim):
        spec, median = meta.get("embedder"), meta.get("fit_median")
        if not (isinstance(spec, dict) and spec.get("dim") == dim):
            raise ModelFileError("model state: the embedder description is missing or not of the model's size")
        if not (isinstance(median, float) and math.isfinite(median) and median >= 0):
            raise ModelFileError(f"model state: fit_median must be a non-negative number, got {median!r:.40}")
        self.embedder_, self.fit_median_ = from_spec(spec, self.batch_size, self.threads), median


def distances(matrix: np.ndarray, fresh: np.ndarray) -> np.ndarray:
    """Euclidean distance between each stored vector and its re-embedding."""
    return np.sqrt(((matrix - fresh) ** 2).sum(axis=1))


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
