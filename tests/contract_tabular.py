"""Sample data for the detector contract (tests/test_contract.py) over the table detectors: a
few correlated numeric columns and a categorical one, test rows with planted outliers, and
hostile tables (NaN, infinity, near-DBL_MAX values, empty, one row, a text cell, wrong types)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from normalcy.core.checks import Case

# Small forests and neighbourhoods keep the checks fast; the defaults are exercised elsewhere.
PARAMS = {"iforest": {"n_estimators": 10}, "lof": {"n_neighbors": 5}, "ensemble": {"members": ["knn", "ecod", "pca"]}}


def rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    base = rng.normal(size=n)
    frame = pd.DataFrame({"a": base, "b": base + 0.3 * rng.normal(size=n), "c": rng.normal(size=n)})
    frame["colour"] = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    return frame


def case() -> Case:
    rng = np.random.default_rng(11)
    fit = rows(rng, 60)
    normal, outliers = rows(rng, 12), rows(rng, 6)
    outliers[["a", "c"]] += 9.0
    test = pd.concat([normal, outliers], ignore_index=True)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(outliers))].astype(int)
    with_nan = test.copy()
    with_nan.loc[[0, 3], "a"] = np.nan
    with_nan.loc[1, "colour"] = None
    huge = test.copy()
    huge.loc[0, "a"], huge.loc[1, "c"] = 1.7e308, -1e308
    infinite = test.copy()
    infinite.loc[4, "a"] = np.inf
    surrogate = test.astype({"colour": object})
    surrogate.loc[5, "colour"] = "\ud800"
    text_cell = test.astype({"b": object})
    text_cell.loc[2, "b"] = "n/a?"
    return Case(fit=fit, test=test, labels=labels, hostile=[
        ("NaN and missing categories", with_nan),
        ("infinity", infinite),
        ("values near DBL_MAX", huge),
        ("an empty table", test.iloc[:0]),
        ("one row", test.iloc[:1]),
        ("a constant table", pd.DataFrame({"a": [1.0] * 10, "b": [2.0] * 10, "c": [0.0] * 10,
                                           "colour": ["red"] * 10})),
        ("a text cell in a numeric column", text_cell),
        ("a lone surrogate in a category", surrogate),
        ("a missing column", test.drop(columns=["colour"])),
        ("a dict", {"a": [1.0]}),
        ("a 3-d array", np.zeros((2, 2, 2))),
    ])
