"""Serving a time-series model: the codec refuses an infinite or out-of-range reading with a
400 naming it, and the served model (which never learns) keeps answering with finite scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from starlette.testclient import TestClient

from normalcy.core.checks import assert_same_scores
from normalcy.core.modelfile import load
from normalcy.serve.app import create_app
from normalcy.serve.codec import Limits, RequestError, parse_inputs
from normalcy.timeseries import RollingMAD
from normalcy.timeseries.serving import SeriesCodec

TOKEN = "ts-serving-token-0123456789abcdef"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(3)
    detector = RollingMAD(history=30, warmup=10).fit(rng.normal(size=(200, 2)))
    return detector.set_threshold(3.0).save(tmp_path_factory.mktemp("serve") / "pair")


def _body(rows, datatype="FP64"):
    return {"inputs": [{"name": "values", "datatype": datatype, "shape": [len(rows), 2], "data": rows}]}


def _decode(model_dir, rows, datatype="FP64"):
    codec = SeriesCodec(load(model_dir), Limits())
    return codec, codec.decode(parse_inputs(_body(rows, datatype), codec.inputs, codec.limits), {})


# An FP32 value past its range arrives as infinity, with numpy's overflow warning from the codec.
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("value, datatype", [(math.inf, "FP64"), (1e308, "FP64"), (-1.7976931348623157e308, "FP64"),
                                             (1e31, "FP64"), (1e300, "FP32")])
def test_the_codec_refuses_a_poisonous_reading_naming_it(model, value, datatype):
    rows = np.random.default_rng(0).normal(size=(20, 2)).tolist()
    rows[12][1] = value
    with pytest.raises(RequestError, match="reading 12 of variable 'x1' is .*finite numbers between"):
        _decode(model, rows, datatype)


def test_a_null_is_a_missing_value_and_scores_stay_finite(model):
    rows = np.random.default_rng(0).normal(size=(20, 2)).tolist()
    rows[12][1] = None
    codec, values = _decode(model, rows)
    scores = codec.predict(values, {})[0].data
    filled = np.array([[math.nan if v is None else v for v in row] for row in rows])
    filled[12, 1] = filled[11, 1]
    assert np.isfinite(scores).all()
    assert_same_scores(scores, load(model).decision_function(filled))


def test_over_http_a_poisonous_request_is_a_400_and_the_model_goes_on(model):
    """Issue 12 item 2: a near-DBL_MAX reading gave a 200 with null (NaN) scores for every
    reading after it."""
    rows = np.random.default_rng(1).normal(size=(30, 2))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app([("pair", model)], token=TOKEN)) as client:
        bad = rows.tolist()
        bad[5][0] = 1.7e308
        refused = client.post("/v2/models/pair/infer", json=_body(bad), headers=auth)
        assert refused.status_code == 400 and "reading 5 of variable 'x0'" in refused.json()["error"]
        answer = client.post("/v2/models/pair/infer", json=_body(rows.tolist()), headers=auth)
    assert answer.status_code == 200
    scores = next(o for o in answer.json()["outputs"] if o["name"] == "score")["data"]
    assert None not in scores
    assert_same_scores(scores, load(model).decision_function(rows))
