"""What a modality implements to be served, and the protocol tensors it reads and writes.

Each modality package has a module `serving` with `CODECS`, a dict from the detector base
classes it can serve to their `Codec` classes; a detector is served by its modality's codec.
A codec declares the model's input and output tensors (the protocol's model metadata), turns
request tensors into the detector's input (`decode`) and a batch into output tensors
(`predict`). This module imports no web framework: the codecs depend on it, not on the server.

Request tensors are checked here against the declared inputs (name, datatype, rank, element
count), so every error names the input and what was expected. A tensor's data comes either as
JSON (`data`) or as binary tensor data (the protocol's extension: `binary_data_size` bytes in
the body after a JSON header of `Inference-Header-Content-Length` bytes); both paths give the
codec the same arrays and strings, under the same limits.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import MODALITIES

# Protocol datatype -> numpy dtype (BYTES elements are str for text, bytes for files).
NUMPY = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
         "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
         "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
DATATYPES = (*NUMPY, "BYTES")
NUMBERS = ("FP64", "FP32", "INT64", "INT32")  # what a numeric input accepts


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the server. Every field is a hard limit: past it the
    request is refused (413 for the body, 400 for the rest), before any heavy work."""

    max_body_bytes: int = 32 * 2**20
    # width * height of one image, from its header (None: normalcy.image.io.MAX_PIXELS)
    max_image_pixels: int | None = None
    max_images: int = 32  # images per request
    max_items: int = 200_000  # elements of one input tensor (rows, points, lines)
    max_text_bytes: int = 1 * 2**20  # one BYTES text element, as UTF-8 (files: the body limit)
    timeout_s: float = 30.0  # waiting plus scoring; 503 when it runs out waiting, 504 scoring
    max_pending: int = 64  # requests waiting for a worker; past it, 503 at once


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model, as the metadata lists it; -1 is a size any request
    may choose."""

    name: str
    datatypes: tuple[str, ...]
    shape: tuple[int, ...]  # the first form the input accepts
    shapes: tuple[tuple[int, ...], ...] = ()  # further accepted forms (e.g. n or n x d)
    # BYTES only. False: elements are text, valid UTF-8, given to the codec as str. True: elements
    # are files (images), base64 strings in JSON and raw bytes in binary data, given as bytes.
    raw: bool = False

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatypes[0], "shape": list(self.shape)}


@dataclass
class Tensor:
    """A request input: its data is a flat numpy array (numbers), or for BYTES a list of str (text)
    or of bytes (raw inputs); shape checked."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any


@dataclass
class Output:
    name: str
    datatype: str
    data: Any  # numpy array (any shape), or for BYTES a list of str (text) or bytes (files)
    shape: tuple[int, ...] = field(default=())

    def _flat(self) -> tuple[tuple[int, ...], Any]:
        if isinstance(self.data, np.ndarray):
            return self.shape or self.data.shape, self.data.reshape(-1)
        return self.shape or (len(self.data),), list(self.data)

    def to_json(self) -> dict:
        shape, flat = self._flat()
        if self.datatype == "BYTES":
            # JSON strings hold text; bytes (an encoded image) go as base64.
            values = [base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for v in flat]
        elif self.datatype == "BOOL":
            values = np.asarray(flat).astype(bool).tolist()
        elif self.datatype.startswith("FP"):
            # JSON has no NaN or infinity: None stands for a value that is not finite.
            values = [v if math.isfinite(v) else None for v in np.asarray(flat, dtype=np.float64).tolist()]
        else:
            values = np.asarray(flat).tolist()
        return {"name": self.name, "datatype": self.datatype, "shape": [int(s) for s in shape], "data": values}

    def to_binary(self) -> tuple[dict, bytes]:
        """The output as binary tensor data: its JSON entry (with `binary_data_size`) and its bytes:
        little-endian numbers, one byte per BOOL, each BYTES element after its 4-byte length."""
        shape, flat = self._flat()
        if self.datatype == "BYTES":
            # Text that came from a model file may hold lone surrogates: escaped, never an error.
            items = [v if isinstance(v, bytes) else str(v).encode("utf-8", "backslashreplace") for v in flat]
            data = b"".join(struct.pack("<I", len(v)) + v for v in items)
        elif self.datatype == "BOOL":
            data = np.asarray(flat).astype(bool).astype(np.uint8).tobytes()
        else:
            data = np.asarray(flat, dtype=np.dtype(NUMPY[self.datatype]).newbyteorder("<")).tobytes()
        return ({"name": self.name, "datatype": self.datatype, "shape": [int(s) for s in shape],
                 "parameters": {"binary_data_size": len(data)}}, data)


