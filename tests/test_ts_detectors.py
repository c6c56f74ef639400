"""Time-series detectors: causal streaming equals batch, exact save/load, and detection of an
injected spike and level shift in synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.timeseries import DETECTORS

NAMES = sorted(DETECTORS)
SMALL = {"history": 60, "likelihood_window": 300}


def _series(n=600, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.c_[np.sin(2 * np.pi * t / 50) + 0.1 * rng.normal(size=n), 5 + 0.1 * rng.normal(size=n)]


# Feature windows must fit in the small history.
OVERRIDES = {"multiscale-novelty": {"windows": (1, 5, 20), "spread_window": 20, "rearm": 30}}


def _make(name, **kw):
    return DETECTORS[name](**{**SMALL, **OVERRIDES.get(name, {}), **kw})


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("likelihood", [False, True])
def test_streaming_scores_equal_batch_causal_scores(name, likelihood):
    x = _series()
    train, test = x[:300], x[300:]
    det = _make(name, likelihood=likelihood).fit(train)
    batch = det.score(test)
    stream = []
    for row in test:
        stream.append(det.score_one(row))
        det.learn_one(row)
    assert np.array_equal(np.array(stream), batch)
    # Batch scoring does not move the state; streaming did.
    fresh = _make(name, likelihood=likelihood).fit(x)
    assert np.array_equal(det.score(test[:50]), fresh.score(test[:50]))


@pytest.mark.parametrize("name", NAMES)
def test_score_causal_is_the_stream_from_scratch(name):
    x = _series()[:200]
    det = _make(name)
    scores = det.score_causal(x)
    fitted = _make(name).fit(x[:1])
    assert np.array_equal(fitted.score(x[1:]), scores[1:])


@pytest.mark.parametrize("name", NAMES)
def test_save_load_gives_identical_scores(tmp_path, name):
    x = _series()
    det = _make(name, likelihood=True).fit(x[:400])
    loaded = load(det.save(tmp_path / "m"))
    assert type(loaded) is type(det)
    assert np.array_equal(loaded.score(x[400:]), det.score(x[400:]))
    assert loaded.explain_one(x[500]) == det.explain_one(x[500])


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
    scores, per_variable = det.score_details(x[300:])
    first = int(np.argmax(scores)) + 300
    # A spike is its own reading; a shift stays unusual until the window catches up. Windowed
    # detectors score the subsequence ending at each reading, and a spike lies in `window` of them.
    reach = getattr(det, "window", 1)
    assert at <= first < at + reach if kind == "spike" else at <= first < at + max(reach, 10)
    assert scores[at - 300] > 2 * scores[: at - 300].max()  # clearly above every earlier score
    assert int(np.argmax(per_variable[at - 300])) == 1  # the second variable drove it


def test_bad_streaming_input_is_a_clear_error():
    det = _make("rolling-mad").fit(_series()[:100])
    with pytest.raises(DataError, match="2 value"):
        det.score_one([1.0])
    with pytest.raises(DataError, match="lacks variable"):
        det.score_one({"x0": 1.0})
    with pytest.raises(DataError, match="fitted on 2"):
        det.score(np.zeros(10))
    with pytest.raises(DataError, match="history"):
        DETECTORS["rolling-mad"](history=0).fit(_series()[:100])


def test_only_concrete_detectors_are_loadable():
    from normalcy.core.detector import REGISTRY

    assert "normalcy.timeseries.base.TimeSeriesDetector" not in REGISTRY
    assert {"normalcy.timeseries.novelty.RangeNovelty", "normalcy.timeseries.rolling.RollingMAD"} <= set(REGISTRY)
