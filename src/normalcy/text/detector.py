"""Text anomaly detection: a sentence embedding, then any table detector on the vectors.

Text-ADBench's finding is that the embedding matters more than the detector on top, so the
default is the simplest strong one: kNN distance to the training texts (faiss, exact). The
embeddings are unit length, so the kNN score is sqrt(2 - 2 cos) to the k-th nearest
training text: 0 for a text seen in training, about 1.4 for one unrelated to all of them.
Any registered table detector (`iforest`, `ensemble`, ...) can stand in for kNN.

Evidence (`explain`, kNN models: knn and nearest): the nearest training text of each text.
It is marked weak when that text is farther than `weak_distance` (default 1.2, a cosine
similarity below 0.28): with all-MiniLM-L6-v2, texts on a topic of the training texts had a
nearest neighbour within 1.03 (cosine 0.48 or more) in our kitchen test corpus, unrelated
ones (network errors, politics, sport) 1.31 or farther (cosine 0.14 or less), so a far
"nearest" text names an arbitrary neighbour, not a reason.

The model file keeps the detector's arrays (for kNN: the training embeddings and, as
evidence, the training texts) and the embedder's description with the sha256 of its weights;
loading checks that the embedder found has the same weights, so a reloaded model gives the
same scores.
"""

from __future__ import annotations

import math
import numbers
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import check_params, detector_class
from normalcy.core.results import Explanation
from normalcy.core.threads import check_threads
from normalcy.text.embedding import BATCH_SIZE, DEFAULT, THREADS, BertEmbedder, Embedder, from_spec, get_embedder

TEXTS_KEY, OFFSETS_KEY = "text.train_utf8", "text.train_offsets"
WEAK_DISTANCE = 1.2


