"""Time-series detectors, every one in the registry: causal streaming equals batch, save/load
keeps the scores, an injected spike and level shift are found and named, and the reading
policy (docs/timeseries.md): an infinite or out-of-range reading is refused, in batch and
streaming, before it touches the state, so every later score stays finite."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.modelfile import load
from normalcy.core.registry import CLASSES, detectors
from normalcy.core.results import Explanation
from normalcy.timeseries import MAX_READING, RollingMAD, TimeSeries
from normalcy.timeseries.base import TimeSeriesDetector
from normalcy.timeseries.deep import WindowNetDetector

NAMES = sorted(detectors("timeseries"))
STREAMING = [n for n in NAMES if detectors("timeseries")[n].streams]  # the rest score whole files
SMALL = {"history": 60, "likelihood_window": 300}
# Feature windows must fit in the small history; the forecaster refits within a test's span.
# The trained window models get small windows and networks and a few training steps (their own
# file, test_ts_deep.py, covers their training); they train once `min_train` readings are learned.
TRAINED = {"window": 8, "min_train": 40, "epochs": 1, "max_steps": 20}
GAN = {**TRAINED, "patch": 4, "hidden": 4, "latent": 3, "channels": 4, "n_critic": 1}
OVERRIDES = {"multiscale-novelty": {"windows": (1, 5, 20), "spread_window": 20, "rearm": 30},
             "gbt-forecast": {"refit_every": 50, "n_estimators": 20}, "subsequence-join": {"window": 8},
             "window-iforest": {"window": 8},
             "tadgan": {**GAN, "score_window": 4}, "hypad": GAN, "oraclead": {**TRAINED, "hidden": 4, "heads": 1},
             "themis": {**TRAINED, "channels": 4, "dim": 4, "reference": 50, "neighbors": 5}}
# Readings that must never reach a detector's state: infinite, or finite with squares that overflow.
POISON = [np.inf, -np.inf, float("1e999"), 1e308, -1.7976931348623157e308, 1.01 * MAX_READING]


def _series(n=600, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.c_[np.sin(2 * np.pi * t / 50) + 0.1 * rng.normal(size=n), 5 + 0.1 * rng.normal(size=n)]


def _make(name, **kw):
    return detectors("timeseries")[name](**{**SMALL, **OVERRIDES.get(name, {}), **kw})


@pytest.fixture(scope="module")
def fitted():
    """name -> a detector fitted on the first 300 readings of _series(), built once; tests that
    change one work on a copy (`_copy`)."""
    x = _series()
    return {name: _make(name).fit(x[:300]) for name in NAMES}


def _clone_state(detector):
    """An independent copy of a fitted detector (its streaming state copied)."""
    twin = type(detector)(**detector.get_params())
    for key in [k for k in vars(detector) if k.endswith("_") and not k.startswith("_")]:  # columns_, window_ ...
        setattr(twin, key, getattr(detector, key))
    twin.columns_ = list(detector.columns_)
    twin._restore(detector._snapshot())
    twin.threshold_ = detector.threshold_
    return twin


@pytest.mark.parametrize("name", STREAMING)
@pytest.mark.parametrize("likelihood", [False, True])
def test_streaming_scores_equal_batch_causal_scores(name, likelihood):
    x = _series(450)
    train, test = x[:300], x[300:]
    det = _make(name, likelihood=likelihood).fit(train)
    batch = det.decision_function(test)
    stream = []
    for row in test:
        stream.append(det.score_one(row))
        det.learn_one(row)
    assert_same_scores(stream, batch, "streaming scores")
    # Batch scoring does not move the state; streaming did.
    fresh = _make(name, likelihood=likelihood).fit(x)
    if isinstance(det, WindowNetDetector):
        # Its networks are trained at the end of `fit` (and when a training falls due), not by
        # learning a reading, so only its memory is that of a fit on all the readings.
        np.testing.assert_array_equal(det._recent(), fresh._recent())
        assert det._count == fresh._count and det._trained_at == 300 and fresh._trained_at == 450
        return
    assert_same_scores(det.decision_function(test[:50]), fresh.decision_function(test[:50]))


@pytest.mark.parametrize("name", NAMES)
def test_score_causal_is_the_stream_from_scratch(name):
    x = _series()[:200]
    det = _make(name)
    scores = det.score_causal(x)
    # A trained model's `fit` trains, which needs `min_train` readings: the stream's first training.
    k = det.min_train if isinstance(det, WindowNetDetector) else 1
    assert_same_scores(_make(name).fit(x[:k]).decision_function(x[k:]), scores[k:])


@pytest.mark.parametrize("name", NAMES)
def test_scores_before_ready_after_are_placeholders(name):
    """`ready_after` (which `ts fit` uses to refuse too-short data) is where scores start."""
    det = _make(name)
    scores = det.score_causal(_series(400, seed=5) * [1, 40])
    ready = det.ready_after()
    assert (scores[:ready] == 0).all()
    assert (scores[ready:] != 0).any()


@pytest.mark.parametrize("name", NAMES)
def test_save_load_keeps_scores_and_explanations(tmp_path, fitted, name):
    x = _series()
    det = fitted[name]
    loaded = load(det.save(tmp_path / "m"))
    assert type(loaded) is type(det)
    assert_same_scores(loaded.decision_function(x[300:]), det.decision_function(x[300:]))
    a, b = loaded.explain(x[500:520]), det.explain(x[500:520])
    assert a.parts == b.parts == ("x0", "x1")
    assert_same_scores(a.contributions, b.contributions, "per-variable scores")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["spike", "shift"])
def test_detects_an_injected_anomaly_and_names_its_variable(name, kind):
    x = _series(900, seed=3)
    at = 700
    if kind == "spike":
        x[at, 1] += 3.0
    else:
        x[at:, 1] += 3.0
    det = _make(name, likelihood=False).fit(x[:300])
    explanation = det.explain(x[300:])
    scores, per_variable = explanation.scores, explanation.contributions
    assert isinstance(explanation, Explanation) and explanation.parts == ("x0", "x1")
    first = int(np.argmax(scores)) + 300
    if kind == "shift" and isinstance(det, WindowNetDetector):
        # no training falls due, so its networks never learn the new level, which stays about as
        # unusual as at its onset: where the scores first reach half their largest is the alert
        first = int(np.argmax(scores >= scores.max() / 2)) + 300
    # A spike is its own reading; a shift stays unusual until the window catches up. Windowed
    # detectors score the subsequence ending at each reading, and a spike lies in `window` of them.
    reach = getattr(det, "window", 1)
    assert at <= first < at + reach if kind == "spike" else at <= first < at + max(reach, 10)
    # clearly above every earlier score. A whole-file detector spreads a subsequence's score over
    # its readings, so the window's earlier readings share it; an isolation forest's scores sit
    # near 0.45 for ordinary subsequences, so there the height above the median counts.
    before, floor = (at - 300, 0.0) if det.streams else (at - 300 - det.window_ + 1, np.median(scores))
    assert scores[at - 300] - floor > 2 * (scores[:before].max() - floor)
    assert int(np.argmax(per_variable[at - 300])) == 1  # the second variable drove it
    assert explanation.top()[at - 300] == ["x1"]


def test_the_sklearn_api_labels_and_auroc(fitted):
    x = _series(900, seed=3)
    x[700, 1] += 3.0
    det = _clone_state(fitted["rolling-mad"]).set_threshold(5.0)
    prediction = det.detect(x[300:])
    np.testing.assert_array_equal(det.predict(x[300:]), prediction.labels)
    assert prediction.labels.dtype == np.int8 and prediction.labels[400] == 1
    labels = np.zeros(600, dtype=int)
    labels[400] = 1
    assert det.score(x[300:], labels) == 1.0  # the spike outranks every normal reading


def test_bad_streaming_input_is_a_clear_error(fitted):
    det = fitted["rolling-mad"]
    with pytest.raises(DataError, match="2 value"):
        det.score_one([1.0])
    with pytest.raises(DataError, match="lacks variable"):
        det.score_one({"x0": 1.0})
    with pytest.raises(DataError, match="must be numbers"):
        det.score_one({"x0": "high", "x1": 1.0})
    with pytest.raises(DataError, match="fitted on 2"):
        det.decision_function(np.zeros(10))
    with pytest.raises(DataError, match="history"):
        RollingMAD(history=0).fit(_series()[:100])


def test_every_detector_is_registered_and_only_concrete_ones_load():
    assert set(NAMES) == {"multiscale-novelty", "range-novelty", "rolling-mad", "spectral-residual",
                          "gbt-forecast", "matrix-profile", "window-pca", "subsequence-join",
                          "tadgan", "hypad", "oraclead", "themis", "window-iforest"}
    assert "normalcy.timeseries.base.TimeSeriesDetector" not in CLASSES
    for cls in detectors("timeseries").values():
        assert cls.modality == "timeseries" and "Parameters" in cls.__doc__


# --- the reading policy: non-finite or out-of-range readings never reach the state ---------------


@pytest.mark.parametrize("name", STREAMING)
def test_a_poisonous_reading_is_refused_in_a_stream_and_alerts_go_on(fitted, name):
    """Issue 12 item 2: one inf, 1e999 or near-DBL_MAX reading used to turn every later score
    into NaN (labelled normal). Now it is refused, the state is untouched, and the stream's
    scores equal those of a stream that never saw it."""
    x = _series(420)
    clean, dirty = _clone_state(fitted[name]), _clone_state(fitted[name])
    for i, row in enumerate(x[300:]):
        if i == 20:
            for bad in POISON:
                for reading in ([row[0], bad], {"x0": bad, "x1": row[1]}):
                    with pytest.raises(DataError, match="finite numbers between -1e\\+30 and 1e\\+30"):
                        dirty.score_one(reading)
                    with pytest.raises(DataError, match="not learned"):
                        dirty.learn_one(reading)
        assert dirty.score_one(row) == clean.score_one(row)
        dirty.learn_one(row)
        clean.learn_one(row)
    scores = dirty.decision_function(x[300:])
    assert np.isfinite(scores).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", POISON[:2] + POISON[3:])
def test_a_poisonous_reading_in_a_batch_is_refused_naming_it(fitted, name, bad):
    x = _series()[300:400].copy()
    x[37, 1] = bad
    with pytest.raises(DataError, match="column 'x1' has .* at row 37"):
        fitted[name].decision_function(x)
    with pytest.raises(DataError, match="column 'x1'"):
        _make(name).fit(x)
    # a TimeSeries built by hand gets the same check
    with pytest.raises(DataError, match="finite numbers"):
        fitted[name].decision_function(TimeSeries(x, ["x0", "x1"]))


@pytest.mark.parametrize("name", NAMES)
def test_state_stays_finite_at_the_largest_readings_accepted(tmp_path, name):
    """Issue 12 items 2 and 4: readings up to MAX_READING, alternating in sign and after a flat
    stretch (where robust spreads are tiny), give finite scores and state, a model that saves
    and loads, and alerts that still work afterwards."""
    x = _series(400)
    x[150:260] = 1.0  # flat, so the next jump is measured against a floor of a spread
    x[260:264] = [[MAX_READING, -MAX_READING], [-MAX_READING, MAX_READING]] * 2
    det = _make(name)
    scores = det.score_causal(x[:300])
    assert np.isfinite(scores).all()
    arrays, _ = det._get_state()
    assert all(np.isfinite(a).all() for a in arrays.values())
    later = det.decision_function(x[300:])
    assert np.isfinite(later).all()
    assert_same_scores(load(det.save(tmp_path / "m")).decision_function(x[300:]), later)


def test_a_huge_raw_score_leaves_no_trace_once_it_has_left_the_likelihood_window():
    """The likelihood once kept running sums: a raw score of 1e11 left rounding errors of
    ~1e6 in the sum of squares for good, and every later score was off (here 9661 for 37)."""
    rng = np.random.default_rng(4)
    x = 0.1 * rng.normal(size=(1500, 1))
    x[300] = 1e10  # a robust z-score of about 1e11
    x[1400] += 1.0
    kw = {"history": 50, "likelihood_window": 200, "averaging": 1}
    scores = RollingMAD(**kw).score_causal(x)
    # 1000 readings later, history and likelihood window hold the same as a detector's that
    # never saw the big one
    never = RollingMAD(**kw).fit(x[600:1400]).score_one(x[1400])
    assert scores[1400] == pytest.approx(never, rel=1e-9)


def test_a_tampered_model_file_with_huge_readings_does_not_load(tmp_path, fitted):
    import json

    from normalcy.core import modelfile
    from safetensors.numpy import load_file, save_file

    path = fitted["rolling-mad"].save(tmp_path / "m")
    arrays = load_file(str(path / "arrays.safetensors"))
    arrays["buffer"][0, 0] = 1e300
    save_file(arrays, str(path / "arrays.safetensors"))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["arrays_sha256"] = modelfile.sha256_file(path / "arrays.safetensors")
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="beyond 1e\\+30"):
        TimeSeriesDetector.load(path)


@pytest.mark.parametrize("history", [1, 6, 7, 40])
def test_range_novelty_batch_equals_its_readings_one_at_a_time_as_the_memory_fills(history):
    from normalcy.timeseries import RangeNovelty

    rng = np.random.default_rng(history)
    x = np.cumsum(rng.normal(size=(300, 2)), axis=0)
    x[150:155, 1] += 30.0  # a new extreme
    series = TimeSeries(x, ["a", "b"])
    params = {"history": history, "warmup": min(3, history), "averaging": 4, "likelihood_window": 20}
    for likelihood in (False, True):
        batch = RangeNovelty(likelihood=likelihood, **params)
        batch.columns_ = ["a", "b"]
        batch._reset()
        assert batch._batch_variable_scores(x[:0].copy()) is not None  # the batch form is in use
        steps = RangeNovelty(likelihood=likelihood, **params)
        steps.columns_ = ["a", "b"]
        steps._reset()
        # from an empty memory, then continuing from a part-filled one
        scores, per_variable = batch._run(TimeSeries(x[:100], ["a", "b"]))
        more, more_per_variable = batch._run(TimeSeries(x[100:], ["a", "b"]))
        one = [steps._step(row, learn=True) for row in series.values]
        np.testing.assert_array_equal(np.r_[scores, more], [s for s, _ in one])
        np.testing.assert_array_equal(np.r_[per_variable, more_per_variable], [v for _, v in one])
        assert np.r_[per_variable, more_per_variable][150, 1] > 1  # the new extreme, by more than the range


def test_range_novelty_carries_a_missing_reading_forward_in_a_batch_too():
    from normalcy.timeseries import RangeNovelty

    x = np.sin(np.arange(80) / 3.0)[:, None]
    gap = x.copy()
    gap[50] = np.nan
    filled = x.copy()
    filled[50] = x[49]
    det = RangeNovelty(history=30, warmup=5).fit(x[:40])
    np.testing.assert_array_equal(det.decision_function(gap[40:]), det.decision_function(filled[40:]))


@pytest.mark.parametrize("fit_windows", [None, 100])
def test_window_iforest_scores_a_batch_as_a_whole_as_a_forest_on_all_its_subsequences(monkeypatch, fit_windows):
    """Its scores are those of an isolation forest fitted on every subsequence of the training
    readings and the batch together (or, past FIT_WINDOWS of them, on a seeded sample), each
    reading given the mean over the subsequences that hold it: computed here directly, reading
    by reading."""
    from sklearn.ensemble import IsolationForest

    from normalcy.timeseries import WindowIsolationForest, iforest

    monkeypatch.setattr(iforest, "CHUNK", 37)  # scored in pieces, as a long file is
    if fit_windows:
        monkeypatch.setattr(iforest, "FIT_WINDOWS", fit_windows)
    x = _series(500, seed=7)
    m = 12
    det = WindowIsolationForest(window=m, n_estimators=30, seed=3).fit(x[:300])
    scores, per_variable = det.explain(x[300:]).scores, det.explain(x[300:]).contributions
    expected = np.zeros((200, 2))
    fitted_on = np.arange(500 - m + 1)
    if fit_windows:
        fitted_on = np.sort(np.random.default_rng(3).choice(500 - m + 1, fit_windows, replace=False))
    for j in range(2):
        windows = np.array([x[s : s + m, j] for s in range(500 - m + 1)])
        forest = IsolationForest(n_estimators=30, random_state=3).fit(windows[fitted_on])
        found = -forest.score_samples(windows)
        for i in range(200):
            r = 300 + i
            expected[i, j] = np.mean([found[s] for s in range(max(r - m + 1, 0), min(r, 500 - m) + 1)])
    np.testing.assert_allclose(per_variable, expected, rtol=1e-12)
    np.testing.assert_allclose(scores, expected.max(axis=1), rtol=1e-12)
    if fit_windows:
        return
    # a whole batch: the last reading changes the scores of the readings before it
    changed = x[300:].copy()
    changed[-1] += 5.0
    assert not np.array_equal(det.decision_function(changed)[-m - 5 : -m], scores[-m - 5 : -m])


def test_window_iforest_refuses_to_stream_with_a_clear_error(fitted):
    det = fitted["window-iforest"]
    for call in (det.score_one, det.learn_one, det.explain_one):
        with pytest.raises(DataError, match="as a whole .* stream with a causal detector"):
            call([1.0, 2.0])
    assert all(detectors("timeseries")[n].streams for n in STREAMING) and "window-iforest" not in STREAMING


def test_window_iforest_takes_its_window_from_the_period_within_its_memory(tmp_path):
    from normalcy.timeseries import WindowIsolationForest

    x = np.sin(2 * np.pi * np.arange(3000) / 80)
    assert WindowIsolationForest().fit(x[:2000]).window_ == 80  # one cycle
    short = WindowIsolationForest(history=30).fit(x[:2000])  # the period does not fit the memory
    assert short.window_ == 30
    assert_same_scores(load(short.save(tmp_path / "m")).decision_function(x[2000:2100]),
                       short.decision_function(x[2000:2100]))
