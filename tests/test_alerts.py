"""Alert ranking (normalcy.alerts): the back-off sequence model against hand-worked
probabilities, CAR's ranking of routine against new alerts, feedback by the Beta rule, verdicts
kept in the model, the tie-aware ranking metrics against brute force and scikit-learn, reading
alert tables, and the serving codec."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score

from normalcy.alerts import CAR
from normalcy.alerts.data import NO_VERDICT, read_alerts, read_verdicts
from normalcy.alerts.evaluate import ndcg, precision_at_k
from normalcy.alerts.sequence import StreamModel
from normalcy.alerts.serving import AlertCodec
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.serve.codec import Limits, parse_inputs

FAST = {"content_params": {"epochs": 3}}


def test_sequence_probabilities_match_the_hand_worked_back_off():
    """History of stream 1: a, a, b (codes 1, 1, 2), order 1, d = 0.5. Counts: root and stream
    {a: 2, b: 1}; after a: {a: 1, b: 1}. Queue: b on stream 1, then a (after b), then a new type
    (code 3) on a new stream (code 2)."""
    model, bits, _ = StreamModel(order=1, gap=None, discount=0.5).fit(
        np.array([1, 1, 1]), np.array([1, 1, 2]), np.array([0.0, 1.0, 2.0]), n_types=2)
    base = 1 / 3
    root_b = (0.5 + 0.5 * 2 * base) / 3
    stream_b = (0.5 + 0.5 * 2 * root_b) / 3
    # The queue's first alert is counted before the second: root and stream now {a: 2, b: 2}.
    root_a = (1.5 + 0.5 * 2 * base) / 4
    stream_a = (1.5 + 0.5 * 2 * root_a) / 4
    new = 0.5 * 2 * base / 5  # nothing seen: only the root's discounted mass on the uniform slot
    surprise, depth = model.replay(np.array([1, 1, 2]), np.array([2, 1, 3]), np.array([3.0, 4.0, 5.0]))
    np.testing.assert_allclose(2.0 ** -surprise, [stream_b, stream_a, new], rtol=1e-12)
    np.testing.assert_array_equal(depth, [2, 2, 0])


def test_first_history_alert_has_the_uniform_probability_and_a_gap_cuts_the_context():
    model, bits, depth = StreamModel(order=2, gap=10.0, discount=0.5).fit(
        np.array([1, 1, 1]), np.array([1, 2, 1]), np.array([0.0, 5.0, 100.0]), n_types=2)
    assert bits[0] == pytest.approx(np.log2(3))  # nothing known yet: the uniform 1 / (2 types + 1)
    assert depth[0] == 0
    # The third alert comes after a 95 s silence: its context is its stream alone, so no node
    # (stream, b) or (stream, b, a) is counted; the second alert's (stream, a) is.
    keys = set(model.nodes_)
    assert (1, 1) in keys and (1, 2) not in keys and (1, 2, 1) not in keys


@pytest.fixture(scope="module")
def routine():
    """Three hosts raising their routine types; host h0 also raises 'dns-nx' now and then."""
    rng = np.random.default_rng(4)
    rows = []
    for i in range(300):
        host = f"h{i % 3}"
        kind = ["av-update", "login-fail"][rng.integers(2)] if host != "h0" or i % 30 else "dns-nx"
        rows.append((60.0 * i, host, f"u{i % 3}", kind))
    return pd.DataFrame(rows, columns=["time", "host", "user", "type"])


def queue() -> pd.DataFrame:
    return pd.DataFrame({"time": [20_000.0, 20_060.0, 20_120.0, 20_180.0], "host": ["h1", "h1", "h2", "h0"],
                         "user": ["u1", "u1", "u2", "u0"],
                         "type": ["av-update", "exfiltration", "login-fail", "dns-nx"]})


def test_the_sequence_part_ranks_a_new_type_and_a_host_s_rare_type_above_routine(routine):
    ranker = CAR(parts=["sequence"], **FAST).fit(routine)
    scores = ranker.decision_function(queue())
    # exfiltration (never seen) > dns-nx (h0 raised it once in 30) > the routine types.
    assert scores[1] > scores[3] > max(scores[0], scores[2])
    explanation = ranker.explain(queue())
    assert explanation.parts == ("sequence", "content")
    assert "never seen in the history" in explanation.evidence[1][0]
    assert "host=h1" in explanation.evidence[0][0] and explanation.evidence[0][1].startswith("content: ")
    # APE judges a value never seen as it judges the history's rare ones; here every type recurs,
    # so its unseen slot learned nothing and the new type adds nothing to APE's sum: novelty is
    # the sequence part's evidence (docs/alerts.md). The prior is the mean of the parts.
    full = CAR(**FAST).fit(routine).rank(queue())
    np.testing.assert_allclose(full.prior, full.percentiles.mean(axis=1))


def test_feedback_moves_every_alert_of_a_reviewed_pattern_by_the_beta_rule(routine):
    ranker = CAR(prior_strength=2.0, **FAST).fit(routine)
    q = queue()
    prior = ranker.rank(q).scores
    # Two analysts' verdicts: h1's av-update is a false positive (twice), exfiltration on h1 true.
    reviewed = q.iloc[[0, 0, 1]].assign(verdict=["fp", "0", "tp"])
    after = ranker.rank(q, feedback=reviewed).scores
    beta = 2.0
    # Each matching level (type, host and type, whole signature) applies the rule in turn.
    expected_0, expected_1 = prior[0], prior[1]
    for _ in range(3):
        expected_0 = (beta * expected_0 + 0) / (beta + 2)
        expected_1 = (beta * expected_1 + 1) / (beta + 1)
    assert after[0] == pytest.approx(expected_0) and after[1] == pytest.approx(expected_1)
    assert after[2] == prior[2] and after[3] == prior[3]  # patterns nobody reviewed keep their prior
    assert after[0] < prior[0] and after[1] >= prior[1]


def test_verdicts_in_the_history_are_kept_in_the_model_like_feedback_given_when_ranking(routine, tmp_path):
    q = queue()
    verdicts = [1 if t == "dns-nx" else "" for t in routine["type"]]
    kept = CAR(**FAST).fit(routine.assign(verdict=verdicts))
    given = CAR(**FAST).fit(routine).rank(q, feedback=routine.assign(verdict=verdicts)).scores
    np.testing.assert_allclose(kept.decision_function(q), given, rtol=1e-12)
    again = load(kept.save(tmp_path / "kept"))
    assert again.feedback_ == kept.feedback_
    assert_same_scores(again.decision_function(q), given)


def test_an_alert_with_a_verdict_in_the_queue_scores_as_its_verdict(routine):
    ranker = CAR(**FAST).fit(routine)
    scores = ranker.decision_function(queue().assign(verdict=["", "no", "", "yes"]))
    assert scores[1] == 0.0 and scores[3] == 1.0


def test_parts_choose_what_the_prior_averages(routine):
    q = queue().assign(severity=[1.0, 1.0, 5.0, 1.0])
    history = routine.assign(severity=np.resize([1.0, 2.0, 3.0], len(routine)))
    only_score = CAR(score_column="severity", parts=["score"], **FAST).fit(history)
    ranking = only_score.rank(q)
    np.testing.assert_allclose(ranking.prior, ranking.percentiles[:, 2])
    assert ranking.prior[2] == 1.0  # above every severity of the history
    with pytest.raises(DataError, match="needs a raw score"):
        CAR(parts=["score"], **FAST).fit(routine)


def test_corroboration_counts_distinct_sources_on_a_stream_within_the_gap_both_ways(routine, tmp_path):
    # One source (a detector) per alert; the history's hosts each hear from one detector.
    history = routine.assign(detector="ids")
    ranker = CAR(parts=["corroboration"], source_column="detector", gap=600.0, **FAST).fit(history)
    q = pd.DataFrame({"time": [20_000.0, 20_100.0, 20_200.0, 20_300.0, 30_000.0, 20_050.0],
                      "host": ["h1", "h1", "h1", "h2", "h1", "h2"], "user": ["u1"] * 6,
                      "type": ["av-update"] * 6, "detector": ["ids", "edr", "ids", "ids", "av", "ids"]})
    ranking = ranker.rank(q)
    # h1 within 600 s: ids, edr, ids -> 2 sources each; h2: one source repeated; h1 at 30,000: alone.
    np.testing.assert_array_equal(ranker._corroboration(ranker.read(q)), [2, 2, 2, 1, 1, 1])
    assert ranking.scores[0] == ranking.scores[1] == ranking.scores[2] > ranking.scores[3] == ranking.scores[4]
    # The first alert rose because of a later one: alone it is as routine as the history.
    assert ranker.rank(q.iloc[[0]]).scores[0] == ranking.scores[3]
    evidence = ranker.explain(q).evidence[0]
    assert "corroboration: 2 distinct detector value(s) alerted on host=h1" in evidence[-1]
    again = load(ranker.save(tmp_path / "corroborated"))
    assert_same_scores(again.decision_function(q), ranking.scores)
    with pytest.raises(DataError, match="is the stream column"):
        CAR(source_column="host", **FAST).fit(history)
    with pytest.raises(DataError, match='"corroboration" needs'):
        CAR(parts=["corroboration"], **FAST).fit(history)


@pytest.mark.parametrize("scores", [[3, 1, 1, 1, 0, 0], [2, 2, 2, 2, 2, 2], [5, 4, 4, 1, 1, 0]])
def test_precision_at_k_is_the_mean_over_every_order_of_the_ties(scores):
    labels = np.array([1, 0, 1, 1, 0, 1])
    scores = np.array(scores, dtype=float)
    for k in (1, 2, 3, 5):
        values = []
        for perm in itertools.permutations(range(len(labels))):
            noise = np.empty(len(labels))
            noise[list(perm)] = np.arange(len(labels)) * 1e-9  # one strict order of the ties
            top = np.argsort(-(scores + noise), kind="stable")[:k]
            values.append(labels[top].mean())
        assert precision_at_k(labels, scores, k) == pytest.approx(np.mean(values))


@pytest.mark.parametrize("k", [None, 3])
def test_ndcg_matches_scikit_learn_which_also_averages_over_ties(k):
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(2, size=12)
        if not labels.any():
            continue
        scores = rng.integers(4, size=12).astype(float)
        expected = ndcg_score(labels[None, :], scores[None, :], k=k)
        assert ndcg(labels, scores, k) == pytest.approx(expected)


def test_reading_times_verdicts_and_the_errors_that_name_the_row():
    frame = pd.DataFrame({"when": ["2024-05-01T12:00:00+02:00", "1714557600", "2024-05-01 10:00:01"],
                          "host": ["a", "b", "c"], "kind": ["x", "y", "z"],
                          "verdict": ["TP", None, "benign"]})
    alerts = read_alerts(frame, "when", "kind", ["host"], "host", None, "verdict")
    np.testing.assert_array_equal(alerts.times, [1714557600.0, 1714557600.0, 1714557601.0])
    np.testing.assert_array_equal(alerts.verdicts, [1, NO_VERDICT, 0])
    with pytest.raises(DataError, match=r"'verdict' at row 1 holds 'maybe'"):
        read_verdicts(pd.Series(["1", "maybe"], name="verdict"), "verdict", "alerts.csv")
    with pytest.raises(DataError, match=r"'when' at row 2 holds 'soon'"):
        read_alerts(frame.assign(when=["1", "2", "soon"]), "when", "kind", ["host"], "host", None, None)
    with pytest.raises(DataError, match="missing alert column.*user"):
        read_alerts(frame, "when", "kind", ["host", "user"], "host", None, None)


def test_the_codec_scores_a_request_as_decision_function_does(routine):
    ranker = CAR(**FAST).fit(routine)
    codec = AlertCodec(ranker, Limits())
    q = queue()
    body = {"inputs": [{"name": "time", "datatype": "FP64", "shape": [4], "data": q["time"].tolist()},
                       *({"name": c, "datatype": "BYTES", "shape": [4], "data": q[c].tolist()}
                         for c in ("type", "host", "user"))]}
    out = codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})
    assert_same_scores(out[0].data, ranker.decision_function(q))