class RequestError(DataError):
    """A request the model cannot take: 400 with its message."""


class Codec:
    """Between protocol tensors and one detector. Subclasses set `modality`, fill `inputs`
    and `outputs` in `__init__`, and implement `decode` and `predict`.

    `concurrent`: whether `predict` may run in several threads at once on this detector
    (True only where scoring reads the detector and nothing else; the server serialises the
    others with a lock per model).
    """

    modality: str = ""
    concurrent: bool = False

    def __init__(self, detector: Detector, limits: Limits):
        self.detector = detector
        self.limits = limits
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []

    def parameters(self) -> dict:
        """Model metadata `parameters`: the modality, detector class and threshold."""
        return {"modality": self.modality, "detector": type(self.detector).__name__,
                "threshold": self.detector.threshold_}

    def decode(self, tensors: dict[str, Tensor], parameters: dict) -> Any:
        """Request tensors (already checked against `inputs`) -> the detector's input. Runs in
        a worker thread; raise RequestError (or DataError) on bad content."""
        raise NotImplementedError

    def predict(self, batch: Any, parameters: dict) -> list[Output]:
        """Score a decoded batch; every output in `outputs` that applies, in that order."""
        raise NotImplementedError

    # --- helpers for subclasses --------------------------------------------------------
    def scored(self, scores: np.ndarray) -> list[Output]:
        """`score` FP64, and `label` BOOL where the model has a threshold."""
        scores = np.asarray(scores, dtype=np.float64)
        out = [Output("score", "FP64", scores)]
        if self.detector.threshold_ is not None:
            out.append(Output("label", "BOOL", scores >= self.detector.threshold_))
        return out

    def score_outputs(self, n: int = -1) -> list[TensorSpec]:
        specs = [TensorSpec("score", ("FP64",), (n,))]
        if self.detector.threshold_ is not None:
            specs.append(TensorSpec("label", ("BOOL",), (n,)))
        return specs


def codec_for(detector: Detector, limits: Limits) -> Codec:
    """The codec of a detector, from the `serving` module of its modality's package
    (`normalcy.<modality>.serving`): a new detector of a modality is served with no more code."""
    name, modality = type(detector).__name__, getattr(detector, "modality", None)
    if modality not in MODALITIES:
        raise ModelFileError(f"{name} is of no normalcy modality ({', '.join(MODALITIES)}), so it cannot be served")
    module = importlib.import_module(f"normalcy.{modality}.serving")
    for base, codec in module.CODECS.items():
        if isinstance(detector, base):
            return codec(detector, limits)
    raise ModelFileError(f"{name} cannot be served: the {modality} modality serves "
                         f"{', '.join(base.__name__ for base in module.CODECS)}")


