"""The contract every registered detector keeps, as checks (in the spirit of scikit-learn's
estimator checks). `check_detector` runs them all on one detector with a modality's sample
data; the test suite runs it over every registry, so a new detector is checked by being
registered.

Save and load: a reloaded model's scores equal the original's to within SAVE_LOAD_RTOL
(relative; absolute for scores near 0). The arrays keep their values and layout, so on one
machine the scores are in practice bit-identical, but vector code in BLAS and numpy may sum in
a different order for differently aligned memory on another CPU: this is the guarantee.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sklearn.base import clone

from normalcy.core.detector import Detector
from normalcy.core.errors import NormalcyError, NotFittedError

SAVE_LOAD_RTOL = 1e-12


@dataclass
class Case:
    """A modality's sample data for the checks.

    fit: normal training items; test: items to score with labels (1 = anomaly, both kinds
    present); hostile: (description, items) pairs that must give finite scores or a
    NormalcyError, never another exception or a NaN score."""

    fit: Any
    test: Any
    labels: np.ndarray
    hostile: list[tuple[str, Any]] = field(default_factory=list)


def assert_same_scores(actual, expected, what: str = "scores") -> None:
    """The save/load guarantee: equal to within SAVE_LOAD_RTOL (NaN only where NaN)."""
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=SAVE_LOAD_RTOL, atol=SAVE_LOAD_RTOL, err_msg=what)


def check_detector(detector: Detector, case: Case, tmp_path: Path) -> None:
    """Run every check on an unfitted `detector`; AssertionError names the one that failed."""
    for check in CHECKS:
        check(clone(detector), case, tmp_path)


def check_clone_and_params(detector: Detector, case: Case, tmp_path: Path) -> None:
    params = detector.get_params(deep=False)
    twin = clone(detector)
    assert twin is not detector and twin.get_params(deep=False) == params, "clone keeps the parameters"
    assert detector.set_params(**params) is detector, "set_params returns self"
    assert not [k for k in vars(detector) if k.endswith("_") and not k.startswith("_")], \
        "the constructor learns nothing (no attributes ending in _)"


def check_not_fitted(detector: Detector, case: Case, tmp_path: Path) -> None:
    try:
        detector.decision_function(case.test)
    except NotFittedError:
        return
    raise AssertionError("decision_function before fit raises NotFittedError")


def check_fit_scores_and_labels(detector: Detector, case: Case, tmp_path: Path) -> None:
    assert detector.fit(case.fit) is detector, "fit returns self"
    scores = detector.decision_function(case.test)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(case.labels),), \
        f"decision_function gives one score per item, got {getattr(scores, 'shape', type(scores))}"
    assert np.isfinite(scores).all(), "scores are finite"
    auroc = detector.score(case.test, case.labels)
    assert isinstance(auroc, float) and 0.0 <= auroc <= 1.0, "score(X, y) is an AUROC"
    detector.set_threshold(float(np.median(scores)))
    labels = detector.predict(case.test)
    np.testing.assert_array_equal(labels, (scores >= np.median(scores)).astype(labels.dtype),
                                  err_msg="predict labels scores at the threshold")


def check_model_selection(detector: Detector, case: Case, tmp_path: Path) -> None:
    """scikit-learn's labelled scorers (what GridSearchCV and cross_val_score call) work."""
    from sklearn.metrics import get_scorer, roc_auc_score

    detector.fit(case.fit)
    expected = roc_auc_score(case.labels, detector.decision_function(case.test))
    assert math.isclose(get_scorer("roc_auc")(detector, case.test, case.labels), expected, rel_tol=1e-12), \
        "the roc_auc scorer gives the AUROC of decision_function"
    assert math.isclose(detector.score(case.test, case.labels), expected, rel_tol=1e-12), "score(X, y) is the AUROC"


def check_scoring_changes_nothing(detector: Detector, case: Case, tmp_path: Path) -> None:
    detector.fit(case.fit)
    before_arrays, before_meta = copy.deepcopy(detector._get_state())
    first = detector.decision_function(case.test)
    after_arrays, after_meta = detector._get_state()
    assert before_meta == after_meta and set(before_arrays) == set(after_arrays), "scoring keeps the state"
    for name in before_arrays:
        np.testing.assert_array_equal(after_arrays[name], before_arrays[name], err_msg=f"scoring changed {name}")
    np.testing.assert_array_equal(detector.decision_function(case.test), first,
                                  err_msg="scoring twice gives the same scores")


def check_save_load(detector: Detector, case: Case, tmp_path: Path) -> None:
    from normalcy.core.modelfile import load

    detector.fit(case.fit).set_threshold(1.5)
    path = detector.save(tmp_path / f"contract-{type(detector).__name__}")
    again = load(path)
    assert type(again) is type(detector) and again.get_params() == detector.get_params(), "same class and params"
    assert again.threshold_ == detector.threshold_, "same threshold"
    assert_same_scores(again.decision_function(case.test), detector.decision_function(case.test),
                       "a reloaded model's scores")


def check_hostile_input(detector: Detector, case: Case, tmp_path: Path) -> None:
    detector.fit(case.fit)
    for what, items in case.hostile:
        try:
            scores = detector.decision_function(items)
        except NormalcyError:
            continue
        except Exception as exc:  # noqa: BLE001 - the check is that nothing else escapes
            raise AssertionError(f"{what}: raised {type(exc).__name__}: {exc} instead of a clear error") from exc
        assert np.isfinite(np.asarray(scores, dtype=np.float64)).all(), f"{what}: gave non-finite scores"


def check_hostile_fit(detector: Detector, case: Case, tmp_path: Path) -> None:
    for what, items in case.hostile:
        try:
            clone(detector).fit(items)
        except NormalcyError:
            continue
        except Exception as exc:  # noqa: BLE001
            raise AssertionError(f"fit on {what}: raised {type(exc).__name__}: {exc} instead of a clear error") from exc
        fitted = clone(detector).fit(items)
        try:
            scores = fitted.decision_function(case.test)
        except NormalcyError:
            continue
        assert np.isfinite(scores).all(), f"fit on {what}: later scores are not finite"


CHECKS: list[Callable[[Detector, Case, Path], None]] = [
    check_clone_and_params, check_not_fitted, check_fit_scores_and_labels, check_model_selection,
    check_scoring_changes_nothing,
    check_save_load, check_hostile_input, check_hostile_fit,
]
