"""Typed results shared by every modality: predictions, explanations and calibrations."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from normalcy.core.errors import ModelFileError


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


@dataclass(frozen=True)
class Explanation:
    """Why each of n items scored as it did, in one shape for every modality.

    - `parts`: the names of what an item is made of (table columns, series variables, pairs of
      event entities, log events); `contributions` (n x len(parts)) says how much each added to
      the item's score, larger = more to blame. `top()` names the worst parts per item.
    - `evidence`: per item, readable reasons (the nearest training text, a broken invariant ...).
    - `localization`: where inside an item, for images an n x H x W map.
    Any of the three may be absent (None or empty) when the detector cannot say.
    """

    scores: np.ndarray
    parts: tuple[str, ...] = ()
    contributions: np.ndarray | None = None
    evidence: list[list[str]] | None = None
    localization: np.ndarray | None = None

    def __post_init__(self):
        if self.contributions is not None and self.contributions.shape != (len(self.scores), len(self.parts)):
            raise ValueError(f"contributions of shape {self.contributions.shape} do not match "
                             f"{len(self.scores)} items x {len(self.parts)} parts")

    def __len__(self) -> int:
        return len(self.scores)

    def top(self, k: int = 1) -> list[list[str]]:
        """Per item, the names of the k parts that contributed most (largest first)."""
        if self.contributions is None:
            return [[] for _ in range(len(self))]
        order = np.argsort(-self.contributions, axis=1, kind="stable")[:, :k]
        return [[self.parts[j] for j in row] for row in order]

    def frame(self):
        """The contributions as a pandas DataFrame, items x parts."""
        import pandas as pd

        if self.contributions is None:
            raise ValueError("this explanation has no per-part contributions")
        return pd.DataFrame(self.contributions, columns=list(self.parts))


@dataclass(frozen=True)
class Calibration:
    """How a threshold was set: by which rule, from how many held-out items, which share of
    the normal ones it flags (`flagged`, on those same items) and any caveat (`note`), e.g.
    too few items to resolve the requested false-alarm rate."""

    rule: str
    threshold: float
    n_items: int = 0
    flagged: float | None = None
    method: str = ""
    note: str | None = None

    def describe(self, unit: str = "items") -> str:
        """One line for people, e.g. 'fpr:0.01 from 40 held-out rows (flags 0.0% of them)'."""
        if not self.n_items:
            return f"{self.rule}" + (f", {self.method}" if self.method else "")
        text = f"{self.rule} from {self.n_items} held-out {unit}"
        if self.method:
            text += f", {self.method}"
        if self.flagged is not None:
            text += f"; flags {100 * self.flagged:.1f}% of them"
        return text

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> "Calibration":
        """From a manifest; ModelFileError on anything but the fields above with their types."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or not set(data) <= names or not {"rule", "threshold"} <= set(data):
            raise ModelFileError(f"calibration must be an object with fields {', '.join(sorted(names))}")
        ok = (isinstance(data["rule"], str) and _number(data["threshold"])
              and isinstance(data.get("n_items", 0), int) and not isinstance(data.get("n_items", 0), bool)
              and data.get("n_items", 0) >= 0
              and (data.get("flagged") is None or _number(data["flagged"]))
              and isinstance(data.get("method", ""), str)
              and (data.get("note") is None or isinstance(data["note"], str)))
        if not ok:
            raise ModelFileError(f"calibration fields have the wrong types: {data!r:.200}")
        return cls(**data)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