def split_body(body: bytes, header_length: str | None) -> tuple[Any, memoryview]:
    """A request body as its JSON part and the binary tensor data after it. `header_length` is
    the `Inference-Header-Content-Length` header: without it the whole body is JSON."""
    size = len(body)
    if header_length is not None:
        text = header_length.strip()
        if not (text.isascii() and text.isdigit()):
            raise RequestError(f"Inference-Header-Content-Length must be the JSON header's size in bytes, "
                               f"got {header_length!r}")
        size = int(text)
        if size > len(body):
            raise RequestError(f"Inference-Header-Content-Length is {size} bytes, but the whole body has only "
                               f"{len(body)}")
    try:
        request = json.loads(body[:size], parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        what = "the request body" if header_length is None else \
            f"the request's first {size} bytes (its Inference-Header-Content-Length)"
        raise RequestError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("the request body nests too deeply") from None
    return request, memoryview(body)[size:]


def parse_inputs(body: Any, specs: list[TensorSpec], limits: Limits, binary: bytes | memoryview = b""
                 ) -> dict[str, Tensor]:
    """The request's `inputs` checked against the model's: every declared input present once,
    with an accepted datatype, rank and element count; data converted to numpy (or str/bytes).
    `binary` is the binary tensor data after the JSON header: the inputs with a
    `binary_data_size` take their bytes from it in order, and must use it up exactly."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with an 'inputs' list")
    raw = body.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise RequestError("the request needs an 'inputs' list with at least one tensor")
    wanted = {s.name: s for s in specs}
    tensors: dict[str, Tensor] = {}
    offset = 0
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(f"inputs[{i}] must be an object with a 'name'")
        name = item["name"]
        if name not in wanted:
            raise RequestError(f"unknown input {name!r}; this model takes {_names(specs)}")
        if name in tensors:
            raise RequestError(f"input {name!r} is given twice")
        chunk = None
        size = _binary_size(item)
        if size is not None:
            left = len(binary) - offset
            if size > left:
                raise RequestError(f"input {name!r}: binary_data_size is {size} bytes, but only {left} bytes of "
                                   "binary data are left after the JSON header"
                                   + ("" if len(binary) else " (is Inference-Header-Content-Length missing?)"))
            chunk = binary[offset:offset + size]
            offset += size
        tensors[name] = _parse_tensor(item, wanted[name], limits, chunk)
    if offset != len(binary):
        raise RequestError(f"{len(binary) - offset} bytes of binary data after the JSON header belong to no "
                           "input: the inputs' binary_data_size must add up to the rest of the body")
    missing = [s.name for s in specs if s.name not in tensors]
    if missing:
        raise RequestError(f"missing input(s) {', '.join(map(repr, missing))}; this model takes {_names(specs)}")
    return tensors


def requested_outputs(request: dict, specs: list[TensorSpec]) -> dict[str, bool]:
    """The outputs to send (all when the request names none), each with whether it goes as
    binary data: its own `binary_data` parameter, else the request's `binary_data_output`."""
    parameters = request.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestError("'parameters' must be an object")
    default = parameters.get("binary_data_output", False)
    if not isinstance(default, bool):
        raise RequestError(f"parameter 'binary_data_output' must be true or false, got {default!r}")
    raw = request.get("outputs")
    if raw is None:
        return {s.name: default for s in specs}
    if not isinstance(raw, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw):
        raise RequestError("'outputs' must be a list of objects with a 'name'")
    known = {s.name for s in specs}
    unknown = [o["name"] for o in raw if o["name"] not in known]
    if unknown:
        raise RequestError(f"unknown output(s) {', '.join(map(repr, unknown))}; this model gives "
                           f"{', '.join(map(repr, known))}")
    chosen = {}
    for o in raw:
        options = o.get("parameters") or {}
        binary = options.get("binary_data", default) if isinstance(options, dict) else None
        if not isinstance(binary, bool):
            raise RequestError(f"output {o['name']!r}: parameter 'binary_data' must be true or false")
        chosen[o["name"]] = binary
    return chosen


def encode_response(header: dict, outputs: list[Output], chosen: dict[str, bool]) -> tuple[bytes, int | None]:
    """The response body: `header` plus the chosen outputs, in the codec's order; those marked
    binary as binary data after the JSON. Also the JSON part's length, None when it is the body."""
    entries, chunks = [], []
    for o in outputs:
        if o.name not in chosen:
            continue
        if chosen[o.name]:
            entry, data = o.to_binary()
            chunks.append(data)
        else:
            entry = o.to_json()
        entries.append(entry)
    text = json.dumps({**header, "outputs": entries}).encode()
    if not chunks:
        return text, None
    return b"".join([text, *chunks]), len(text)


def _binary_size(item: dict) -> int | None:
    """An input's `binary_data_size` parameter, checked; None when its data is JSON."""
    name, parameters = item["name"], item.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict):
        raise RequestError(f"input {name!r}: 'parameters' must be an object")
    if "shared_memory_region" in parameters:
        raise RequestError(f"input {name!r}: shared memory is not supported; send 'data' or binary data")
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise RequestError(f"input {name!r}: binary_data_size must be a number of bytes, got {size!r}")
    if "data" in item:
        raise RequestError(f"input {name!r} has both 'data' and binary_data_size; give one")
    return size