class TextDetector(Detector):
    """Sentence embeddings of the texts, scored by a table detector.

    Parameters
    ----------
    model : str, default "knn"
        The table detector on the embeddings, by its registry name (`normalcy table models`):
        knn, nearest, iforest, ensemble, lof, ecod, copod, hbos or pca.
    embedder : str or Embedder, default "all-MiniLM-L6-v2"
        The built-in all-MiniLM-L6-v2, a local sentence-transformers model folder, or (not
        saveable) an `Embedder` object.
    max_tokens : int or None, default None
        Truncate texts to this many tokens (None: the embedder's limit, 256 for MiniLM).
    options : dict or None, default None
        The table detector's parameters, e.g. {"n_neighbors": 3}.
    batch_size : int, default 64
        Texts per forward pass of the embedder (speed only).
    threads : int or None, default 1
        CPU threads while embedding (speed only; None leaves torch's setting).
    weak_distance : float, default 1.2
        kNN evidence is marked weak when the nearest training text is farther than this
        (distance between unit embeddings, sqrt(2 - 2 cos)).
    """

    name = "embedding"
    modality = "text"

    def __init__(self, model: str = "knn", embedder: "str | Embedder" = DEFAULT, max_tokens: int | None = None,
                 options: dict | None = None, batch_size: int = BATCH_SIZE, threads: int | None = THREADS,
                 weak_distance: float = WEAK_DISTANCE):
        self.model = model
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.options = options
        self.batch_size = batch_size
        self.threads = threads
        self.weak_distance = weak_distance

    def _check_params(self):
        self._new_detector()
        if not isinstance(self.embedder, (str, Path, Embedder)):
            raise DataError(f"embedder must be {DEFAULT!r}, a model folder or an Embedder, got {self.embedder!r:.80}")
        if self.max_tokens is not None and not (_integer(self.max_tokens) and self.max_tokens >= 3):
            raise DataError(f"max_tokens must be an integer of at least 3 or None, got {self.max_tokens!r}")
        if not (_integer(self.batch_size) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        check_threads(self.threads)
        if not (isinstance(self.weak_distance, numbers.Real) and not isinstance(self.weak_distance, bool)
                and 0 < self.weak_distance < math.inf):
            raise DataError(f"weak_distance must be a positive number, got {self.weak_distance!r}")

    def fit(self, X: Sequence[str], y=None) -> "TextDetector":
        self._check_params()
        texts = _as_texts(X)
        kept = [t for t in texts if t.strip()]
        if not kept:
            raise DataError(f"no non-empty texts to fit on (got {len(texts)} empty ones)")
        detector = self._new_detector()
        embedder = get_embedder(self.embedder, self.max_tokens, self.batch_size, self.threads)
        embeddings = embedder.embed(kept).astype(np.float64)
        detector.fit_matrix(embeddings, unit="texts")
        self.embedder_, self.detector_, self.dim_ = embedder, detector, embeddings.shape[1]
        self.n_empty_skipped_ = len(texts) - len(kept)
        self.train_texts_ = kept if _gives_evidence(detector) else None
        return self

    def embed(self, X: Sequence[str]) -> np.ndarray:
        """The embedding of each text, n x dim."""
        self._check_fitted("detector_")
        texts = _as_texts(X)
        if not texts:
            raise DataError("no texts to score")
        if isinstance(self.embedder_, BertEmbedder):  # speed settings may change after loading
            self.embedder_.batch_size, self.embedder_.threads = self.batch_size, self.threads
        return self.embedder_.embed(texts).astype(np.float64)

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        embeddings = self.embed(X)  # checks that the detector is fitted
        return self.detector_.score_matrix(embeddings)

    def explain(self, X: Sequence[str]) -> Explanation:
        """Scores and, for kNN models (knn, nearest), evidence: per text a list whose first
        entry is the nearest training text and whose second, when present, says that this
        evidence is weak (the nearest training text is farther than `weak_distance`). Other
        models give no evidence (None)."""
        embeddings = self.embed(X)
        scores = self.detector_.score_matrix(embeddings)
        if self.train_texts_ is None:
            return Explanation(scores)
        squared, neighbours = self.detector_.neighbours(embeddings)
        evidence = []
        for distance, i in zip(np.sqrt(squared[:, 0]), neighbours[:, 0]):
            note = [] if distance <= self.weak_distance else [
                f"weak evidence: the nearest training text is at distance {distance:.2f}, beyond "
                f"{self.weak_distance:g}: no training text resembles this one"]
            evidence.append([self.train_texts_[i], *note])
        return Explanation(scores, evidence=evidence)

    def save(self, path: str | Path) -> Path:
        if not isinstance(self.embedder, str):
            raise ModelFileError(f"cannot save a TextDetector whose embedder is a {type(self.embedder).__name__}; "
                                 f"give {DEFAULT!r} or a model folder as a string")
        return super().save(path)

    def _new_detector(self):
        """The table detector named by `model`, with `options` checked against it."""
        if not isinstance(self.model, str):
            raise DataError(f"model must be a table detector's name, got {self.model!r:.80}")
        cls = detector_class("tabular", self.model)
        if self.options is not None and not isinstance(self.options, dict):
            raise DataError(f"options must be a dict of the {self.model} detector's parameters, got {self.options!r}")
        check_params(cls, self.options or {})
        detector = cls(**(self.options or {}))
        detector._check_params()
        return detector

    # --- model file ----------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted("detector_")
        arrays, meta = self.detector_.matrix_state()
        if self.train_texts_ is not None:
            encoded = [t.encode("utf-8") for t in self.train_texts_]
            arrays = {**arrays, TEXTS_KEY: np.frombuffer(b"".join(encoded), dtype=np.uint8),
                      OFFSETS_KEY: np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)}
        return arrays, {"embedder": self.embedder_.spec(), "detector": meta, "dim": self.dim_,
                        "n_empty_skipped": self.n_empty_skipped_}

    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        dim = meta.get("dim")
        spec = meta.get("embedder")
        if not _integer(dim) or not isinstance(spec, dict) or spec.get("dim") != dim or dim < 1:
            raise ModelFileError("model state: embedding size or embedder description missing or inconsistent")
        detector = self._new_detector()
        own = {k: v for k, v in arrays.items() if k not in (TEXTS_KEY, OFFSETS_KEY)}
        detector.set_matrix_state(own, meta.get("detector", {}), dim)
        texts = None
        if _gives_evidence(detector):
            texts = _decode_texts(arrays, len(detector.train_))
        skipped = meta.get("n_empty_skipped", 0)
        if not (_integer(skipped) and skipped >= 0):
            raise ModelFileError(f"model state: n_empty_skipped must be a count, got {skipped!r:.40}")
        self.embedder_ = from_spec(spec, self.batch_size, self.threads)
        self.detector_, self.dim_, self.train_texts_ = detector, dim, texts
        self.n_empty_skipped_ = skipped


def _gives_evidence(detector) -> bool:
    from normalcy.tabular.knn import KNN

    return isinstance(detector, KNN)


def _decode_texts(arrays: dict[str, np.ndarray], n: int) -> list[str]:
    if TEXTS_KEY not in arrays or OFFSETS_KEY not in arrays:
        raise ModelFileError("model arrays missing: the kNN training texts")
    data, offsets = arrays[TEXTS_KEY].astype(np.uint8).tobytes(), arrays[OFFSETS_KEY].astype(np.int64)
    if (offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(data)
            or np.any(np.diff(offsets) < 0)):
        raise ModelFileError(f"model state: the training texts do not match the {n} training embeddings")
    try:
        return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"model state: a training text is not UTF-8: {exc}") from exc


def _as_texts(X) -> list[str]:
    if isinstance(X, str):
        raise DataError("expected a list of texts, got a single string; wrap it in a list")
    try:
        texts = list(X)
    except TypeError:
        raise DataError(f"expected a list of texts, got {type(X).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"text {i} is a {type(t).__name__} ({t!r:.40}), not a string")
    return texts


def _integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
