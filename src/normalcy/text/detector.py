"""Text anomaly detection: a sentence embedding, then any table detector on the vectors.

Text-ADBench's finding is that the embedding matters more than the detector on top, so the
default is the simplest strong one: kNN distance to the training texts (faiss, exact). The
embeddings are unit length, so the kNN score is sqrt(2 - 2 cos) to the k-th nearest
training text: 0 for a text seen in training, about 1.4 for one unrelated to all of them.
Any table detector (`iforest`, `ensemble`, ...) can stand in for kNN.

The model file keeps the detector's arrays (for kNN: the training embeddings and, as
evidence, the training texts) and the embedder's description with the sha256 of its weights;
loading checks that the embedder found has the same weights, so a reloaded model gives the
same scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.text.embedding import BATCH_SIZE, DEFAULT, THREADS, BertEmbedder, Embedder, from_spec, get_embedder

TEXTS_KEY, OFFSETS_KEY = "text.train_utf8", "text.train_offsets"


def _models() -> dict:
    from normalcy.tabular import DETECTORS

    return DETECTORS


class TextDetector(Detector):
    """`model`: a table detector's name (knn, iforest, ensemble, lof, ecod, copod, hbos, pca),
    built with `options` as keyword arguments. `embedder`: all-MiniLM-L6-v2, a local model
    folder, or (not saveable) an Embedder object. `max_tokens` lowers the embedder's token
    limit; `batch_size` and `threads` only change speed."""

    def __init__(self, model: str = "knn", embedder: "str | Embedder" = DEFAULT, max_tokens: int | None = None,
                 options: dict | None = None, batch_size: int = BATCH_SIZE, threads: int | None = THREADS):
        self.model = model
        self.embedder = embedder
        self.max_tokens = max_tokens
        self.options = options
        self.batch_size = batch_size
        self.threads = threads

    def fit(self, X: Sequence[str], y=None) -> "TextDetector":
        texts = _as_texts(X)
        kept = [t for t in texts if t.strip()]
        if not kept:
            raise DataError(f"no non-empty texts to fit on (got {len(texts)} empty ones)")
        detector = self._new_detector()
        embedder = get_embedder(self.embedder, self.max_tokens, self.batch_size, self.threads)
        embeddings = embedder.embed(kept).astype(np.float64)
        detector.fit_matrix(embeddings)
        self.embedder_, self.detector_, self.dim_ = embedder, detector, embeddings.shape[1]
        self.n_empty_skipped_ = len(texts) - len(kept)
        self.train_texts_ = kept if self.model == "knn" else None
        return self

    def embed(self, X: Sequence[str]) -> np.ndarray:
        """The embedding of each text, n x dim."""
        self._check_fitted("detector_")
        if isinstance(self.embedder_, BertEmbedder):  # speed settings may change after loading
            self.embedder_.batch_size, self.embedder_.threads = self.batch_size, self.threads
        return self.embedder_.embed(_as_texts(X)).astype(np.float64)

    def score(self, X: Sequence[str]) -> np.ndarray:
        return self.detector_.score_matrix(self.embed(X))

    def score_with_evidence(self, X: Sequence[str]) -> tuple[np.ndarray, list[str] | None]:
        """Scores, and for kNN the nearest training text of each (None for other models)."""
        embeddings = self.embed(X)
        scores = self.detector_.score_matrix(embeddings)
        if self.train_texts_ is None:
            return scores, None
        _, neighbours = self.detector_.neighbours(embeddings)
        return scores, [self.train_texts_[i] for i in neighbours[:, 0]]

    def save(self, path: str | Path) -> Path:
        if not isinstance(self.embedder, str):
            raise ModelFileError(f"cannot save a TextDetector whose embedder is a {type(self.embedder).__name__}; "
                                 f"give {DEFAULT!r} or a model folder as a string")
        return super().save(path)

    def _new_detector(self):
        models = _models()
        if self.model not in models:
            raise DataError(f"unknown text model {self.model!r}; expected one of {', '.join(models)}")
        if self.options is not None and not isinstance(self.options, dict):
            raise DataError(f"options must be a dict of the {self.model} detector's parameters, got {self.options!r}")
        try:
            return models[self.model](**(self.options or {}))
        except TypeError as exc:
            raise DataError(f"options do not fit the {self.model} detector: {exc}") from exc

    # --- model file ----------------------------------------------------------------------
    def _get_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._check_fitted("detector_")
        arrays, meta = self.detector_.matrix_state()
        if self.train_texts_ is not None:
            encoded = [t.encode("utf-8", errors="surrogatepass") for t in self.train_texts_]
            arrays = {**arrays, TEXTS_KEY: np.frombuffer(b"".join(encoded), dtype=np.uint8),
                      OFFSETS_KEY: np.cumsum([0] + [len(b) for b in encoded]).astype(np.int64)}
        return arrays, {"embedder": self.embedder_.spec(), "detector": meta, "dim": self.dim_,
                        "n_empty_skipped": self.n_empty_skipped_}

    def _set_state(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        dim = meta.get("dim")
        spec = meta.get("embedder")
        if not isinstance(dim, int) or not isinstance(spec, dict) or spec.get("dim") != dim:
            raise ModelFileError("model state: embedding size or embedder description missing or inconsistent")
        try:
            detector = self._new_detector()
        except DataError as exc:
            raise ModelFileError(f"model parameters: {exc}") from exc
        own = {k: v for k, v in arrays.items() if k not in (TEXTS_KEY, OFFSETS_KEY)}
        detector.set_matrix_state(own, meta.get("detector", {}), dim)
        texts = None
        if self.model == "knn":
            texts = _decode_texts(arrays, len(detector.train_))
        self.embedder_ = from_spec(spec, self.batch_size, self.threads)
        self.detector_, self.dim_, self.train_texts_ = detector, dim, texts
        self.n_empty_skipped_ = int(meta.get("n_empty_skipped", 0))


def _decode_texts(arrays: dict[str, np.ndarray], n: int) -> list[str]:
    if TEXTS_KEY not in arrays or OFFSETS_KEY not in arrays:
        raise ModelFileError("model arrays missing: the kNN training texts")
    data, offsets = arrays[TEXTS_KEY].astype(np.uint8).tobytes(), arrays[OFFSETS_KEY].astype(np.int64)
    if (offsets.shape != (n + 1,) or offsets[0] != 0 or offsets[-1] != len(data)
            or np.any(np.diff(offsets) < 0)):
        raise ModelFileError(f"model state: the training texts do not match the {n} training embeddings")
    try:
        return [data[a:b].decode("utf-8", errors="surrogatepass") for a, b in zip(offsets[:-1], offsets[1:])]
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
