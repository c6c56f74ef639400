"""Sample data for the detector contract (tests/test_contract.py) on the time-series registry:
two variables, a seasonal one and a noisy level, with a spike and a level shift in the part
that is scored, and the hostile inputs the reading policy covers (docs/timeseries.md)."""

from __future__ import annotations

import numpy as np

from normalcy.core.checks import Case
from normalcy.timeseries.data import MAX_READING

FIT, TEST = 240, 100

# Small memories keep the checks fast; multiscale-novelty's windows must fit its history.
# Lists, not tuples: parameters go through a model file's JSON and must come back equal.
PARAMS = {
    "multiscale-novelty": {"history": 120, "windows": [1, 5, 20], "tolerances": [0.002, 0.02, 0.05],
                           "spread_window": 20, "rearm": 30},
    "range-novelty": {"history": 120},
    "rolling-mad": {"history": 60, "likelihood_window": 200},
    "spectral-residual": {"history": 32, "warmup": 16},
    "gbt-forecast": {"history": 150, "n_estimators": 10, "refit_every": 100, "likelihood_window": 200},
    "matrix-profile": {"history": 80, "window": 8, "likelihood_window": 200},
    "window-pca": {"history": 80, "window": 8, "likelihood_window": 200},
    "subsequence-join": {"history": 80, "window": 8, "likelihood_window": 200},
}
# The trained window models: tiny networks, a few training steps (tests/test_ts_deep.py uses these).
TRAINED = {"window": 10, "epochs": 1, "max_steps": 3, "min_train": 40, "history": 120, "likelihood_window": 200}
GAN = {**TRAINED, "patch": 5, "hidden": 4, "latent": 3, "channels": 4, "n_critic": 1}
PARAMS |= {"tadgan": {**GAN, "score_window": 4}, "hypad": GAN, "oraclead": {**TRAINED, "hidden": 4, "heads": 1},
           "themis": {**TRAINED, "channels": 4, "dim": 4, "reference": 50, "neighbors": 5}}


def case() -> Case:
    rng = np.random.default_rng(20)
    t = np.arange(FIT + TEST)
    x = np.c_[np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=t.size), 5 + 0.1 * rng.normal(size=t.size)]
    labels = np.zeros(TEST, dtype=int)
    x[FIT + 40, 1] += 4.0  # a spike
    labels[40] = 1
    x[FIT + 80 :, 0] += 3.0  # a level shift
    labels[80:85] = 1
    fit, test = x[:FIT], x[FIT:]
    with_nan = test.copy()
    with_nan[10, 0] = np.nan
    hostile = [
        ("a missing reading (NaN)", with_nan),
        ("every reading missing", np.full((20, 2), np.nan)),
        ("infinity", np.where(np.arange(TEST)[:, None] == 7, np.inf, test)),
        ("minus infinity", np.where(np.arange(TEST)[:, None] == 7, -np.inf, test)),
        ("1e308", np.where(np.arange(TEST)[:, None] == 7, 1e308, test)),
        ("the largest readings accepted", np.where(np.arange(TEST)[:, None] % 2, MAX_READING, -MAX_READING)),
        ("an empty series", np.empty((0, 2))),
        ("one reading", test[:1]),
        ("three variables", np.zeros((10, 3))),
        ("text", [["a", "b"], ["c", "d"]]),
        ("a 3-d array", np.zeros((4, 2, 2))),
        ("a dict", {"x0": 1.0}),
        ("None", None),
    ]
    return Case(fit=fit, test=test, labels=labels, hostile=hostile)
