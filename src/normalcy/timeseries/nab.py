"""The Numenta Anomaly Benchmark's scoring, reimplemented (NAB v1.1, nab/sweeper.py).

Each reading after the probationary period (the first 15 % of a file, at most 750 rows) gets a
weight. Inside a labelled window at index i, with the window's right edge r and width w, the
relative position is p = -(r - i + 1) / w and the weight is tp * S(p) / S(-1), where
S(p) = 2 / (1 + exp(5 p)) - 1 (S(p) = -1 for p >= 3): 1 for detecting at the window's left
edge, near 0 at its right edge. After a window, p = |i - r_prev| / (w_prev - 1) and the weight
is fp * S(p), so a false alarm just after a window costs little and one far away costs fp;
before any window it costs fp. A window's score is the best (earliest) detection in it, or
-fn when nothing in it is flagged; false alarms add up. A reading is flagged when its score is
at least the threshold, and one threshold is chosen for the whole corpus to maximise the
total. The reported score is 100 * (raw - null) / (perfect - null), where the null detector
flags nothing (-fn per window) and the perfect one flags each window's first scorable reading.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError

PROFILES = {
    "standard": {"tp": 1.0, "fp": 0.11, "fn": 1.0},
    "reward_low_FP_rate": {"tp": 1.0, "fp": 0.22, "fn": 1.0},
    "reward_low_FN_rate": {"tp": 1.0, "fp": 0.11, "fn": 2.0},
}
PROBATION = 0.15


def scaled_sigmoid(position: float) -> float:
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def probation_length(n: int, fraction: float = PROBATION) -> int:
    # NAB caps the period at fraction * 5000 rows and compares indices against it, so a
    # fractional cap behaves as its ceiling.
    return int(math.ceil(min(math.floor(fraction * n), fraction * 5000)))


@dataclass(frozen=True)
class ScoredFile:
    """A file's scorable readings: the detector's score, the weight a detection there earns,
    and the window it lies in (-1 outside any window)."""

    scores: np.ndarray
    weights: np.ndarray
    window: np.ndarray
    n_windows: int


def weigh_file(scores, windows: list[tuple[int, int]], profile: dict, probation: float = PROBATION) -> ScoredFile:
    """Weights of one file's readings; `windows` are inclusive (start, end) row indices."""
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if not np.isfinite(scores).all():
        raise DataError("NAB scoring needs finite anomaly scores (found NaN or infinity)")
    windows = sorted((int(a), int(b)) for a, b in windows)
    for a, b in windows:
        if not 0 <= a <= b < n:
            raise DataError(f"label window ({a}, {b}) is outside the series of {n} readings")
    max_tp = scaled_sigmoid(-1.0)
    weights = np.empty(n)
    window = np.full(n, -1)
    prev_right = prev_width = None
    k = 0
    i = 0
    while i < n:
        if k < len(windows) and i == windows[k][0]:
            a, b = windows[k]
            width = b - a + 1
            idx = np.arange(a, b + 1)
            weights[a : b + 1] = [scaled_sigmoid(-(b - j + 1) / width) * profile["tp"] / max_tp for j in idx]
            window[a : b + 1] = k
            prev_right, prev_width = b, width
            k += 1
            i = b + 1
            continue
        stop = windows[k][0] if k < len(windows) else n
        if prev_right is None or prev_width <= 1:
            weights[i:stop] = -profile["fp"]
        else:
            weights[i:stop] = [scaled_sigmoid(abs(prev_right - j) / (prev_width - 1)) * profile["fp"] for j in range(i, stop)]
        i = stop
    keep = np.arange(n) >= probation_length(n, probation)
    kept_windows = np.unique(window[keep & (window >= 0)])
    remap = {int(w): j for j, w in enumerate(kept_windows)}
    return ScoredFile(scores[keep], weights[keep], np.array([remap.get(int(w), -1) for w in window[keep]], dtype=int),
                      len(kept_windows))


