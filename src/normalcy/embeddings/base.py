"""What every embedding detector shares: reading the vectors (`normalcy.embeddings.data`),
checking their size against the fitted one, and the model file.

A detector learns from and scores `Vectors` (`_fit_encoded`, `_score_encoded`), and where it
can (`explains = True`) says how much each part added to a vector's score
(`_explain_encoded` with `_parts`). Its arrays go through `_own_state` / `_set_own_state`.
`needs_content` marks the detectors that compare a vector with its source text.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import ClassVar

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.embeddings.data import Vectors, read_vectors

MIN_VECTORS = 2


class ConstantVectorsWarning(UserWarning):
    """Every training vector is the same."""


class EmbeddingDetector(Detector):
    modality = "embeddings"
    needs_content: ClassVar[bool] = False

    def fit(self, X, y=None) -> "EmbeddingDetector":
        self._check_params()
        vectors = read_vectors(X, self.needs_content, fitting=True)
        if len(vectors) < MIN_VECTORS:
            raise DataError(f"{self.name} needs at least {MIN_VECTORS} training vectors, got {len(vectors)}")
        if (vectors.matrix == vectors.matrix[0]).all():
            warnings.warn(f"all {len(vectors)} training vectors are the same: the model can only tell copies of it "
                          "from anything else", ConstantVectorsWarning, stacklevel=2)
        self._fit_encoded(vectors)
        self.dim_ = vectors.dim
        return self

    def decision_function(self, X) -> np.ndarray:
        return self._score_encoded(self._read(X))

    def explain(self, X) -> Explanation:
        """Scores and, for detectors with `explains`, each part's share of the score
        (`parts` names them: a statistic or a dimension)."""
        if not self.explains:
            raise DataError(f"{type(self).__name__} gives no per-part contributions")
        vectors = self._read(X)
        return Explanation(self._score_encoded(vectors), tuple(self._parts()),
                           np.asarray(self._explain_encoded(vectors), dtype=np.float64))

    def _read(self, X) -> Vectors:
        self._check_fitted("dim_")
        vectors = read_vectors(X, self.needs_content)
        if vectors.dim != self.dim_:
            raise DataError(f"the embeddings have {vectors.dim} dimensions, the model was fitted on {self.dim_}")
        return vectors

    # --- hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _fit_encoded(self, vectors: Vectors) -> None:
        """Learn from the training vectors (finite, within MAX_VALUE)."""

    @abstractmethod
    def _score_encoded(self, vectors: Vectors) -> np.ndarray:
        """One score per vector, higher = more anomalous."""

    def _explain_encoded(self, vectors: Vectors) -> np.ndarray:
        raise DataError(f"{type(self).__name__} gives no per-part contributions")

    def _parts(self) -> list[str]:
        return []

    @abstractmethod
    def _own_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The detector's arrays and JSON metadata."""

    @abstractmethod
    def _set_own_state(self, arrays: dict[str, np.ndarray], meta: dict, dim: int) -> None:
        """Restore `_own_state`; ModelFileError on anything unexpected."""

    # --- model file ----------------------------------------------------------------------
    def _get_state(self):
        self._check_fitted("dim_")
        arrays, meta = self._own_state()
        return arrays, {"dim": self.dim_, "detector": meta}

    def _set_state(self, arrays, meta):
        dim = meta.get("dim")
        if not (isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim <= 2**20):
            raise ModelFileError(f"model state: embedding size must be a positive integer, got {dim!r:.40}")
        detector_meta = meta.get("detector")
        if not isinstance(detector_meta, dict):
            raise ModelFileError("model state: the detector's metadata is missing")
        self._set_own_state(arrays, detector_meta, dim)
        self.dim_ = dim
