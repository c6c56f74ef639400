"""A manifest fuzzer: thousands of model folders whose manifests were mutated (fields removed,
added, retyped, resized; class paths swapped) with valid checksums, as anyone who can write a
model folder could make them. Loading each must either work or raise ModelFileError, never
another exception, and must import nothing outside the modality packages; a model that loads
must score or refuse with a NormalcyError."""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import sys

import numpy as np
import pytest

from normalcy.core import modelfile
from normalcy.core.errors import ModelFileError, NormalcyError
from normalcy.core.registry import MODALITIES, CLASSES, build, detectors

CASES_PER_MODEL = 250
# Cheap detectors of every modality whose manifests carry the most varied params and state.
MODELS = {"tabular": ["knn", "iforest", "ensemble"], "timeseries": ["rolling-mad", "multiscale-novelty"],
          "events": ["frequency", "ape"], "logs": ["pca", "invariants"]}
VALUES = [None, True, False, 0, -1, 1, 3, 2**31, 2**63, -(2**63), 1e308, -1e308, 0.5, 1e-320, "", "x", "0",
          "normalcy.__main__.X", "(a+)+$", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
          "a" * 10_000, [], [1, 2], ["a"], [[[[[[[[]]]]]]]], {}, {"a": 1}, {"": None}, list(range(1000))]
CLASS_PATHS = ["normalcy.__main__.X", "os.system", "normalcy.image.base.ImageDetector", "normalcy.core.detector.Detector",
               "normalcy.cli.main.main", "subprocess.Popen", "normalcy.timeseries.nosuch.Nope", "builtins.eval"]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list) and node:
        for i in {0, len(node) - 1}:
            yield from _paths(node[i], (*prefix, i))


def _mutate(manifest: dict, rng: np.random.Generator) -> dict:
    manifest = copy.deepcopy(manifest)
    paths = [p for p in _paths(manifest) if p and p[0] not in ("manifest_sha256",)]
    path = paths[rng.integers(len(paths))]
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    kind = rng.integers(6)
    if kind == 0 and isinstance(parent, dict):
        del parent[key]
    elif kind == 1 and isinstance(parent, dict):
        parent[f"extra{rng.integers(3)}"] = VALUES[rng.integers(len(VALUES))]
    elif kind == 2:
        pool = CLASS_PATHS + sorted(CLASSES)
        manifest["class"] = pool[rng.integers(len(pool))]
    elif kind == 3 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
        parent[key] = type(parent[key])(parent[key] * rng.choice([-1, 0, 2, 1000, 1e300]))
    else:
        parent[key] = VALUES[rng.integers(len(VALUES))]
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    manifest["manifest_sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return manifest


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    models = []
    for modality, names in MODELS.items():
        case = importlib.import_module(f"contract_{modality}").case()
        params = getattr(importlib.import_module(f"contract_{modality}"), "PARAMS", {})
        for name in names:
            path = tmp_path_factory.mktemp(name) / "model"
            build(modality, name, params.get(name, {})).fit(case.fit).set_threshold(1.0).save(path)
            models.append((name, path, case.test))
    return models


def test_mutated_manifests_load_or_fail_clearly_and_import_nothing(saved_models, monkeypatch):
    for modality in MODALITIES:  # a mutated class path may name any modality's detectors
        detectors(modality)
    imported = []
    real_import = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a, **k: imported.append(name) or real_import(name, *a, **k))
    before = set(sys.modules)
    rng = np.random.default_rng(2026)
    outcomes = {"loaded": 0, "refused": 0}
    for name, path, test_items in saved_models:
        original = json.loads((path / "manifest.json").read_text())
        for i in range(CASES_PER_MODEL):
            mutated = _mutate(original, rng)
            (path / "manifest.json").write_text(json.dumps(mutated))
            try:
                detector = modelfile.load(path)
            except ModelFileError:
                outcomes["refused"] += 1
                continue
            except Exception as exc:  # noqa: BLE001 - the test is that nothing else escapes
                pytest.fail(f"{name} case {i}: {type(exc).__name__}: {exc}\nmanifest: {json.dumps(mutated)[:2000]}")
            outcomes["loaded"] += 1
            try:
                detector.decision_function(test_items)
            except NormalcyError:
                pass
            except Exception as exc:  # noqa: BLE001
                pytest.fail(f"{name} case {i} loaded, then scoring raised {type(exc).__name__}: {exc}\n"
                            f"manifest: {json.dumps(mutated)[:2000]}")
        (path / "manifest.json").write_text(json.dumps(original))
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0, outcomes
    assert sum(outcomes.values()) == CASES_PER_MODEL * len(saved_models) >= 2000
    allowed = {f"normalcy.{m}" for m in MODALITIES}
    assert set(imported) <= allowed, sorted(set(imported) - allowed)
    assert set(sys.modules) - before == set()
