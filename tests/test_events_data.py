"""Event reading and encoding, the frequency baseline against hand-worked numbers, and the
benchmark's anomaly injection on a synthetic stream."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.errors import DataError
from normalcy.events import EventEncoder, Frequency, read_events
from normalcy.events.benchmark import inject

TRAIN = pd.DataFrame({"user": ["ann", "ann", "bob", "ann", "cy"],
                      "host": ["h1", "h1", "h2", "h2", "h1"]})


def test_codes_follow_frequency_with_code_zero_for_unseen_and_rare():
    encoder = EventEncoder(min_count=1).fit(TRAIN)
    assert encoder.vocab_ == [["ann"], ["h1", "h2"]]  # bob and cy are seen once: rare
    np.testing.assert_array_equal(encoder.counts_[0], [2, 3])  # rare bucket, ann
    codes = encoder.transform(pd.DataFrame({"user": ["ann", "bob", "zed"], "host": ["h2", "h1", "h9"]}))
    np.testing.assert_array_equal(codes, [[1, 2], [0, 1], [0, 0]])


def test_numbers_become_the_same_entity_text_with_and_without_gaps():
    with_gap = pd.DataFrame({"port": [22.0, np.nan, 443.0], "host": ["a", "b", "c"]})
    encoder = EventEncoder(allow_missing=True).fit(with_gap)
    assert encoder.vocab_[0] == ["22", "443", "<missing>"]
    codes = encoder.transform(pd.DataFrame({"port": [22, 443], "host": ["a", "c"]}))
    np.testing.assert_array_equal(codes[:, 0], [1, 2])


def test_csv_cells_are_read_as_exact_text(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text("user,port\nNA,007\nnull,22\n")
    frame, name = read_events(path)
    assert name == str(path)
    assert frame.to_dict("list") == {"user": ["NA", "null"], "port": ["007", "22"]}


def test_missing_entity_is_an_error_naming_column_and_row_unless_allowed():
    frame = TRAIN.copy()
    frame.loc[3, "host"] = None
    with pytest.raises(DataError, match=r"column 'host' has no entity at row 3"):
        Frequency().fit(frame)
    assert "<missing>" in Frequency(allow_missing=True).fit(frame).encoder_.vocab_[1]


@pytest.mark.parametrize("frame, message", [
    (TRAIN[["user"]], "at least 2 entity columns"),
    (TRAIN.iloc[:0], "empty"),
])
def test_bad_training_tables_are_clear_errors(frame, message):
    with pytest.raises(DataError, match=message):
        Frequency().fit(frame)


def test_missing_column_at_score_time_names_it():
    detector = Frequency().fit(TRAIN)
    with pytest.raises(DataError, match="missing entity column.*host"):
        detector.decision_function(TRAIN[["user"]])


def test_marginal_frequency_score_matches_hand_computation():
    detector = Frequency(smoothing=1.0).fit(TRAIN)
    # user: ann 3, bob 1, cy 1 (+ unseen slot) -> denominators 5 + 4; host: h1 3, h2 2 -> 5 + 3
    expected = [-(math.log(4 / 9) + math.log(3 / 8)),       # ann, h2
                -(math.log(1 / 9) + math.log(1 / 8))]       # unseen user, unseen host
    new = pd.DataFrame({"user": ["ann", "dee"], "host": ["h2", "h7"]})
    np.testing.assert_allclose(detector.decision_function(new), expected)


def test_pairwise_frequency_score_matches_hand_computation():
    detector = Frequency(pairs=True, smoothing=0.5).fit(TRAIN)
    # 4 user codes x 3 host codes = 12 cells; (ann, h1) seen twice, (bob, h1) never.
    new = pd.DataFrame({"user": ["ann", "bob"], "host": ["h1", "h1"]})
    expected = [-math.log(2.5 / (5 + 0.5 * 12)), -math.log(0.5 / (5 + 0.5 * 12))]
    np.testing.assert_allclose(detector.decision_function(new), expected)
    # The explanation subtracts the training average: (ann, h1) x 2 at 2.5, three pairs at 1.5.
    center = (2 * math.log(2.5 / 11) + 3 * math.log(1.5 / 11)) / 5
    # A contribution is how far below that average the pair's term is.
    assert detector.explain(new).contributions[:, 0].tolist() == pytest.approx([center + s for s in expected])


def test_injection_adds_never_seen_pairs_of_real_entities_at_the_rate():
    rng = np.random.default_rng(0)
    team = rng.integers(3, size=600)
    frame = pd.DataFrame({"user": [f"u{t}{i}" for t, i in zip(team, rng.integers(5, size=600))],
                          "host": [f"h{t}{i}" for t, i in zip(team, rng.integers(4, size=600))],
                          "event": rng.choice(["E1", "E2", "E3"], size=600)})
    train, test, labels = inject(frame, 0.05, seed=1)
    assert len(train) == 420 and labels.mean() == pytest.approx(0.05, abs=0.005)
    seen = {(i, j, a, b) for i, j in combinations(range(3), 2) for a, b in zip(frame.iloc[:, i], frame.iloc[:, j])}
    for event in test[labels == 1].to_numpy():
        for column, value in zip(frame.columns, event):
            assert value in set(train[column])
        assert any((i, j, event[i], event[j]) not in seen for i, j in combinations(range(3), 2))
    normal = test[labels == 0]
    assert len(normal.merge(frame.drop_duplicates())) == len(normal)  # untouched real events


def test_a_lone_surrogate_in_a_request_is_a_request_error_not_a_crash():
    from normalcy.events.serving import EventCodec
    from normalcy.serve.codec import Limits, RequestError, parse_inputs

    codec = EventCodec(Frequency().fit(TRAIN).set_threshold(1.0), Limits())

    def body(hosts):
        return {"inputs": [{"name": "user", "datatype": "BYTES", "shape": [2], "data": ["ann", "bob"]},
                           {"name": "host", "datatype": "BYTES", "shape": [2], "data": hosts}]}

    good = parse_inputs(body(["h1", "h2"]), codec.inputs, codec.limits)
    assert len(codec.predict(codec.decode(good, {}), {})[0].data) == 2
    # JSON's "\ud800" decodes to a lone surrogate; it raised UnicodeEncodeError (HTTP 500) before.
    with pytest.raises(RequestError, match="input 'host': element 1 is not valid text"):
        parse_inputs(body(["h1", "\ud800"]), codec.inputs, codec.limits)
