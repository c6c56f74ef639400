"""Log detectors on generated sessions: each flags its planted anomaly, keeps normal sessions
below its threshold, says why, and survives a save and load.

Normal sessions: open (1), k times write (2) + ack (5) with k in 0..3, at most one retry
(6), close (3). So count(1) == count(3) and count(2) == count(5) always hold.
"""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core import load
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError
from normalcy.logs import DeepLog, InvariantsMining, LogClustering, PCA, SemanticBag, SemanticSequence, UnseenTemplates
from normalcy.logs.pca import q_statistic

STRAY_WRITES = [2, 2, 2, 2, 2, 2]  # writes with no open, ack or close
UNACKED_WRITES = [1, 2, 2, 2, 3]
NO_CLOSE = [1, 2, 5, 2, 5]
UNSEEN = [1, 2, 5, 9, 3]
OUT_OF_ORDER = [1, 5, 2, 3]


def normal_session(rng: np.random.Generator) -> list[int]:
    seq = [1]
    for _ in range(int(rng.integers(0, 4))):
        seq += [2, 5]
    if rng.random() < 0.3:
        seq.insert(int(rng.integers(1, len(seq) + 1)), 6)
    return seq + [3]


@pytest.fixture(scope="module")
def sessions():
    rng = np.random.default_rng(3)
    return [normal_session(rng) for _ in range(300)], [normal_session(rng) for _ in range(100)]


CASES = [
    (PCA, {}, UNACKED_WRITES),
    (InvariantsMining, {}, NO_CLOSE),
    (LogClustering, {}, STRAY_WRITES),
    (UnseenTemplates, {}, UNSEEN),
    (DeepLog, dict(top_k=3, hidden=16, layers=1, embedding=8, epochs=40, batch_size=64, lr=0.02), OUT_OF_ORDER),
]


@pytest.fixture(scope="module")
def fitted(sessions):
    return {cls: cls(**params).fit(sessions[0]) for cls, params, _ in CASES}


@pytest.mark.parametrize("cls,params,anomaly", CASES, ids=[c[0].__name__ for c in CASES])
def test_flags_planted_anomaly_and_not_normal_sessions(fitted, sessions, cls, params, anomaly):
    detector = fitted[cls]
    assert detector.predict(sessions[1]).mean() <= 0.02
    flagged = detector.detect([anomaly])
    assert flagged.labels[0] == 1 and flagged.scores[0] > detector.decision_function(sessions[1]).max()
    explanation, blame = detector.explain_blame([anomaly])
    assert blame[0].events and explanation.evidence[0] == blame[0].reasons and blame[0].reasons
    assert all(0 <= p < len(anomaly) for p in blame[0].positions)


@pytest.mark.parametrize("cls,params,anomaly", CASES, ids=[c[0].__name__ for c in CASES])
def test_the_threshold_is_the_detectors_own_rule_and_says_so(fitted, cls, params, anomaly):
    calibration = fitted[cls].calibration_
    assert calibration.threshold == fitted[cls].threshold_ and calibration.n_items == 0
    assert calibration.rule == {PCA: "Q-statistic at c_alpha 3.2905", InvariantsMining: "one broken invariant",
                                LogClustering: "cosine distance 0.3", UnseenTemplates: "one unseen event",
                                DeepLog: "an event outside the top 3"}[cls]


@pytest.mark.parametrize("cls", [PCA, InvariantsMining, LogClustering, UnseenTemplates])
def test_contributions_of_the_events_add_up_to_the_score(fitted, sessions, cls):
    probe = sessions[1][:10] + [case[2] for case in CASES]
    explanation = fitted[cls].explain(probe)
    assert explanation.parts == ("E1", "E2", "E3", "E5", "E6", "unseen")
    np.testing.assert_allclose(explanation.contributions.sum(axis=1), explanation.scores, atol=1e-9)
    np.testing.assert_allclose(explanation.scores, fitted[cls].decision_function(probe))


def test_the_event_to_blame_has_the_largest_contribution(fitted):
    assert fitted[UnseenTemplates].explain([UNSEEN]).top() == [["unseen"]]
    assert fitted[PCA].explain([UNACKED_WRITES]).top() == [["E2"]]  # writes without acks
    assert set(fitted[InvariantsMining].explain([NO_CLOSE]).top(2)[0]) == {"E1", "E3"}  # opened, never closed


@pytest.mark.parametrize("cls,params,anomaly", CASES, ids=[c[0].__name__ for c in CASES])
def test_save_load_gives_the_same_scores(fitted, sessions, tmp_path, cls, params, anomaly):
    probe = sessions[1][:20] + [anomaly, UNSEEN]
    again = load(fitted[cls].save(tmp_path / "m"))
    assert type(again) is cls and again.threshold_ == fitted[cls].threshold_
    assert again.calibration_ == fitted[cls].calibration_
    assert_same_scores(again.decision_function(probe), fitted[cls].decision_function(probe))