def _parse_tensor(item: dict, spec: TensorSpec, limits: Limits, chunk: memoryview | None) -> Tensor:
    name, datatype, shape = spec.name, item.get("datatype"), item.get("shape")
    if datatype not in spec.datatypes:
        raise RequestError(f"input {name!r} has datatype {datatype!r}, expected {_one_of(spec.datatypes)}")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise RequestError(f"input {name!r}: shape must be a non-empty list of sizes, got {shape!r}")
    forms = (spec.shape, *spec.shapes)
    fits = [f for f in forms if len(f) == len(shape) and all(e in (-1, s) for e, s in zip(f, shape))]
    if not fits:
        raise RequestError(f"input {name!r} has shape {shape}, expected {_one_of([_shape(f) for f in forms])}")
    count = math.prod(shape)
    if count > limits.max_items:
        raise RequestError(f"input {name!r} has {count} elements, over the limit of {limits.max_items}")
    if chunk is not None:
        if datatype == "BYTES":
            return Tensor(name, datatype, tuple(shape),
                          _bytes_data(_length_prefixed(chunk, count, name, shape), spec, limits, json_text=False))
        return Tensor(name, datatype, tuple(shape), _binary_numbers(chunk, count, name, shape, datatype))
    data = item.get("data")
    if not isinstance(data, list):
        raise RequestError(f"input {name!r}: 'data' must be a list (or send binary data with binary_data_size)")
    data = _flatten(data, name)
    if len(data) != count:
        raise RequestError(f"input {name!r}: shape {shape} needs {count} values, got {len(data)}")
    if datatype == "BYTES":
        bad = next((i for i, v in enumerate(data) if not isinstance(v, str)), None)
        if bad is not None:
            raise RequestError(f"input {name!r}: BYTES data must be strings, "
                               f"element {bad} is {type(data[bad]).__name__}")
        return Tensor(name, datatype, tuple(shape), _bytes_data(data, spec, limits, json_text=True))
    return Tensor(name, datatype, tuple(shape), _numbers(data, name, datatype))