def sweep(files: list[ScoredFile], fn: float) -> tuple[float, float]:
    """(best threshold, raw score) over every threshold, one threshold for all files."""
    offsets = np.cumsum([0] + [f.n_windows for f in files])
    scores = np.concatenate([f.scores for f in files])
    weights = np.concatenate([f.weights for f in files])
    window = np.concatenate([np.where(f.window >= 0, f.window + o, -1) for f, o in zip(files, offsets)])
    n_windows = int(offsets[-1])
    order = np.argsort(-scores, kind="stable")
    frame = pd.DataFrame({"w": window[order], "v": weights[order]})
    inside = frame["w"].to_numpy() >= 0
    # A window's part is the best weight flagged in it so far (at least -fn): the gain of each
    # newly flagged reading is the rise of that running maximum; a false alarm adds its weight.
    best = frame["v"].where(inside).clip(lower=-fn).groupby(frame["w"]).cummax()
    before = best.groupby(frame["w"]).shift(1).fillna(-fn)
    gain = np.where(inside, (best - before).to_numpy(), frame["v"].to_numpy())
    totals = -fn * n_windows + np.cumsum(gain)
    sorted_scores = scores[order]
    # Ties flag together: the total at a threshold is the one after its last tied reading.
    last = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    candidates = np.r_[-fn * n_windows, totals[last]]
    thresholds = np.r_[np.inf, sorted_scores[last]]
    j = int(np.argmax(candidates))
    return float(thresholds[j]), float(candidates[j])


def raw_score(files: list[ScoredFile], threshold: float, fn: float) -> float:
    """The raw NAB score of all files at one threshold."""
    total = 0.0
    for f in files:
        hit = f.scores >= threshold
        total += float(f.weights[hit & (f.window < 0)].sum())
        for w in range(f.n_windows):
            flagged = f.weights[hit & (f.window == w)]
            total += max(-fn, float(flagged.max())) if flagged.size else -fn
    return total


def nab_scores(runs: list[tuple[np.ndarray, list[tuple[int, int]]]], probation: float = PROBATION) -> dict:
    """Normalised NAB scores per profile for one detector's (scores, windows) on each file."""
    out = {}
    for name, profile in PROFILES.items():
        files = [weigh_file(s, w, profile, probation) for s, w in runs]
        threshold, raw = sweep(files, profile["fn"])
        perfect = sum(_perfect(f) for f in files)
        null = -profile["fn"] * sum(f.n_windows for f in files)
        out[name] = {"score": 100.0 * (raw - null) / (perfect - null) if perfect > null else 0.0,
                     "threshold": threshold, "raw": raw}
    return out


def _perfect(f: ScoredFile) -> float:
    return float(sum(f.weights[np.flatnonzero(f.window == w)[0]] for w in range(f.n_windows)))


# --- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NabFile:
    name: str  # e.g. realKnownCause/nyc_taxi.csv
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]]  # inclusive row indices


def load_corpus(root: str | Path) -> list[NabFile]:
    """Every file under root/data with its windows from root/labels/combined_windows.json."""
    root = Path(root)
    labels_file = root / "labels" / "combined_windows.json"
    if not labels_file.is_file():
        raise DataError(f"{root} is not a NAB folder: {labels_file} is missing")
    try:
        labels = json.loads(labels_file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {labels_file}: {exc}") from exc
    files = []
    for name in sorted(labels):
        path = root / "data" / name
        if not path.is_file():
            raise DataError(f"{labels_file} names {name}, but {path} does not exist")
        frame = pd.read_csv(path)
        times = pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]")
        windows = []
        for start, end in labels[name]:
            a = int(np.searchsorted(times, np.datetime64(pd.Timestamp(start)), side="left"))
            b = int(np.searchsorted(times, np.datetime64(pd.Timestamp(end)), side="right")) - 1
            if a <= b:
                windows.append((a, b))
        files.append(NabFile(name, times, frame["value"].to_numpy(dtype=np.float64), windows))
    if not files:
        raise DataError(f"{labels_file} lists no files")
    return files
