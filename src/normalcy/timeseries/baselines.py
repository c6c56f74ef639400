"""The benchmark's baselines: what a detector must beat to be worth running. Each scores a
test part from its training part alone and learns nothing from the test part.

- `zscore`: each reading's distance from the training mean in training standard deviations
  (the largest over the variables).
- `constant`: one score for every reading; it ranks nothing, so range-aware metrics show what
  they give for free (PATE about 0.5 on some series).
- `random`: uniform random scores, seeded per series.
- `ab-join`: the matrix-profile AB-join of the test part against the training part: each
  subsequence's distance to its nearest training subsequence, the window being the training
  data's period (`join.period`), scored at the reading that ends it; several variables are put
  in the units of `SubsequenceJoin` and the largest is taken.
"""

from __future__ import annotations

import zlib

import numpy as np

from normalcy.timeseries.join import nearest, period
from normalcy.timeseries.matrixprofile import exclusion_zone


def zscore(train: np.ndarray, test: np.ndarray, name: str = "") -> np.ndarray:
    mean, std = train.mean(axis=0), train.std(axis=0)
    return (np.abs(test - mean) / np.maximum(std, 1e-9 * (np.abs(mean) + 1.0))).max(axis=1)


def constant(train: np.ndarray, test: np.ndarray, name: str = "") -> np.ndarray:
    return np.zeros(len(test))


def random(train: np.ndarray, test: np.ndarray, name: str = "") -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).random(len(test))


def ab_join(train: np.ndarray, test: np.ndarray, name: str = "") -> np.ndarray:
    m = max(2, min(period(train), len(train) // 2))
    readings = np.vstack([train, test])
    ends = len(train) + np.arange(len(test))
    # training subsequences only, outside the trivial-match zone of a query that starts in them
    first = np.zeros(len(test), dtype=np.int64)
    last = np.minimum(len(train) - m, ends - m - exclusion_zone(m))
    steps = np.sqrt(m * np.mean(np.diff(train, axis=0) ** 2, axis=0)) if len(train) > 1 else np.ones(train.shape[1])
    distances = np.column_stack([nearest(readings[:, j], ends, first, last, m, False) for j in range(train.shape[1])])
    return (distances / np.maximum(steps, 1e-12)).max(axis=1)


BASELINES = {"zscore": zscore, "constant": constant, "random": random, "ab-join": ab_join}
