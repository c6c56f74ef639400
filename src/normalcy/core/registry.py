"""Which detectors exist: one registry per modality, filled by the detector classes themselves.

A concrete detector class with a `name` registers itself when its module is imported
(`Detector.__init_subclass__`); a modality package imports its detector modules in its
`__init__`, so adding a detector is one new file plus one import line. The registry is the
single source for the CLI's `--model` choices, the benchmarks' detector lists, serving and
the contract tests. Model files name classes by path (`module.QualName`) and load only classes
found here, importing nothing but the modality packages listed in MODALITIES.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import TYPE_CHECKING

from normalcy.core.errors import DataError

if TYPE_CHECKING:
    from normalcy.core.detector import Detector

MODALITIES = ("image", "tabular", "timeseries", "events", "logs", "text", "alerts", "cloud", "embeddings", "api")

# "module.QualName" -> class, for every concrete detector: the only classes a model file may name.
CLASSES: dict[str, type["Detector"]] = {}
# modality -> name -> class, for the detectors with a `name`.
_BY_NAME: dict[str, dict[str, type["Detector"]]] = {}


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(cls: type["Detector"]) -> None:
    CLASSES[class_path(cls)] = cls
    name = cls.__dict__.get("name")
    if name is None:
        return
    modality = getattr(cls, "modality", None)
    if modality is None:
        raise TypeError(f"{cls.__qualname__} has a name but no modality: subclass a modality's base detector")
    taken = _BY_NAME.setdefault(modality, {}).get(name)
    if taken is not None and class_path(taken) != class_path(cls):
        raise TypeError(f"{modality} detector name {name!r} is taken by {class_path(taken)}")
    _BY_NAME[modality][name] = cls


def detectors(modality: str) -> dict[str, type["Detector"]]:
    """name -> class for every detector of a modality, in registration order."""
    _import_modality(modality)
    return dict(_BY_NAME.get(modality, {}))


def detector_class(modality: str, name: str) -> type["Detector"]:
    found = detectors(modality)
    if name not in found:
        raise DataError(f"unknown {modality} detector {name!r}; expected one of {', '.join(found)}")
    return found[name]


# Class paths model files were written with before the class moved: old -> new.
MOVED = {"normalcy.spark.sequence.EntitySequence": "normalcy.logs.entity_sequence.EntitySequence"}


def resolve(path: str) -> type["Detector"] | None:
    """The registered class at a model file's class path, or None; imports only a modality
    package named by the path, never the module the path names."""
    path = MOVED.get(path, path)
    if path not in CLASSES:
        parts = path.split(".")
        if len(parts) > 2 and parts[0] == "normalcy" and parts[1] in MODALITIES:
            _import_modality(parts[1])
    return CLASSES.get(path)


def build(modality: str, name: str, params: dict | None = None) -> "Detector":
    """A new detector by name, its parameters checked against the constructor."""
    cls = detector_class(modality, name)
    params = dict(params or {})
    check_params(cls, params)
    return cls(**params)


def check_params(cls: type, params: dict) -> None:
    accepted = parameter_names(cls)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise DataError(f"{getattr(cls, 'name', cls.__name__)} has no parameter(s) {', '.join(unknown)}; "
                        f"its parameters are {', '.join(accepted) or '(none)'}")


def parameter_names(cls: type) -> list[str]:
    return [p.name for p in inspect.signature(cls.__init__).parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def parse_params(pairs: list[str] | None, cls: type | None = None) -> dict:
    """`["k=3", "note=plain", "members=[\"knn\",\"ecod\"]"]` -> {"k": 3, ...}: each value is read
    as JSON when it parses, else kept as text; names are checked against `cls` when given."""
    params = {}
    for pair in pairs or []:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise DataError(f"--param {pair!r} not understood; expected NAME=VALUE")
        try:
            params[key] = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            params[key] = text
    if cls is not None:
        check_params(cls, params)
    return params


def _import_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise DataError(f"unknown modality {modality!r}; expected one of {', '.join(MODALITIES)}")
    importlib.import_module(f"normalcy.{modality}")