def _bytes_data(elements: list, spec: TensorSpec, limits: Limits, json_text: bool) -> list:
    """BYTES elements as the codec takes them: str for text (valid Unicode, at most
    `max_text_bytes` as UTF-8), bytes for raw inputs (base64 in JSON)."""
    name = spec.name
    if spec.raw:
        if not json_text:
            return elements
        try:
            return [base64.b64decode(v, validate=True) for v in elements]
        except (binascii.Error, ValueError):
            bad = next(i for i, v in enumerate(elements) if not _is_base64(v))
            raise RequestError(f"input {name!r}: element {bad} is not valid base64") from None
    texts = []
    for i, v in enumerate(elements):
        try:
            # A JSON string may hold a lone surrogate ("\ud800"), which is no Unicode text: it
            # would fail deep inside a model; binary data must be UTF-8, which excludes it too.
            size = len(v.encode("utf-8")) if json_text else len(v)
            text = v if json_text else v.decode("utf-8")
        except UnicodeError as exc:
            what = "a lone surrogate" if isinstance(exc, UnicodeEncodeError) else "bytes that are not UTF-8"
            raise RequestError(f"input {name!r}: element {i} is not valid text: it holds {what} "
                               f"at position {exc.start}") from None
        if size > limits.max_text_bytes:
            raise RequestError(f"input {name!r}: element {i} is longer than the limit of {limits.max_text_bytes} bytes")
        texts.append(text)
    return texts


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _length_prefixed(chunk: memoryview, count: int, name: str, shape: list) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then that many bytes."""
    elements: list[bytes] = []
    offset, end = 0, len(chunk)
    while offset < end:
        if len(elements) == count:
            raise RequestError(f"input {name!r}: its binary data holds more than the {count} elements of shape "
                               f"{shape}")
        if end - offset < 4:
            raise RequestError(f"input {name!r}: element {len(elements)} is truncated: its 4-byte length is cut "
                               f"short")
        (size,) = struct.unpack_from("<I", chunk, offset)
        offset += 4
        if size > end - offset:
            raise RequestError(f"input {name!r}: element {len(elements)} is truncated: its length says {size} "
                               f"bytes, {end - offset} are left")
        elements.append(bytes(chunk[offset:offset + size]))
        offset += size
    if len(elements) != count:
        raise RequestError(f"input {name!r}: shape {shape} needs {count} values, its binary data holds "
                           f"{len(elements)}")
    return elements


def _binary_numbers(chunk: memoryview, count: int, name: str, shape: list, datatype: str) -> np.ndarray:
    """A binary numeric tensor: little-endian, row-major; BOOL is one byte per element."""
    dtype = np.dtype(np.uint8 if datatype == "BOOL" else NUMPY[datatype]).newbyteorder("<")
    if len(chunk) != count * dtype.itemsize:
        raise RequestError(f"input {name!r}: binary_data_size is {len(chunk)} bytes, but shape {shape} of "
                           f"{datatype} takes {count * dtype.itemsize}")
    values = np.frombuffer(chunk, dtype=dtype)
    if datatype == "BOOL":
        bad = np.flatnonzero(values > 1)
        if bad.size:
            raise RequestError(f"input {name!r}: BOOL data must be bytes 0 or 1, element {bad[0]} is {values[bad[0]]}")
        return values.astype(bool)
    # A native-order copy: the body's buffer is not the codec's to keep.
    return values.astype(NUMPY[datatype])


def _numbers(data: list, name: str, datatype: str) -> np.ndarray:
    floating = datatype.startswith("FP")
    if floating and None in data:
        # JSON has no NaN: null is a missing value (tables fill it, series carry the last one on).
        data = [math.nan if v is None else v for v in data]
    kind = bool if datatype == "BOOL" else (int, float) if floating else int
    bad = next((i for i, v in enumerate(data)
                if not isinstance(v, kind) or (isinstance(v, bool) and datatype != "BOOL")), None)
    if bad is not None:
        raise RequestError(f"input {name!r}: {datatype} data must be {_kind_name(datatype)}, "
                           f"element {bad} is {data[bad]!r}")
    try:
        return np.asarray(data, dtype=NUMPY[datatype])
    except OverflowError:
        raise RequestError(f"input {name!r}: a value is out of range for {datatype}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _flatten(data: list, name: str, depth: int = 0) -> list:
    """Row-major flat data; the protocol allows nested lists too."""
    if not any(isinstance(v, list) for v in data):
        return data
    if depth > 8:
        raise RequestError(f"input {name!r}: data nested deeper than 8 levels")
    flat: list = []
    for v in data:
        flat.extend(_flatten(v, name, depth + 1) if isinstance(v, list) else [v])
    return flat


def _one_of(options) -> str:
    return options[0] if len(options) == 1 else "one of " + ", ".join(options)


def _kind_name(datatype: str) -> str:
    return "true/false" if datatype == "BOOL" else "integers" if datatype.startswith(("INT", "UINT")) else "numbers"


def _shape(form: tuple[int, ...]) -> str:
    return "[" + ", ".join("n" if s == -1 else str(s) for s in form) + "]"


def _names(specs: list[TensorSpec]) -> str:
    return ", ".join(repr(s.name) for s in specs)
