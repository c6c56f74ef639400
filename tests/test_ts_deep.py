"""The trained window models (TadGAN, HypAD, OracleAD, THEMIS-style; the detector contract is
tests/test_contract.py's, with contract_timeseries.PARAMS):
streaming equal to batch across trainings that fall due mid-stream, when trainings happen,
determinism, each method's own arithmetic against independent values (DTW, areas, Poincaré
ball maps, LOF against scikit-learn, the principal-subspace residual, pairwise distances), a
detection each can make, OracleAD naming the variable it was injected in, and the encoder file:
a round trip and every way a file can be refused. Tiny series and a few training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import contract_timeseries  # noqa: E402
from normalcy.core import progress  # noqa: E402
from normalcy.core.checks import assert_same_scores  # noqa: E402
from normalcy.core.errors import DataError, ModelFileError  # noqa: E402
from normalcy.core.modelfile import load  # noqa: E402
from normalcy.timeseries.hypad import HypAD, expmap0, mobius_add, poincare_distance, project  # noqa: E402
from normalcy.timeseries.oraclead import OracleAD, distances, synthetic_series  # noqa: E402
from normalcy.timeseries.tadgan import TadGAN, dtw, reconstruction_error  # noqa: E402
from normalcy.timeseries.themis import ThemisStyle, read_encoder  # noqa: E402

# Tiny networks and a few training steps, the settings tests/test_contract.py checks them with.
TINY = {cls: contract_timeseries.PARAMS[cls.name] for cls in (TadGAN, HypAD, OracleAD, ThemisStyle)}
DETECTORS = list(TINY)


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    progress.set_progress(False)
    yield
    progress.set_progress(None)


def _series(n=400, d=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.column_stack([np.sin(2 * np.pi * t / 20 + j) + 0.1 * rng.normal(size=n) for j in range(d)])


# --- the contract and the stream ------------------------------------------------------------------


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_streaming_equals_batch_across_a_retraining(cls):
    x = _series(180)
    det = cls(**TINY[cls]).fit(x[:60])  # trained at 60 readings: the next training is due at 120
    batch = det.explain(x[60:])
    assert det.training_["at_reading"] == 60, "batch scoring leaves the state as it was"
    streamed, parts = [], []
    for row in x[60:]:
        one = det.explain_one(row)
        streamed.append(one.scores[0])
        parts.append(one.contributions[0])
        det.learn_one(row)
    assert det.training_["at_reading"] == 120, "trained again at 120 readings, and no more: that saw a full memory"
    assert_same_scores(streamed, batch.scores, "streamed scores")
    assert_same_scores(parts, batch.contributions, "streamed per-variable scores")
    assert np.count_nonzero(batch.scores) > 60


def test_a_stream_from_scratch_trains_at_min_train_then_at_each_doubling():
    x = _series(300, d=1)
    det = OracleAD(**{**TINY[OracleAD], "history": 200})
    scores = det.score_causal(x)
    # first at 40 readings, then 80 and 160; 160 < history, so once more at 320 > 300: not reached
    assert det.training_["at_reading"] == 160 and det.training_["readings"] == 160
    assert not scores[:40].any(), "nothing is scored before the first training"
    assert np.count_nonzero(scores[40:]) > 60  # below-usual measures clip to 0
    no_retrain = OracleAD(**{**TINY[OracleAD], "history": 200, "retrain": False})
    no_retrain.score_causal(x)
    assert no_retrain.training_["at_reading"] == 40


def test_the_same_seed_gives_the_same_model_and_another_seed_another(tmp_path):
    x = _series(200)
    first = TadGAN(**TINY[TadGAN]).fit(x[:150]).decision_function(x[150:])
    again = TadGAN(**TINY[TadGAN]).fit(x[:150]).decision_function(x[150:])
    other = TadGAN(**{**TINY[TadGAN], "seed": 1}).fit(x[:150]).decision_function(x[150:])
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_reloaded_model_goes_on_training_as_the_original_would(tmp_path):
    x = _series(200)
    det = ThemisStyle(**TINY[ThemisStyle]).fit(x[:60])
    again = load(det.save(tmp_path / "m"))
    assert_same_scores(again.decision_function(x[60:]), det.decision_function(x[60:]))  # trains at 120 in both


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.name)
def test_too_few_readings_and_bad_settings_are_refused(cls):
    with pytest.raises(DataError, match="needs at least"):
        cls(**TINY[cls]).fit(_series(15))
    with pytest.raises(DataError, match="min_train"):
        cls(**{**TINY[cls], "min_train": 12}).fit(_series(100))
    with pytest.raises(DataError, match="history"):
        cls(**{**TINY[cls], "history": 8}).fit(_series(100))


def test_a_reading_far_beyond_the_training_range_scores_finite_and_high():
    x = _series(200)
    det = TadGAN(**TINY[TadGAN]).fit(x[:150])
    test = x[150:].copy()
    test[30, 0] = 1e30
    scores = det.decision_function(test)
    assert np.isfinite(scores).all()
    # the windows whose last score_window (4) readings hold it score highest
    assert scores[30:34].max() == scores.max() and scores[30] > 100 * scores[:30].max()


# --- TadGAN -----------------------------------------------------------------------------------


def _naive_dtw(a, b):
    k = len(a)
    d = np.full((k + 1, k + 1), np.inf)
    d[0, 0] = 0
    for i in range(1, k + 1):
        for j in range(1, k + 1):
            d[i, j] = abs(a[i - 1] - b[j - 1]) + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[k, k]


def test_the_reconstruction_errors_match_their_definitions():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 8, 2)), rng.normal(size=(5, 8, 2))
    expected = [[_naive_dtw(x[i, :, j], y[i, :, j]) for j in range(2)] for i in range(5)]
    np.testing.assert_allclose(dtw(x, y), expected, rtol=1e-12)
    np.testing.assert_allclose(reconstruction_error(x, y, "area"),
                               np.abs(np.trapezoid(x, axis=1) - np.trapezoid(y, axis=1)), rtol=1e-12)
    np.testing.assert_allclose(reconstruction_error(x, y, "point"), np.abs(x - y).mean(axis=1))
    # DTW can only match a shifted copy better than the point-wise error can
    s = np.sin(np.arange(12) / 2)[None, :, None]
    assert dtw(s[:, 1:], s[:, :-1])[0, 0] < np.abs(s[:, 1:] - s[:, :-1]).sum()


def test_window_must_be_a_multiple_of_the_patch():
    with pytest.raises(DataError, match="multiple of patch"):
        TadGAN(**{**TINY[TadGAN], "window": 12}).fit(_series(100))


@pytest.fixture(scope="module")
def spiked():
    """A rhythm learned for 600 readings, then 200 more with a spike at 120 in variable 0."""
    x = _series(800, d=1, seed=5)
    x[720, 0] += 2.5
    return x[:600], x[600:], 120


@pytest.mark.parametrize("cls", [TadGAN, HypAD], ids=lambda c: c.name)
def test_a_spike_is_found(cls, spiked):
    train, test, at = spiked
    params = {**TINY[cls], "window": 20, "hidden": 16, "latent": 8, "channels": 16, "n_critic": 1,
              "learning_rate": 3e-3, "max_steps": 60, "epochs": 100, "history": 600, "min_train": 100}
    if cls is TadGAN:
        params["score_window"] = 10
    scores = cls(**params).fit(train).decision_function(test)
    # TadGAN's error covers the last 10 readings of a window, HypAD's the whole window
    assert scores[at : at + 10].max() > np.quantile(scores[30:], 0.97)


# --- HypAD's Poincaré ball -----------------------------------------------------------------------


def test_the_poincare_ball_maps_match_closed_forms():
    v = torch.tensor([[0.3, -0.4]], dtype=torch.float64)  # norm 0.5
    np.testing.assert_allclose(expmap0(v).norm().item(), math.tanh(0.5), rtol=1e-12)
    point = expmap0(v)
    origin = torch.zeros_like(point)
    # distance from the origin is 2 artanh(|x|), here 2 x 0.5
    np.testing.assert_allclose(poincare_distance(origin, point).item(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(mobius_add(origin, point).numpy(), point.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mobius_add(point, -point).numpy(), 0.0, atol=1e-12)
    # Möbius addition is an isometry: d(a + x, a + y) = d(x, y)
    a, x, y = (torch.tensor([row], dtype=torch.float64) for row in ([0.2, 0.1], [-0.3, 0.5], [0.1, -0.6]))
    np.testing.assert_allclose(poincare_distance(mobius_add(a, x), mobius_add(a, y)).item(),
                               poincare_distance(x, y).item(), rtol=1e-6)
    assert project(torch.tensor([[3.0, 4.0]], dtype=torch.float64)).norm().item() < 1.0


def test_certainty_is_a_norm_in_the_ball_and_weighs_the_score(spiked):
    train, test, _ = spiked
    det = HypAD(**{**TINY[HypAD], "history": 600, "min_train": 100}).fit(train)
    certainty = det.certainty(test)
    assert np.isnan(certainty[: det.span - 1]).all()
    assert ((certainty[det.span - 1 :] > 0) & (certainty[det.span - 1 :] < 1)).all()
    # the raw score of the window ending at reading i is critic term x error term x certainty:
    # with the certainty halved, the score halves
    windows = det._scaled(np.lib.stride_tricks.sliding_window_view(test, det.span, axis=0).transpose(0, 2, 1))
    full = det._window_scores(windows)
    distance, sure, critic = det._terms(windows)
    rec = np.maximum((distance - det._stats["distance_mean"]) / det._stats["distance_spread"], 0) + 1
    np.testing.assert_allclose(full, det._critic_term(critic) * rec * sure, rtol=1e-12)
    np.testing.assert_allclose(sure, certainty[det.span - 1 :], rtol=1e-12)


# --- OracleAD -----------------------------------------------------------------------------------


def test_distances_are_the_pairwise_euclidean_ones():
    from scipy.spatial.distance import cdist

    e = torch.tensor(np.random.default_rng(0).normal(size=(2, 4, 3)))
    found = distances(e).numpy()
    for b in range(2):
        np.testing.assert_allclose(found[b], cdist(e[b].numpy(), e[b].numpy()), atol=1e-6)


@pytest.fixture(scope="module")
def oracle_case():
    train, test, _ = synthetic_series(7, d=4, n_train=1200, n_test=700, anomalies=0)
    params = {"window": 20, "hidden": 16, "heads": 2, "epochs": 100, "max_steps": 150, "history": 1200,
              "min_train": 100}
    return OracleAD(**params).fit(train), test


def test_oraclead_names_the_variable_a_spike_was_injected_in(oracle_case):
    det, test = oracle_case
    test = test.copy()
    test[300, 2] += 8 * test[:, 2].std()
    explained = det.explain(test)
    assert explained.scores[300] == explained.scores.max()
    assert explained.top(1)[300] == ["x2"]
    assert det.root_causes(test, k=2)[300][0] == "x2"
    det.set_threshold(float(explained.scores[300]))
    evidence = det.explain(test).evidence
    assert evidence[300][0].startswith("root cause, most likely first: x2 (")
    assert sum(bool(e) for e in evidence) == 1


def test_synthetic_anomalies_are_where_they_are_said_to_be():
    clean_train, clean_test, _ = synthetic_series(3, anomalies=0)
    train, test, injected = synthetic_series(3, anomalies=5)
    np.testing.assert_array_equal(train, clean_train)
    changed = np.argwhere(test != clean_test)
    for row, column in changed:
        assert any(s <= row <= e and column == j for s, e, j, _ in injected)
    for s, e, j, kind in injected:
        assert (test[s : e + 1, j] != clean_test[s : e + 1, j]).any(), kind


def test_one_variable_has_no_structure_term():
    x = _series(200, d=1)
    det = OracleAD(**TINY[OracleAD]).fit(x[:150])
    windows = det._scaled(np.lib.stride_tricks.sliding_window_view(x, det.span, axis=0).transpose(0, 2, 1))
    prediction, structure = det._parts(windows)
    assert not structure.any() and prediction.any()


# --- THEMIS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def themis(spiked):
    train, test, _ = spiked
    det = ThemisStyle(**{**TINY[ThemisStyle], "window": 16, "channels": 8, "dim": 6, "history": 600,
                         "min_train": 100, "max_steps": 40, "epochs": 100}).fit(train)
    return det, test


def test_lof_matches_scikit_learn(themis):
    from sklearn.neighbors import LocalOutlierFactor

    det, test = themis
    windows = det._scaled(np.lib.stride_tricks.sliding_window_view(test, det.span, axis=0).transpose(0, 2, 1))
    lof, spectral = det._measures(windows)
    reference = det._stats["embeddings"][0]
    k = int(det._stats["neighbors"][0])
    sk = LocalOutlierFactor(n_neighbors=k, novelty=True, algorithm="brute").fit(reference)
    embedded = det.embed(windows)[:, 0]
    np.testing.assert_allclose(lof[:, 0], -sk.score_samples(embedded), rtol=1e-9)
    # the spectral residual is what the reference's principal components leave out
    from sklearn.decomposition import PCA

    keep = int((np.abs(det._stats["components"][0]).sum(axis=1) > 0).sum())
    pca = PCA(n_components=keep, svd_solver="full").fit(reference)
    left = embedded - pca.inverse_transform(pca.transform(embedded))
    np.testing.assert_allclose(spectral[:, 0], (left**2).sum(axis=1), rtol=1e-6, atol=1e-9)


def test_themis_finds_the_spike(themis, spiked):
    det, test = themis
    _, _, at = spiked
    scores = det.decision_function(test)
    assert scores[at : at + 16].max() > np.quantile(scores[det.span :], 0.97)


def test_an_exported_encoder_loads_and_gives_the_same_scores(themis, spiked, tmp_path):
    det, test = themis
    train, _, _ = spiked
    path = det.export_encoder(tmp_path / "encoder.safetensors")
    frozen = ThemisStyle(**{**det.get_params(), "encoder": str(path)}).fit(train)
    assert frozen.training_["stopped"] == "pretrained" and frozen.training_["steps"] == 0
    assert_same_scores(frozen.decision_function(test), det.decision_function(test))


def test_bad_encoder_files_are_refused(themis, tmp_path):
    import pickle

    from safetensors.torch import save_file

    det, _ = themis
    good = det.export_encoder(tmp_path / "good.safetensors")
    state = read_encoder(good, det.window, det.channels, det.dim)
    meta = {"format": "normalcy-ts-encoder", "architecture": "conv", "window": "16", "channels": "8", "dim": "6"}
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(pickle.dumps(state))
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        read_encoder(pickled, 16, 8, 6)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_encoder(tmp_path / "missing.safetensors", 16, 8, 6)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "nometa.safetensors"))
    with pytest.raises(ModelFileError, match="not a normalcy encoder"):
        read_encoder(tmp_path / "nometa.safetensors", 16, 8, 6)
    with pytest.raises(DataError, match="saved with window=16, channels=8, dim=6"):
        read_encoder(good, 16, 8, 7)
    wrong = dict(state)
    wrong["head.bias"] = torch.zeros(5)
    save_file(wrong, str(tmp_path / "shape.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="head.bias"):
        read_encoder(tmp_path / "shape.safetensors", 16, 8, 6)
    extra = {**state, "backdoor": torch.zeros(1)}
    save_file(extra, str(tmp_path / "extra.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="has tensors"):
        read_encoder(tmp_path / "extra.safetensors", 16, 8, 6)
    nan = dict(state)
    nan["head.bias"] = torch.full((6,), float("nan"))
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    with pytest.raises(ModelFileError, match="NaN"):
        read_encoder(tmp_path / "nan.safetensors", 16, 8, 6)
