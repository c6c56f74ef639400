"""The table codec (normalcy.tabular.serving) without a server: request tensors to scores as
`decision_function` gives them, every fitted column required, missing values inside a column,
and bad text refused as a request error (HTTP 400), never another exception (HTTP 500)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.checks import assert_same_scores
from normalcy.serve.codec import Limits, RequestError, parse_inputs
from normalcy.tabular import ECOD
from normalcy.tabular.serving import TableCodec


@pytest.fixture(scope="module")
def codec():
    rng = np.random.default_rng(2)
    train = pd.DataFrame({"amount": rng.normal(100, 10, 200), "country": rng.choice(["fr", "de"], 200)})
    train.loc[::10, "country"] = None  # missing countries are a category seen in training
    detector = ECOD().fit(train).set_threshold(5.0)
    return TableCodec(detector, Limits())


def request(amounts, countries) -> dict:
    return {"inputs": [{"name": "amount", "datatype": "FP64", "shape": [len(amounts)], "data": amounts},
                       {"name": "country", "datatype": "BYTES", "shape": [len(countries)], "data": countries}]}


def predict(codec, body):
    return {o.name: o.data for o in codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})}


def test_scores_equal_decision_function_on_the_same_rows(codec):
    out = predict(codec, request([100.0, 250.0], ["fr", "it"]))
    expected = codec.detector.decision_function(pd.DataFrame({"amount": [100.0, 250.0], "country": ["fr", "it"]}))
    assert_same_scores(out["score"], expected)
    np.testing.assert_array_equal(out["label"], expected >= 5.0)


def test_null_and_empty_string_are_missing_values_as_in_a_csv_file(codec):
    """Issue 22 item 8: a missing value goes inside its column: null for numbers, "" for text."""
    out = predict(codec, request([None, 100.0], ["fr", ""]))
    expected = codec.detector.decision_function(pd.DataFrame({"amount": [np.nan, 100.0], "country": ["fr", None]}))
    assert_same_scores(out["score"], expected)


def test_every_fitted_column_is_a_required_input(codec):
    """Issue 22 item 8, as documented in docs/tabular.md: a column left out is refused by name."""
    body = request([1.0], ["fr"])
    body["inputs"] = body["inputs"][:1]
    with pytest.raises(RequestError, match="missing input.*'country'"):
        parse_inputs(body, codec.inputs, Limits())


def test_a_lone_surrogate_is_a_request_error(codec):
    """Issue 12 item 5: "\\ud800" in a BYTES input raised UnicodeEncodeError (HTTP 500)."""
    from normalcy.core.errors import DataError

    with pytest.raises(DataError, match="lone surrogate"):  # refused by the protocol's parser or the codec
        predict(codec, request([1.0, 2.0], ["fr", "\ud800"]))
    frame = pd.DataFrame({"amount": [1.0], "country": pd.Series(["\ud800"], dtype=object)})
    with pytest.raises(DataError, match="column 'country' has a value that is not valid Unicode text"):
        codec.predict(frame, {})