def test_invariants_mining_finds_the_planted_invariants(fitted):
    found = fitted[InvariantsMining].invariant_strings
    assert "count(E1) - count(E3) == 0" in found
    assert "count(E2) - count(E5) == 0" in found
    assert "count(unseen) == 0" in found
    explanation, blame = fitted[InvariantsMining].explain_blame([NO_CLOSE])
    assert blame[0].events == [1, 3] and explanation.evidence == [["breaks count(E1) - count(E3) == 0"]]


def test_invariants_mining_finds_a_ratio():
    rng = np.random.default_rng(1)
    # Every allocation (4) is announced three times (7): 3 * count(4) == count(7).
    seqs = [[4, 7, 7, 7] * int(k) + [8] * int(m) for k, m in zip(rng.integers(1, 5, 200), rng.integers(0, 3, 200))]
    detector = InvariantsMining().fit(seqs)
    assert "3*count(E4) - count(E7) == 0" in detector.invariant_strings
    assert detector.decision_function([[4, 7, 7]])[0] >= 1 and detector.decision_function([[4, 7, 7, 7, 8]])[0] == 0


def test_deeplog_flags_a_session_that_stops_early(fitted):
    detector = fitted[DeepLog]
    assert detector.predict([[1, 2, 5]])[0] == 1  # no close: the end came unexpectedly
    explanation = detector.explain([[1, 2, 5]])
    assert "ended" in explanation.evidence[0][-1] and explanation.contributions is None


def test_count_detectors_cannot_see_order_but_deeplog_can(fitted):
    assert fitted[InvariantsMining].decision_function([OUT_OF_ORDER])[0] == 0
    assert fitted[DeepLog].predict([OUT_OF_ORDER])[0] == 1


def test_q_statistic_matches_jackson_mudholkar_by_hand():
    lam = np.array([2.0, 1.0, 0.5])
    t1, t2, t3 = 3.5, 5.25, 9.125
    h0 = 1 - 2 * t1 * t3 / (3 * t2 ** 2)
    ca = 3.2905
    expected = t1 * (ca * np.sqrt(2 * t2 * h0 ** 2) / t1 + 1 + t2 * h0 * (h0 - 1) / t1 ** 2) ** (1 / h0)
    assert q_statistic(lam, ca) == pytest.approx(expected)
    assert q_statistic(np.zeros(3), ca) is None


def test_pca_residual_matches_sklearn_subspace(sessions):
    from sklearn.decomposition import PCA as SkPCA

    detector = PCA().fit(sessions[0])
    weighted = detector._counts(sessions[0]) * detector.idf_
    k = detector.components_.shape[0]
    sk = SkPCA(n_components=k).fit(weighted)
    centred = weighted - sk.mean_
    expected = ((centred - sk.inverse_transform(sk.transform(weighted)) + sk.mean_) ** 2).sum(axis=1)
    assert np.allclose(detector.decision_function(sessions[0]), expected, atol=1e-8)


def test_bad_sequences_are_refused():
    with pytest.raises(DataError, match="empty"):
        PCA().fit([[1, 2], []])
    with pytest.raises(DataError):
        PCA().fit([])
    # A fractional id used to be cut to an integer without a word.
    with pytest.raises(DataError, match="not whole event ids"):
        UnseenTemplates().fit([[1, 2.5]])


@pytest.mark.parametrize("cls,params", [
    (PCA, {"variance": 1.5}), (PCA, {"c_alpha": float("nan")}), (InvariantsMining, {"max_size": 9}),
    (InvariantsMining, {"support": 0.2}), (LogClustering, {"max_dist": 0}), (LogClustering, {"anomaly_threshold": -1}),
    (DeepLog, {"hidden": 10 ** 9}), (DeepLog, {"threads": 0}), (DeepLog, {"window": 2.5}),
])
def test_parameters_a_detector_cannot_use_are_refused_before_any_work(cls, params):
    with pytest.raises(DataError, match=next(iter(params))):
        cls(**params).fit([[1, 2], [1, 3]])


@pytest.mark.parametrize("cls", [PCA, InvariantsMining, LogClustering])
def test_statistics_over_groups_need_at_least_two_of_them(cls):
    with pytest.raises(DataError, match="needs at least 2 sessions or windows to learn from, got 1"):
        cls().fit([[1, 2, 3]])


def test_the_registry_names_every_log_detector():
    from normalcy.core.registry import detectors

    # normalcy.logs registers these first; other packages (normalcy.spark) may add more later.
    assert list(detectors("logs").items())[:7] == [
        ("invariants", InvariantsMining), ("pca", PCA), ("clustering", LogClustering), ("deeplog", DeepLog),
        ("unseen", UnseenTemplates), ("semantic-seq", SemanticSequence), ("semantic-bag", SemanticBag)]
