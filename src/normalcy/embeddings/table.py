"""Any table detector on the vectors, each dimension a column: kNN distance to the training
vectors, isolation forest, PCA reconstruction, ECOD, ... (`normalcy table models`)."""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.registry import check_params, detector_class
from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import Vectors


class VectorTable(EmbeddingDetector):
    """A table detector on the vectors as they are.

    Parameters
    ----------
    model : str, default "knn"
        The table detector, by its registry name: knn, nearest, iforest, ensemble, lof, ecod,
        copod, hbos or pca.
    options : dict or None, default None
        Its parameters, e.g. {"n_neighbors": 3}.
    """

    name = "table"

    def __init__(self, model: str = "knn", options: dict | None = None):
        self.model = model
        self.options = options

    def _check_params(self):
        self._new_detector()

    def _fit_encoded(self, vectors: Vectors) -> None:
        self.detector_ = self._new_detector().fit_matrix(vectors.matrix, unit="vectors")

    def _score_encoded(self, vectors: Vectors) -> np.ndarray:
        self._check_fitted("detector_")
        return self.detector_.score_matrix(vectors.matrix)

    def _new_detector(self):
        if not isinstance(self.model, str):
            raise DataError(f"model must be a table detector's name, got {self.model!r:.80}")
        cls = detector_class("tabular", self.model)
        if self.options is not None and not isinstance(self.options, dict):
            raise DataError(f"options must be a dict of the {self.model} detector's parameters, "
                            f"got {self.options!r:.80}")
        check_params(cls, self.options or {})
        detector = cls(**(self.options or {}))
        detector._check_params()
        return detector

    def _own_state(self):
        self._check_fitted("detector_")
        return self.detector_.matrix_state()

    def _set_own_state(self, arrays, meta, dim):
        self.detector_ = self._new_detector().set_matrix_state(arrays, meta, dim)
