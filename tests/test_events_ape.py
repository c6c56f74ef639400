"""APE on synthetic events with planted structure: users belong to teams, each team works on its
own hosts with its own processes. Normal events keep a team together; an anomaly pairs a user
with another team's host, a combination whose entities are all individually common."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.metrics import auroc
from normalcy.core.modelfile import load
from normalcy.events import APE, Frequency
from normalcy.events.ape import nce_loss

TEAMS, USERS, HOSTS, PROCS = 4, 8, 4, 3


def events(rng: np.random.Generator, n: int, cross: bool = False) -> pd.DataFrame:
    team = rng.integers(TEAMS, size=n)
    host_team = (team + rng.integers(1, TEAMS, size=n)) % TEAMS if cross else team
    return pd.DataFrame({
        "user": [f"u{t}.{i}" for t, i in zip(team, rng.integers(USERS, size=n))],
        "host": [f"h{t}.{i}" for t, i in zip(host_team, rng.integers(HOSTS, size=n))],
        "proc": [f"p{t}.{i}" for t, i in zip(team, rng.integers(PROCS, size=n))],
    })


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    train = events(rng, 800)
    test = pd.concat([events(rng, 200), events(rng, 40, cross=True)], ignore_index=True)
    return train, test, np.r_[np.zeros(200), np.ones(40)]


@pytest.fixture(scope="module")
def ape(data):
    return APE(epochs=15, seed=0).fit(data[0])


def test_ape_ranks_cross_team_events_above_normal_ones_where_marginal_frequency_cannot(ape, data):
    _, test, y = data
    assert auroc(y, ape.decision_function(test)) > 0.97
    # Every entity of an anomaly is as common as in normal events: frequencies see nothing.
    assert auroc(y, Frequency().fit(data[0]).decision_function(test)) < 0.7


def test_explanation_names_the_planted_incompatible_pair(ape, data):
    _, test, y = data
    explanation = ape.explain(test[y == 1])
    assert explanation.parts == ("user~host", "user~proc", "host~proc")
    # The host is the only entity from another team, so the pair most to blame involves it ...
    assert all("host" in top[0] for top in explanation.top())
    # ... and the evidence names it with its entities, e.g. "user=u1.3 | host=h2.0".
    for reasons, host in zip(explanation.evidence, test[y == 1].host):
        assert len(reasons) == 1 and f"host={host}" in reasons[0]
    np.testing.assert_allclose(explanation.scores, ape.decision_function(test[y == 1]))


def test_contributions_are_how_much_less_compatible_than_usual_each_pair_is(ape, data):
    test = data[1].head(6)
    terms = ape._explain_encoded(ape.encoder_.transform(test))
    expected = ape._explain_encoded(ape.encoder_.transform(data[0])).mean(axis=0) - terms
    np.testing.assert_allclose(ape.explain(test).contributions, expected, rtol=1e-12, atol=1e-12)


def test_pair_weights_stay_non_negative_even_when_a_pair_of_types_carries_no_structure():
    rng = np.random.default_rng(3)
    frame = events(rng, 400)
    frame["noise"] = rng.choice([f"n{i}" for i in range(20)], size=len(frame))  # independent of all
    # At this step size the unprojected weights of the noise column's pairs go below zero.
    detector = APE(epochs=5, learning_rate=0.3, seed=1).fit(frame)
    assert detector.weights_.shape == (6,)
    assert (detector.weights_ >= 0).all()
    assert (detector.weights_ == 0).any()  # a pair of types dropped out rather than counted against


def test_scores_are_minus_the_weighted_sum_of_pairwise_dot_products(ape, data):
    test = data[1].head(5)
    codes = ape.encoder_.transform(test)
    expected = []
    for row in codes:
        v = [ape.embeddings_[j][c] for j, c in enumerate(row)]
        expected.append(-sum(w * v[i] @ v[j] for w, (i, j) in zip(ape.weights_, [(0, 1), (0, 2), (1, 2)])))
    np.testing.assert_allclose(ape.decision_function(test), expected, rtol=1e-12)


def test_nce_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    emb, w, c = rng.normal(size=(9, 3)), rng.uniform(0.2, 1.5, size=3), 0.3
    pairs = np.array([(0, 1), (0, 2), (1, 2)])
    batch = np.stack([rng.integers(0, 3, 6), rng.integers(3, 6, 6), rng.integers(6, 9, 6)], axis=1)
    log_q = rng.normal(size=6)
    labels = np.array([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    loss, grads = nce_loss(emb, w, c, batch, log_q, labels, pairs)

    def f(emb, w, c):
        return nce_loss(emb, w, c, batch, log_q, labels, pairs)[0]

    eps = 1e-6
    for name, value in (("emb", emb), ("w", w)):
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            up, down = value.copy(), value.copy()
            up[idx] += eps
            down[idx] -= eps
            args = {"emb": emb, "w": w, "c": c, name: None}
            numeric[idx] = (f(**{**args, name: up}) - f(**{**args, name: down})) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-6, atol=1e-8)
    assert grads["c"][0] == pytest.approx((f(emb, w, c + eps) - f(emb, w, c - eps)) / (2 * eps), rel=1e-6)

    # The loss itself, from its definition with explicit loops.
    expected = 0.0
    for e, y, q in zip(batch, labels, log_q):
        s = sum(wp * emb[e[i]] @ emb[e[j]] for wp, (i, j) in zip(w, pairs))
        p = 1 / (1 + np.exp(-(s + c - q)))
        expected -= y * np.log(p) + (1 - y) * np.log(1 - p)
    assert loss == pytest.approx(expected / 2, rel=1e-12)


def test_unseen_entity_scores_exactly_like_a_rare_one_and_the_unseen_slot_is_trained():
    rng = np.random.default_rng(5)
    frame = events(rng, 500)
    frame.loc[:9, "user"] = [f"rare{i}" for i in range(10)]  # each seen once: below min_count=1
    detector = APE(epochs=10, seed=0).fit(frame)
    assert "rare0" not in detector.encoder_.vocab_[0]
    assert np.abs(detector.embeddings_[0][0]).sum() > 0  # learned from the rare users
    probe = frame.iloc[[0, 0]].copy()
    probe.loc[:, "user"] = ["rare0", "never-seen-user"]
    scores = detector.decision_function(probe)
    assert np.isfinite(scores).all() and scores[0] == scores[1]


def test_same_seed_same_model_other_seed_other_model(data):
    a = APE(epochs=3, seed=4).fit(data[0])
    b = APE(epochs=3, seed=4).fit(data[0])
    c = APE(epochs=3, seed=5).fit(data[0])
    np.testing.assert_array_equal(a.decision_function(data[1]), b.decision_function(data[1]))
    assert not np.array_equal(a.decision_function(data[1]), c.decision_function(data[1]))


def test_training_loss_falls(ape):
    assert ape.loss_[-1] < 0.7 * ape.loss_[0]


@pytest.mark.parametrize("make", [lambda: None, lambda: Frequency(), lambda: Frequency(pairs=True)])
def test_reloaded_model_gives_the_same_scores_and_explanations(make, ape, data, tmp_path):
    detector = make() or ape
    if detector is not ape:
        detector.fit(data[0])
    detector.set_threshold(1.5)
    loaded = load(detector.save(tmp_path / "m"))
    assert type(loaded) is type(detector) and loaded.threshold_ == 1.5
    assert_same_scores(loaded.decision_function(data[1]), detector.decision_function(data[1]))
    again, before = loaded.explain(data[1]), detector.explain(data[1])
    assert_same_scores(again.contributions, before.contributions, "contributions")
    assert again.evidence == before.evidence and again.parts == before.parts
    assert loaded.encoder_.vocab_ == detector.encoder_.vocab_


def test_a_model_file_with_a_negative_pair_weight_is_refused(ape, tmp_path):
    import json

    from safetensors.numpy import load_file, save_file

    from normalcy.core import modelfile

    path = ape.save(tmp_path / "m")
    arrays = load_file(str(path / "arrays.safetensors"))
    arrays["ape.weights"] = -np.abs(arrays["ape.weights"]) - 1.0
    save_file(arrays, str(path / "arrays.safetensors"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["arrays_sha256"] = modelfile.sha256_file(path / "arrays.safetensors")
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="non-negative"):
        load(path)


@pytest.mark.parametrize("params", [{"dim": 0}, {"epochs": 1.5}, {"learning_rate": 0}, {"min_count": -1},
                                    {"l2": float("nan")}, {"seed": -1}, {"columns": 3}])
def test_bad_parameters_are_clear_errors(params, data):
    with pytest.raises(DataError):
        APE(**params).fit(data[0])


def test_the_registry_names_the_event_detectors_and_builds_them_with_checked_parameters():
    from normalcy.core.registry import build, detectors

    assert detectors("events") == {"ape": APE, "frequency": Frequency}
    assert build("events", "frequency", {"pairs": True}).pairs is True
    with pytest.raises(DataError, match="random_state"):  # the old name of `seed`
        build("events", "ape", {"random_state": 1})


def test_a_lone_surrogate_is_a_clear_error_naming_column_and_row(ape):
    frame = pd.DataFrame({"user": ["u0.1", "\ud800"], "host": ["h0.1", "h0.2"], "proc": ["p0.0", "p0.1"]},
                         dtype=object)
    with pytest.raises(DataError, match=r"column 'user' at row 1 .*not valid Unicode"):
        ape.decision_function(frame)


def test_detectors_work_in_scikit_learn_model_selection(data):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    _, test, y = data
    folds = StratifiedKFold(2, shuffle=True, random_state=0)
    search = GridSearchCV(Frequency(), {"pairs": [False, True]}, cv=folds).fit(test, y)
    # Pairs see the cross-team combinations, single entities cannot (AUROC about 0.5).
    marginal, pairs = search.cv_results_["mean_test_score"]
    assert search.best_params_ == {"pairs": True} and pairs > marginal + 0.2, (marginal, pairs)
