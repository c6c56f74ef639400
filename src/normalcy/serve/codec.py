"""What a modality implements to be served, and the protocol tensors it reads and writes.

Each modality package has a module `serving` with `CODECS`, a dict from the detector base
classes it can serve to their `Codec` classes. A codec declares the model's input and output
tensors (the protocol's model metadata), turns request tensors into the detector's input
(`decode`) and a batch into output tensors (`predict`). This module imports no web
framework: the codecs depend on it, not on the server.

Request tensors are checked here against the declared inputs (name, datatype, rank, element
count), so every error names the input and what was expected.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normalcy.core.detector import Detector
from normalcy.core.errors import DataError, ModelFileError

# Protocol datatype -> numpy dtype (BYTES are Python strings here).
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
    max_text_bytes: int = 1 * 2**20  # one BYTES element
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

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": self.datatypes[0], "shape": list(self.shape)}


@dataclass
class Tensor:
    """A request input: its data is a flat numpy array (numbers) or list of str (BYTES), shape checked."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any


@dataclass
class Output:
    name: str
    datatype: str
    data: Any  # numpy array (any shape) or list of str
    shape: tuple[int, ...] = field(default=())

    def to_json(self) -> dict:
        if isinstance(self.data, np.ndarray):
            shape = self.shape or self.data.shape
            flat = self.data.reshape(-1)
            if self.datatype == "BOOL":
                values = flat.astype(bool).tolist()
            elif self.datatype.startswith("FP"):
                # JSON has no NaN or infinity: None stands for a value that is not finite.
                values = [v if math.isfinite(v) else None for v in flat.astype(np.float64).tolist()]
            else:
                values = flat.tolist()
        else:
            shape = self.shape or (len(self.data),)
            values = list(self.data)
        return {"name": self.name, "datatype": self.datatype, "shape": [int(s) for s in shape], "data": values}


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
    """The codec of a detector, from the `serving` module of the package its class lives in."""
    parts = type(detector).__module__.split(".")
    name = type(detector).__name__
    if len(parts) < 3 or parts[0] != "normalcy":
        raise ModelFileError(f"{name} is not a normalcy detector; only normalcy's modalities can be served")
    module_name = f"normalcy.{parts[1]}.serving"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise ModelFileError(f"{name}: the {parts[1]} modality has no {module_name} module, "
                             "so it cannot be served") from None
    for base, codec in module.CODECS.items():
        if isinstance(detector, base):
            return codec(detector, limits)
    raise ModelFileError(f"{name} cannot be served: the {parts[1]} modality serves "
                         f"{', '.join(base.__name__ for base in module.CODECS)}")


def parse_inputs(body: Any, specs: list[TensorSpec], limits: Limits) -> dict[str, Tensor]:
    """The request's `inputs` checked against the model's: every declared input present once,
    with an accepted datatype, rank and element count; data converted to numpy (or str)."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object with an 'inputs' list")
    raw = body.get("inputs")
    if not isinstance(raw, list) or not raw:
        raise RequestError("the request needs an 'inputs' list with at least one tensor")
    wanted = {s.name: s for s in specs}
    tensors: dict[str, Tensor] = {}
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise RequestError(f"inputs[{i}] must be an object with a 'name'")
        name = item["name"]
        if name not in wanted:
            raise RequestError(f"unknown input {name!r}; this model takes {_names(specs)}")
        if name in tensors:
            raise RequestError(f"input {name!r} is given twice")
        tensors[name] = _parse_tensor(item, wanted[name], limits)
    missing = [s.name for s in specs if s.name not in tensors]
    if missing:
        raise RequestError(f"missing input(s) {', '.join(map(repr, missing))}; this model takes {_names(specs)}")
    return tensors


def _parse_tensor(item: dict, spec: TensorSpec, limits: Limits) -> Tensor:
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
    data = item.get("data")
    if not isinstance(data, list):
        raise RequestError(f"input {name!r}: 'data' must be a list")
    data = _flatten(data, name)
    if len(data) != count:
        raise RequestError(f"input {name!r}: shape {shape} needs {count} values, got {len(data)}")
    if datatype == "BYTES":
        bad = next((i for i, v in enumerate(data) if not isinstance(v, str)), None)
        if bad is not None:
            raise RequestError(f"input {name!r}: BYTES data must be strings, "
                               f"element {bad} is {type(data[bad]).__name__}")
        long = next((i for i, v in enumerate(data) if len(v) > limits.max_text_bytes), None)
        if long is not None:
            raise RequestError(f"input {name!r}: element {long} is longer than the limit of {limits.max_text_bytes}")
        return Tensor(name, datatype, tuple(shape), data)
    return Tensor(name, datatype, tuple(shape), _numbers(data, name, datatype))


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
