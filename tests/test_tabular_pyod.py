"""PyOD as the oracle: our shared detectors, given the same encoded rows, rank like PyOD's
implementations of the same methods (scores equal up to a monotone map where the formulas are
the same, close rankings where they deliberately differ)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from normalcy.tabular import COPOD, ECOD, HBOS, KNN, LOF, IsolationForest

pyod = pytest.importorskip("pyod")
from pyod.models.copod import COPOD as PyodCOPOD  # noqa: E402
from pyod.models.ecod import ECOD as PyodECOD  # noqa: E402
from pyod.models.hbos import HBOS as PyodHBOS  # noqa: E402
from pyod.models.iforest import IForest as PyodIForest  # noqa: E402
from pyod.models.knn import KNN as PyodKNN  # noqa: E402
from pyod.models.lof import LOF as PyodLOF  # noqa: E402


@pytest.fixture(scope="module")
def table():
    """Skewed, correlated columns with planted outliers; labels 1 for the outliers."""
    rng = np.random.default_rng(7)
    base = rng.normal(size=(500, 2))
    X = np.column_stack([base[:, 0], np.exp(base[:, 1] / 2), base[:, 0] - base[:, 1] + 0.3 * rng.normal(size=500),
                         rng.gamma(2.0, size=500)])
    X[:25] += rng.choice([-4.0, 4.0], size=(25, 4)) * (rng.random((25, 4)) < 0.5)
    y = np.r_[np.ones(25), np.zeros(475)]
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), y


# (ours, PyOD's with the same hyper-parameters, least Spearman correlation of the scores)
PAIRS = {
    "ecod": (ECOD, PyodECOD, 0.999),
    "copod": (COPOD, PyodCOPOD, 0.999),
    "hbos": (lambda: HBOS(n_bins=10, alpha=0.1), lambda: PyodHBOS(n_bins=10, alpha=0.1), 0.99),
    "knn": (lambda: KNN(n_neighbors=5), lambda: PyodKNN(n_neighbors=5, method="largest"), 0.99999),
    "lof": (lambda: LOF(n_neighbors=20), lambda: PyodLOF(n_neighbors=20), 0.99999),
    "iforest": (lambda: IsolationForest(seed=0), lambda: PyodIForest(random_state=0), 0.99999),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_unsupervised_scores_rank_like_pyods(name, table):
    """ADBench's protocol: fit on all rows, score the same rows."""
    X, y = table
    make_ours, make_theirs, min_rho = PAIRS[name]
    ours = make_ours().fit(X)
    Z = ours.encoder_.transform(X)
    theirs = make_theirs().fit(Z)
    mine, reference = ours.decision_function(X), theirs.decision_function(Z)
    assert spearmanr(mine, reference).statistic >= min_rho
    assert abs(roc_auc_score(y, mine) - roc_auc_score(y, reference)) <= 0.01


@pytest.mark.parametrize("name", ["knn", "lof", "iforest"])
def test_new_rows_score_like_pyods(name, table):
    """Scoring rows not fitted on: the neighbour and forest detectors agree with PyOD exactly in
    ranking (ECOD/COPOD differ on purpose there: PyOD re-fits the ECDF on the scored rows)."""
    X, _ = table
    make_ours, make_theirs, min_rho = PAIRS[name]
    ours = make_ours().fit(X.iloc[100:])
    theirs = make_theirs().fit(ours.encoder_.transform(X.iloc[100:]))
    new = X.iloc[:100]
    reference = theirs.decision_function(ours.encoder_.transform(new))
    assert spearmanr(ours.decision_function(new), reference).statistic >= min_rho


def test_knn_and_lof_scores_equal_pyods(table):
    X, _ = table
    for make_ours, make_theirs, _ in (PAIRS["knn"], PAIRS["lof"]):
        ours = make_ours().fit(X)
        Z = ours.encoder_.transform(X)
        np.testing.assert_allclose(ours.decision_function(X), make_theirs().fit(Z).decision_function(Z), rtol=1e-4)
