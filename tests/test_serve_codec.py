"""Checking request tensors against a model's inputs (no server needed), as JSON and as binary
tensor data: every refusal names the input and what was expected; outputs as JSON and binary."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from normalcy.serve.codec import (Limits, Output, RequestError, TensorSpec, encode_response, parse_inputs,
                                  requested_outputs, split_body)

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


# --- text that is no Unicode (issue 12 item 5) ---------------------------------------------------


@pytest.mark.parametrize("text, position", [("\ud800", 0), ("ok\udfff", 2)])
def test_a_lone_surrogate_in_json_text_is_refused_naming_input_and_element(text, position):
    # json.loads accepts "\ud800" escapes; such a string cannot be encoded, and used to fail
    # inside pandas or the tokenizer: HTTP 500.
    request = json.loads(json.dumps(body(name={"name": "name", "datatype": "BYTES", "shape": [2],
                                               "data": ["fine", text]})))
    with pytest.raises(RequestError) as err:
        parse_inputs(request, SPECS, Limits())
    assert str(err.value) == (f"input 'name': element 1 is not valid text: it holds a lone surrogate "
                              f"at position {position}")


def test_the_text_limit_counts_utf8_bytes():
    two_bytes_each = "é" * 3  # 6 bytes as UTF-8
    with pytest.raises(RequestError, match="element 0 is longer than the limit of 5 bytes"):
        parse_inputs(body(name={"name": "name", "datatype": "BYTES", "shape": [1], "data": [two_bytes_each]}),
                     SPECS, Limits(max_text_bytes=5))


# --- binary tensor data ---------------------------------------------------------------------------


def length_prefixed(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in items)


def binary_body(inputs: list[tuple[dict, bytes]], **extra) -> bytes:
    """A request with binary tensor data: the JSON header, then each input's bytes in order;
    returns the body and the header's length (what Inference-Header-Content-Length says)."""
    header = json.dumps({"inputs": [{**entry, "parameters": {"binary_data_size": len(data)}}
                                    for entry, data in inputs], **extra}).encode()
    return header + b"".join(data for _, data in inputs), str(len(header))


def parse_binary(content: bytes, header_length: str, specs=SPECS, limits=Limits()):
    request, binary = split_body(content, header_length)
    return parse_inputs(request, specs, limits, binary)


VALUES = np.array([[1.0, -2.5], [np.nan, 4e300]])
VALUES_ENTRY = {"name": "values", "datatype": "FP64", "shape": [2, 2]}
NAME_ENTRY = {"name": "name", "datatype": "BYTES", "shape": [2]}


def test_binary_data_gives_the_same_tensors_as_json():
    content, size = binary_body([(VALUES_ENTRY, VALUES.astype("<f8").tobytes()),
                                 (NAME_ENTRY, length_prefixed("grüß".encode(), b""))])
    tensors = parse_binary(content, size)
    np.testing.assert_array_equal(tensors["values"].data, VALUES.reshape(-1))
    assert tensors["values"].data.dtype == np.float64 and tensors["values"].data.flags.writeable
    assert tensors["name"].data == ["grüß", ""]
    as_json = parse_inputs(body({**VALUES_ENTRY, "data": [1.0, -2.5, None, 4e300]},
                                {**NAME_ENTRY, "data": ["grüß", ""]}), SPECS, Limits())
    np.testing.assert_array_equal(as_json["values"].data, tensors["values"].data)
    assert as_json["name"].data == tensors["name"].data


