"""Level weights of the unseen-template score and calibration on labelled history
(normalcy.logs.history): weights applied per line level, kept in the model folder, learned by
coordinate ascent (hand-worked case), and the whole fit on histories where the level tells a
failure's new templates from normal operation's."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core import metrics
from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.logs import LogModel, SemanticBag
from normalcy.logs.history import fit_with_history, learn_level_weights, shared_lines, weighted_scores
from normalcy.logs.semantic import Events, with_templates

TEMPLATES = {1: "open file <PATH> for writing", 2: "write block <NUM> of <NUM> bytes", 3: "close file <PATH>",
             5: "ack block <NUM> written", 6: "retry write of block <NUM> after timeout"}
# Unseen in training: new kinds of message, at the level their lines come with.
NEW = {20: "kernel panic: fatal machine check exception", 21: "disk quota report generated for user",
       22: "torus link training failed on node", 23: "scheduler rebalanced the job queue"}


def session(rng) -> list[int]:
    seq = [1] + [2, 5] * int(rng.integers(1, 4)) + [3]
    return seq[:2] + [6] + seq[2:] if rng.random() < 0.3 else seq


def group(rng, extra=None, level="INFO"):
    seq = session(rng)
    levels = ["INFO"] * len(seq)
    if extra is not None:
        seq.insert(2, extra)
        levels.insert(2, level)
    return seq, levels


def events(pairs, table):
    return with_templates([s for s, _ in pairs], table, [lv for _, lv in pairs])


def training():
    rng = np.random.default_rng(0)
    return with_templates([session(rng) for _ in range(60)], TEMPLATES)


@pytest.fixture(scope="module")
def fitted():
    return SemanticBag(embedder="hashing").fit(training())


def test_level_weights_scale_the_unseen_distance_of_the_lines_at_that_level(fitted):
    rng = np.random.default_rng(1)
    table = {**TEMPLATES, **NEW}
    test = events([group(rng, 20, "FATAL"), group(rng, 20, "INFO"), group(rng), group(rng, 21, None)], table)
    model, parts = fitted.level_parts(test)
    assert set(parts[0]) == {"FATAL"} and set(parts[1]) == {"INFO"} and parts[2] == {} and set(parts[3]) == {None}
    plain = fitted.decision_function(test)
    np.testing.assert_allclose(plain, weighted_scores(model, parts, {}))
    weighted = SemanticBag(**{**fitted.get_params(), "level_weights": {"INFO": 0.25}}).fit(training())
    got = weighted.decision_function(test)
    np.testing.assert_allclose(got, model + np.array([parts[0]["FATAL"], 0.25 * parts[1]["INFO"], 0.0,
                                                      parts[3][None]]))
    assert got[0] == pytest.approx(plain[0]) and got[1] < plain[1]  # same template, its level decides
    why = weighted.explain(test).evidence[1]
    assert any("counted x0.25 at level INFO" in r for r in why)
    assert not any("counted" in r for r in weighted.explain(test).evidence[0])


def test_level_weights_are_kept_in_the_model_folder(fitted, tmp_path):
    rng = np.random.default_rng(2)
    table = {**TEMPLATES, **NEW}
    test = events([group(rng, 20, "FATAL"), group(rng, 22, "WARNING")], table)
    det = SemanticBag(embedder="hashing", level_weights={"WARNING": 0.5}).fit(training())
    again = load(det.save(tmp_path / "m"))
    assert again.level_weights == {"WARNING": 0.5}
    np.testing.assert_allclose(again.decision_function(test), det.decision_function(test))


@pytest.mark.parametrize("weights, needle", [("INFO=0.5", "must map log levels"), ({"INFO": -1}, "[0, 100]"),
                                             ({"INFO": "half"}, "level_weights['INFO']"),
                                             ({3: 0.5}, "levels must be text")])
def test_bad_level_weights_are_named(weights, needle):
    with pytest.raises(DataError, match="level_weights") as err:
        SemanticBag(embedder="hashing", level_weights=weights).fit(with_templates([[1, 2, 3]] * 5, TEMPLATES))
    assert needle in str(err.value)


def test_events_slices_keep_their_levels_and_other_lengths_drop_them():
    e = Events([1, 2, 3, 5], TEMPLATES, ["INFO", "WARNING", "FATAL", "INFO"])
    assert list(e[1:3].levels) == ["WARNING", "FATAL"] and list(e[::-1].levels) == ["INFO", "FATAL", "WARNING", "INFO"]
    assert np.concatenate([e, e]).view(Events).levels is None
    with pytest.raises(DataError, match="3 levels for 4 events"):
        Events([1, 2, 3, 5], TEMPLATES, ["INFO"] * 3)


def test_coordinate_ascent_finds_the_mildest_weights_that_separate_a_hand_worked_history():
    # Normal groups bring new INFO templates 0.8 away and a FATAL one 0.2 away; failures bring
    # FATAL ones 0.6 away. Unweighted the INFO novelties outrank the failures (best F1 2/3: at
    # 0.6, 2 true and 2 false alarms); INFO x0.5 puts them at 0.4 < 0.6, the mildest grid weight
    # that separates all (x0.25 does no better).
    model = np.zeros(8)
    novelty = [{"INFO": 0.8}, {"INFO": 0.8}, {"FATAL": 0.2}, {}, {}, {"INFO": 0.3}, {"FATAL": 0.6}, {"FATAL": 0.6}]
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1])
    assert metrics.f1_max(y, weighted_scores(model, novelty, {}))[0] == pytest.approx(2 / 3)
    weights = learn_level_weights(model, novelty, y)
    assert weights == {"INFO": 0.5}
    assert metrics.f1_max(y, weighted_scores(model, novelty, weights))[0] == 1.0
    # Nothing to gain: every weight stays 1.
    assert learn_level_weights(model, [{"FATAL": 0.6} if v else {} for v in y], y) == {}


def words(rng, k: int = 4) -> str:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    return " ".join("".join(rng.choice(letters, 7)) for _ in range(k))


def history(seed: int, n: int = 120):
    """Groups in time order: normal ones, a quarter of them bringing a new INFO template of their
    own (normal operation's novelty), and failures bringing new FATAL ones. The new texts are
    random words, so only the level tells the two kinds apart."""
    rng = np.random.default_rng(seed)
    texts = dict(TEMPLATES)
    pairs, y = [], []
    for i in range(n):
        kind = rng.random()
        if kind < 0.4:
            texts[100 + i] = words(rng)
            level = "INFO" if kind < 0.25 else "FATAL"
            pairs.append(group(rng, 100 + i, level))
            y.append(int(level == "FATAL"))
        else:
            pairs.append(group(rng))
            y.append(0)
    return events(pairs, texts), np.array(y)


def test_history_learns_to_discount_normal_operations_new_templates_and_sets_a_threshold():
    X, y = history(0, 240)
    test_x, test_y = history(10, 240)
    det = fit_with_history(SemanticBag(embedder="hashing"), X, y, folds=5)
    assert det.level_weights == {"INFO": 0.25}
    assert det.calibration_.rule == "history" and det.calibration_.n_items == len(y)
    learned = metrics.binary_scores(test_y, det.decision_function(test_x), det.threshold_)["f1"]
    plain = SemanticBag(embedder="hashing").fit([x for x, label in zip(X, y) if label == 0])
    best_plain = metrics.f1_max(test_y, plain.decision_function(test_x))[0]
    assert learned > best_plain + 0.1  # beats even the best threshold on the unweighted score


def test_history_leaves_overlapping_groups_out_of_a_folds_fit():
    X, y = history(0, 40)
    index = {id(x): i for i, x in enumerate(X)}
    fits, scored = [], []

    class Spy(SemanticBag):
        def fit(self, X, y=None):
            fits.append({index[id(x)] for x in X})
            return super().fit(X, y)

        def level_parts(self, X):
            scored.append({index[id(x)] for x in X})
            return super().level_parts(X)

    neighbours = np.abs(np.arange(40)[:, None] - np.arange(40)[None, :]) <= 1
    fit_with_history(Spy(embedder="hashing"), X, y, folds=4, overlap=neighbours)
    assert len(scored) == 4 and sorted(i for fold in scored for i in fold) == list(range(40))
    for fit, fold in zip(fits, scored):
        near = {j for i in fold for j in (i - 1, i, i + 1)}
        assert fit and not fit & near and all(y[i] == 0 for i in fit)
        assert fit == {i for i in range(40) if y[i] == 0} - near  # every other normal group is used
    assert fits[-1] == {i for i in range(40) if y[i] == 0}  # the final fit takes all the normal groups


@pytest.mark.parametrize("y, overlap, needle", [([0] * 40, None, "normal and anomalous"),
                                                ([0, 1] * 19, None, "one 0 (normal) or 1"),
                                                ([0, 1] * 20, np.zeros((3, 3)), "40 x 40")])
def test_history_errors_name_what_is_wrong(y, overlap, needle):
    X, _ = history(0, 40)
    with pytest.raises(DataError) as err:
        fit_with_history(SemanticBag(embedder="hashing"), X, np.array(y), overlap)
    assert needle in str(err.value)


def test_log_model_passes_each_lines_level_to_the_level_weights():
    normal = [f"081109 2036{i % 60:02d} 148 INFO dfs.DataNode: PacketResponder {i % 3} for block blk_{i} terminating"
              if i % 4 else f"081109 2036{i % 60:02d} 148 INFO dfs.DataNode: Receiving block blk_{i} src: /10.0.0.{i}"
              for i in range(40)]
    new = "kernel panic: fatal machine check exception on node 7"
    test = [f"081109 203700 148 INFO dfs.DataNode: {new}", f"081109 203700 148 ERROR dfs.DataNode: {new}"]

    def fitted(weights):
        params = {"embedder": "hashing", "level_weights": weights}
        return LogModel(detector="semantic-bag", log_format="hdfs", detector_params=params).fit(normal)

    plain, weighted = fitted(None).decision_function(test), fitted({"ERROR": 0.0}).decision_function(test)
    assert plain[0] == pytest.approx(plain[1]) and weighted[0] == pytest.approx(plain[0])
    assert weighted[1] < plain[1] - 0.5  # the ERROR line's unseen template no longer counts


def test_groups_overlap_where_they_share_a_line():
    got = shared_lines([np.array([0, 1]), np.array([1, 2]), np.array([3]), np.array([], dtype=np.int64)])
    want = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(got.toarray(), want)
