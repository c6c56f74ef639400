"""Checking request tensors against a model's inputs (no server needed): every refusal names
the input and what was expected."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.serve.codec import Limits, Output, RequestError, TensorSpec, parse_inputs

SPECS = [TensorSpec("values", ("FP64", "FP32"), (-1, 2)), TensorSpec("name", ("BYTES",), (-1,))]


def body(values=None, name=None):
    values = values or {"name": "values", "datatype": "FP64", "shape": [2, 2], "data": [1, 2.5, 3, 4]}
    name = name or {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["a"]}
    return {"inputs": [values, name]}


def test_flat_and_nested_data_give_the_same_array():
    flat = parse_inputs(body(), SPECS, Limits())
    nested = parse_inputs(body({"name": "values", "datatype": "FP64", "shape": [2, 2], "data": [[1, 2.5], [3, 4]]}),
                          SPECS, Limits())
    for tensors in (flat, nested):
        assert tensors["values"].data.dtype == np.float64
        np.testing.assert_array_equal(tensors["values"].data, [1, 2.5, 3, 4])
        assert tensors["values"].shape == (2, 2)
        assert tensors["name"].data == ["a"]


@pytest.mark.parametrize("values, message", [
    ({"datatype": "INT64", "shape": [1, 2], "data": [1, 2]}, "datatype 'INT64', expected one of FP64, FP32"),
    ({"datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}, "shape [1, 3], expected [n, 2]"),
    ({"datatype": "FP64", "shape": [1, -2], "data": [1, 2]}, "shape must be a non-empty list of sizes"),
    ({"datatype": "FP64", "shape": [2, 2], "data": [1, 2, 3]}, "shape [2, 2] needs 4 values, got 3"),
    ({"datatype": "FP64", "shape": [1, 2], "data": [1, True]}, "element 1 is True"),
    ({"datatype": "FP64", "shape": [1, 2], "data": [1, {}]}, "element 1 is {}"),
    ({"datatype": "FP64", "shape": [1, 2], "data": "12"}, "'data' must be a list"),
    ({"datatype": "FP32", "shape": [100_001, 2], "data": [0]}, "200002 elements, over the limit of 200000"),
])
def test_bad_tensors_are_refused_naming_the_input(values, message):
    with pytest.raises(RequestError, match="input 'values'") as err:
        parse_inputs(body({"name": "values", **values}), SPECS, Limits())
    assert message in str(err.value)


def test_null_is_a_missing_value_in_floating_point_inputs():
    tensors = parse_inputs(body({"name": "values", "datatype": "FP32", "shape": [1, 2], "data": [None, 2]}), SPECS,
                           Limits())
    assert tensors["values"].data.dtype == np.float32
    assert np.isnan(tensors["values"].data[0]) and tensors["values"].data[1] == 2


def test_integers_out_of_range_and_non_strings_are_refused():
    spec = [TensorSpec("n", ("INT64",), (-1,))]
    with pytest.raises(RequestError, match="out of range for INT64"):
        parse_inputs({"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [2**70]}]}, spec, Limits())
    for bad in (1.5, None):
        with pytest.raises(RequestError, match=f"must be integers, element 0 is {bad}"):
            parse_inputs({"inputs": [{"name": "n", "datatype": "INT64", "shape": [1], "data": [bad]}]}, spec,
                         Limits())
    with pytest.raises(RequestError, match="BYTES data must be strings, element 0 is int"):
        parse_inputs(body(name={"name": "name", "datatype": "BYTES", "shape": [1], "data": [3]}), SPECS, Limits())
    with pytest.raises(RequestError, match="element 0 is longer than the limit of 4"):
        parse_inputs(body(name={"name": "name", "datatype": "BYTES", "shape": [1], "data": ["abcde"]}), SPECS,
                     Limits(max_text_bytes=4))


def test_inputs_missing_unknown_or_twice():
    with pytest.raises(RequestError, match="missing input\\(s\\) 'name'; this model takes 'values', 'name'"):
        parse_inputs({"inputs": body()["inputs"][:1]}, SPECS, Limits())
    with pytest.raises(RequestError, match="unknown input 'other'"):
        parse_inputs({"inputs": [*body()["inputs"], {"name": "other"}]}, SPECS, Limits())
    with pytest.raises(RequestError, match="input 'name' is given twice"):
        parse_inputs({"inputs": [*body()["inputs"], body()["inputs"][1]]}, SPECS, Limits())
    with pytest.raises(RequestError, match="data nested deeper than 8 levels"):
        deep: list = [1.0]
        for _ in range(10):
            deep = [deep]
        parse_inputs(body({"name": "values", "datatype": "FP64", "shape": [1, 2], "data": deep}), SPECS, Limits())


def test_outputs_encode_shape_and_json_safe_values():
    out = Output("score", "FP64", np.array([[0.5, np.nan], [np.inf, 2.0]])).to_json()
    assert out == {"name": "score", "datatype": "FP64", "shape": [2, 2], "data": [0.5, None, None, 2.0]}
    assert Output("label", "BOOL", np.array([1, 0], dtype=np.int8)).to_json()["data"] == [True, False]
    assert Output("group", "BYTES", ["a", "b"]).to_json() == {"name": "group", "datatype": "BYTES", "shape": [2],
                                                               "data": ["a", "b"]}