def test_binary_and_json_inputs_mix_and_integers_bools_are_little_endian():
    specs = [TensorSpec("n", ("INT32",), (-1,)), TensorSpec("flag", ("BOOL",), (-1,)),
             TensorSpec("name", ("BYTES",), (-1,))]
    header = json.dumps({"inputs": [
        {"name": "n", "datatype": "INT32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "name", "datatype": "BYTES", "shape": [1], "data": ["json"]},
        {"name": "flag", "datatype": "BOOL", "shape": [3], "parameters": {"binary_data_size": 3}}]}).encode()
    tensors = parse_binary(header + struct.pack("<ii", 7, -300) + bytes([1, 0, 1]), str(len(header)), specs)
    assert tensors["n"].data.tolist() == [7, -300] and tensors["flag"].data.tolist() == [True, False, True]
    assert tensors["name"].data == ["json"]


def test_raw_inputs_are_bytes_from_base64_json_or_binary_data():
    specs = [TensorSpec("file", ("BYTES",), (-1,), raw=True)]
    blobs = [b"\x89PNG\r\n\x1a\n\xff\x00", b""]
    content, size = binary_body([({"name": "file", "datatype": "BYTES", "shape": [2]}, length_prefixed(*blobs))])
    assert parse_binary(content, size, specs)["file"].data == blobs
    request = {"inputs": [{"name": "file", "datatype": "BYTES", "shape": [2],
                           "data": [base64.b64encode(b).decode() for b in blobs]}]}
    assert parse_inputs(request, specs, Limits())["file"].data == blobs
    request["inputs"][0]["data"][1] = "%%%"
    with pytest.raises(RequestError, match="input 'file': element 1 is not valid base64"):
        parse_inputs(request, specs, Limits())
    # Files are bounded by the body, not by the limit on one text.
    assert parse_binary(content, size, specs, Limits(max_text_bytes=4))["file"].data == blobs


def hostile_binary_cases():
    good_values = VALUES.astype("<f8").tobytes()
    good_names = length_prefixed(b"a", b"b")

    def with_sizes(values_size, names_size, tail=b"", values=good_values, names=good_names):
        header = json.dumps({"inputs": [
            {**VALUES_ENTRY, "parameters": {"binary_data_size": values_size}},
            {**NAME_ENTRY, "parameters": {"binary_data_size": names_size}}]}).encode()
        return header + values + names + tail, str(len(header))

    content, size = binary_body([(VALUES_ENTRY, good_values), (NAME_ENTRY, good_names)])
    return [
        ("size disagrees with the shape", with_sizes(24, 10, values=good_values[:24]),
         "input 'values': binary_data_size is 24 bytes, but shape [2, 2] of FP64 takes 32"),
        ("sizes claim more than the body", with_sizes(32, 11),
         "input 'name': binary_data_size is 11 bytes, but only 10 bytes of binary data are left"),
        ("bytes no input claims", with_sizes(32, 10, tail=b"xx"),
         "2 bytes of binary data after the JSON header belong to no input"),
        ("header longer than the body", (content, str(len(content) + 1)),
         f"Inference-Header-Content-Length is {len(content) + 1} bytes, but the whole body has only {len(content)}"),
        ("header length not a number", (content, "12abc"),
         "Inference-Header-Content-Length must be the JSON header's size in bytes, got '12abc'"),
        ("header length too short: the JSON is cut", (content, str(int(size) - 1)),
         f"the request's first {int(size) - 1} bytes (its Inference-Header-Content-Length) is not valid JSON"),
        ("length prefix cut short", with_sizes(32, 7, names=length_prefixed(b"a") + b"\x01\x00"),
         "input 'name': element 1 is truncated: its 4-byte length is cut short"),
        ("element shorter than its prefix", with_sizes(32, 11, names=length_prefixed(b"a") + b"\x09\x00\x00\x00ab"),
         "input 'name': element 1 is truncated: its length says 9 bytes, 2 are left"),
        ("a prefix of 4 GiB", with_sizes(32, 9, names=length_prefixed(b"a") + b"\xff\xff\xff\xff"),
         "element 1 is truncated: its length says 4294967295 bytes, 0 are left"),
        ("more elements than the shape", with_sizes(32, 15, names=length_prefixed(b"a", b"b", b"c")),
         "input 'name': its binary data holds more than the 2 elements of shape [2]"),
        ("fewer elements than the shape", with_sizes(32, 5, names=length_prefixed(b"a")),
         "input 'name': shape [2] needs 2 values, its binary data holds 1"),
        ("not UTF-8", with_sizes(32, 10, names=length_prefixed(b"a", b"\xff")),
         "input 'name': element 1 is not valid text: it holds bytes that are not UTF-8 at position 0"),
        ("an encoded surrogate", with_sizes(32, 12, names=length_prefixed(b"a", b"\xed\xa0\x80")),
         "input 'name': element 1 is not valid text: it holds bytes that are not UTF-8 at position 0"),
    ]


@pytest.mark.parametrize("case", hostile_binary_cases(), ids=lambda c: c[0])
def test_hostile_binary_data_is_refused_naming_what_is_wrong(case):
    _, (content, size), message = case
    with pytest.raises(RequestError) as err:
        parse_binary(content, size)
    assert message in str(err.value)


@pytest.mark.parametrize("parameters, message", [
    ({"binary_data_size": -1}, "binary_data_size must be a number of bytes, got -1"),
    ({"binary_data_size": True}, "binary_data_size must be a number of bytes, got True"),
    ({"binary_data_size": "8"}, "binary_data_size must be a number of bytes, got '8'"),
    ({"shared_memory_region": "r", "shared_memory_byte_size": 8}, "shared memory is not supported"),
    ("big", "'parameters' must be an object"),
])
def test_bad_binary_parameters(parameters, message):
    request = body({"name": "values", "datatype": "FP64", "shape": [1, 2], "parameters": parameters})
    request["inputs"][0].pop("data", None)
    with pytest.raises(RequestError, match=f"input 'values': {message}"):
        parse_inputs(request, SPECS, Limits(), b"\0" * 16)


def test_data_and_binary_data_together_and_text_limits_in_binary():
    request = body({"name": "values", "datatype": "FP64", "shape": [1, 2], "data": [1, 2],
                    "parameters": {"binary_data_size": 16}})
    with pytest.raises(RequestError, match="input 'values' has both 'data' and binary_data_size"):
        parse_inputs(request, SPECS, Limits(), b"\0" * 16)
    content, size = binary_body([(VALUES_ENTRY, VALUES.tobytes()), (NAME_ENTRY, length_prefixed(b"abcde", b""))])
    with pytest.raises(RequestError, match="input 'name': element 0 is longer than the limit of 4 bytes"):
        parse_binary(content, size, limits=Limits(max_text_bytes=4))
    no_header = {"inputs": [{"name": "values", "datatype": "FP64", "shape": [1, 2],
                             "parameters": {"binary_data_size": 16}}]}
    with pytest.raises(RequestError, match=r"binary_data_size is 16 bytes, but only 0 bytes .* missing\?\)"):
        parse_inputs(no_header, SPECS, Limits())


# --- outputs as binary data -----------------------------------------------------------------------


def test_binary_outputs_round_trip_and_json_gives_bytes_as_base64():
    header, data = Output("score", "FP64", np.array([0.5, np.nan, -np.inf])).to_binary()
    assert header == {"name": "score", "datatype": "FP64", "shape": [3], "parameters": {"binary_data_size": 24}}
    np.testing.assert_array_equal(np.frombuffer(data, "<f8"), [0.5, np.nan, -np.inf])
    assert Output("label", "BOOL", np.array([1, 0, 1], np.int8)).to_binary()[1] == b"\x01\x00\x01"
    _, data = Output("group", "BYTES", ["a", "ü", b"\x00\xff"]).to_binary()
    assert data == length_prefixed(b"a", "ü".encode(), b"\x00\xff")
    assert Output("overlay", "BYTES", [b"\x89PNG"]).to_json()["data"] == [base64.b64encode(b"\x89PNG").decode()]
    # Text from a model file with a lone surrogate is escaped, not an error.
    assert Output("nearest", "BYTES", ["\ud800"]).to_binary()[1] == length_prefixed(b"\\ud800")


OUT_SPECS = [TensorSpec("score", ("FP64",), (-1,)), TensorSpec("label", ("BOOL",), (-1,))]


@pytest.mark.parametrize("request_, chosen", [
    ({}, {"score": False, "label": False}),
    ({"parameters": {"binary_data_output": True}}, {"score": True, "label": True}),
    ({"parameters": {"binary_data_output": True}, "outputs": [{"name": "label"}]}, {"label": True}),
    ({"outputs": [{"name": "score", "parameters": {"binary_data": True}}, {"name": "label"}]},
     {"score": True, "label": False}),
    ({"parameters": {"binary_data_output": True}, "outputs": [{"name": "score", "parameters": {"binary_data": False}}]},
     {"score": False}),
])
def test_which_outputs_go_as_binary_data(request_, chosen):
    assert requested_outputs(request_, OUT_SPECS) == chosen


@pytest.mark.parametrize("request_, message", [
    ({"parameters": {"binary_data_output": "yes"}}, "'binary_data_output' must be true or false"),
    ({"outputs": [{"name": "score", "parameters": {"binary_data": 1}}]}, "output 'score': parameter 'binary_data'"),
    ({"outputs": [{"name": "heat"}]}, "unknown output(s) 'heat'"),
    ({"outputs": "score"}, "'outputs' must be a list"),
    ({"parameters": 3}, "'parameters' must be an object"),
])
def test_bad_output_requests(request_, message):
    with pytest.raises(RequestError) as err:
        requested_outputs(request_, OUT_SPECS)
    assert message in str(err.value)


def test_a_binary_response_is_json_then_the_outputs_bytes_in_order():
    outputs = [Output("score", "FP64", np.array([1.5, 2.0])), Output("label", "BOOL", np.array([0, 1]))]
    content, size = encode_response({"model_name": "m"}, outputs, {"score": True, "label": False})
    header = json.loads(content[:size])
    assert header["outputs"][0] == {"name": "score", "datatype": "FP64", "shape": [2],
                                    "parameters": {"binary_data_size": 16}}
    assert header["outputs"][1]["data"] == [False, True]
    assert np.frombuffer(content[size:], "<f8").tolist() == [1.5, 2.0]
    plain, none = encode_response({"model_name": "m"}, outputs, {"label": False})
    assert none is None and [o["name"] for o in json.loads(plain)["outputs"]] == ["label"]
