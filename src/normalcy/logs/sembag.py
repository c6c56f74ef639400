"""A window-level detector on pooled template vectors (`semantic-bag`): each group (a session
or a time window) is the mean of its events' sentence embeddings, a point in the embedding
space that moves with the group's mix of messages; a table detector (`normalcy.tabular`, kNN
by default) learns the normal points. An unseen template moves the point by what it means:
little when it resembles the templates it replaces, much when it is of a new kind. Its
distance to the known templates also enters the score directly (`normalcy.logs.semantic`).
"""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.registry import build, check_params, detector_class
from normalcy.logs.semantic import DEFAULT, SemanticDetector

PREFIX = "sembag."


class SemanticBag(SemanticDetector):
    """The mean template embedding of each group, scored by a table detector; combined with
    the group's unseen templates' distance to the known ones (`normalcy.logs.semantic`).

    Parameters:
        embedder: "all-MiniLM-L6-v2" (bundled), "hashing" (lexical, no model) or a local
            sentence-transformers folder.
        model: the table detector on the pooled vectors, by name (`normalcy table models`) ("knn").
        options: the table detector's parameters, e.g. {"n_neighbors": 3} (None: its defaults).
        holdout: share of the training groups held out to set the model score's scale (0.1;
            none with fewer than 10 groups).
        cache_dir: folder that keeps template embeddings between runs (None: memory only).
        threads: CPU threads for the embedder (1).
        seed: seed of the holdout (0).
        level_weights: log level -> weight of the unseen-template distance of its lines, e.g.
            {"INFO": 0.5} (None: 1 for all; `normalcy.logs.history` learns them from labelled
            history).
    """

    name = "semantic-bag"
    min_groups = 2

    def __init__(self, embedder: str = DEFAULT, model: str = "knn", options: dict | None = None,
                 holdout: float = 0.1, cache_dir: str | None = None, threads: int | None = 1, seed: int = 0,
                 level_weights: dict | None = None):
        self.embedder = embedder
        self.model = model
        self.options = options
        self.holdout = holdout
        self.cache_dir = cache_dir
        self.threads = threads
        self.seed = seed
        self.level_weights = level_weights

    def _check_params(self):
        self._check_semantic_params()
        self._table_detector()._check_params()

    def _table_detector(self):
        if not isinstance(self.model, str):
            raise DataError(f"{self.name} model must be a table detector's name, got {self.model!r}")
        if self.options is not None and not isinstance(self.options, dict):
            raise DataError(f"{self.name} options must be a dict of the table detector's parameters, got "
                            f"{type(self.options).__name__}")
        cls = detector_class("tabular", self.model)
        check_params(cls, dict(self.options or {}))
        return build("tabular", self.model, self.options)

    @staticmethod
    def _pooled(seqs, lookup) -> np.ndarray:
        return np.stack([lookup.vectors(seq).mean(axis=0) for seq in seqs]).astype(np.float64)

    def _fit_model(self, seqs, lookup, held):
        self.table_ = self._table_detector().fit_matrix(self._pooled(seqs, lookup), unit="groups")

    def _model_scores(self, seqs, lookup):
        self._check_fitted("table_")
        return np.maximum(self.table_.score_matrix(self._pooled(seqs, lookup)), 0.0)

    def _model_reason(self):
        return f"{self.model} score of the group's mean template embedding"

    def _model_state(self):
        self._check_fitted("table_")
        arrays, meta = self.table_.matrix_state()
        return {f"{PREFIX}{k}": v for k, v in arrays.items()}, {"table": meta}

    def _set_model_state(self, arrays, meta):
        table = self._table_detector()
        own = {k[len(PREFIX):]: v for k, v in arrays.items() if k.startswith(PREFIX)}
        self.table_ = table.set_matrix_state(own, meta.get("table", {}), self.vectors_.shape[1])
