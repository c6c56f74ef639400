"""Typed results shared by every modality."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """What a detector says about a batch of items.

    `scores` are higher for more anomalous items; `labels` are 1 where `scores >= threshold`.
    `localization` says where inside an item the anomaly lies, in the modality's own terms:
    for images an N x H x W per-pixel anomaly map at the detector's working resolution; for
    detectors that only score whole items it is None.
    """

    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    localization: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_scores(
        cls, scores: np.ndarray, threshold: float, localization: np.ndarray | None = None
    ) -> "Prediction":
        scores = np.asarray(scores, dtype=np.float64)
        return cls(scores, (scores >= threshold).astype(np.int8), float(threshold), localization)
