"""Table detectors as scikit-learn estimators (issue 12, "one contract"): clone, get_params,
a Pipeline, GridSearchCV with an AUROC scorer and cross_val_score work, and give the figures
computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from normalcy.core.registry import detectors
from normalcy.tabular import KNN, Ensemble, IsolationForest

CV = StratifiedKFold(3, shuffle=True, random_state=0)


@pytest.fixture(scope="module")
def labelled():
    """A numpy matrix of mostly normal rows and 5% planted outliers, labels 1 for those."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(240, 4)) * [1.0, 10.0, 0.1, 1.0]
    y = np.zeros(240, dtype=int)
    y[::20] = 1
    X[y == 1] += rng.choice([-5.0, 5.0], size=(12, 4)) * [1.0, 10.0, 0.1, 1.0]
    return X, y


@pytest.mark.parametrize("name", list(detectors("tabular")))
def test_clone_and_get_params_round_trip(name):
    detector = detectors("tabular")[name]()
    params = detector.get_params()
    twin = clone(detector)
    assert type(twin) is type(detector) and twin is not detector and twin.get_params() == params
    assert clone(KNN(n_neighbors=3)).n_neighbors == 3


def test_a_pipeline_scales_then_scores(labelled):
    X, y = labelled
    pipeline = make_pipeline(StandardScaler(), KNN(n_neighbors=3)).fit(X)
    scaled = StandardScaler().fit_transform(X)
    by_hand = KNN(n_neighbors=3).fit(scaled)
    np.testing.assert_allclose(pipeline.decision_function(X), by_hand.decision_function(scaled))
    assert pipeline.score(X, y) == pytest.approx(roc_auc_score(y, pipeline.decision_function(X)))
    np.testing.assert_array_equal(pipeline.named_steps["knn"].set_threshold(1.0).predict(scaled),
                                  (pipeline.decision_function(X) >= 1.0).astype(np.int8))


def test_grid_search_over_a_parameter_with_the_roc_auc_scorer(labelled):
    X, y = labelled
    search = GridSearchCV(KNN(), {"n_neighbors": [1, 5, 20]}, scoring="roc_auc", cv=CV).fit(X, y)
    by_hand = {}
    for k in (1, 5, 20):
        folds = [roc_auc_score(y[test], KNN(n_neighbors=k).fit(X[train]).decision_function(X[test]))
                 for train, test in CV.split(X, y)]
        by_hand[k] = np.mean(folds)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], [by_hand[1], by_hand[5], by_hand[20]])
    assert search.best_params_ == {"n_neighbors": max(by_hand, key=by_hand.get)}
    assert isinstance(search.best_estimator_, KNN) and search.best_score_ > 0.8


def test_grid_search_through_a_pipeline(labelled):
    X, y = labelled
    pipeline = make_pipeline(StandardScaler(), IsolationForest(n_estimators=20))
    search = GridSearchCV(pipeline, {"isolationforest__max_features": [0.5, 1.0]}, scoring="roc_auc", cv=CV)
    assert search.fit(X, y).best_score_ > 0.8


def test_cross_val_score_uses_score_as_the_auroc(labelled):
    X, y = labelled
    scores = cross_val_score(Ensemble(members=["knn", "ecod"]), X, y, cv=CV)
    expected = [roc_auc_score(y[test], Ensemble(members=["knn", "ecod"]).fit(X[train]).decision_function(X[test]))
                for train, test in CV.split(X, y)]
    np.testing.assert_allclose(scores, expected)
