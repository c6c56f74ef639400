"""The detector contract (normalcy.core.checks) over every registry: each registered detector
of each modality, with that modality's sample data from tests/contract_<modality>.py (a
`case()` returning a `Case`, and `PARAMS`: per-detector constructor arguments that keep the
checks fast)."""

from __future__ import annotations

import importlib

import pytest

from normalcy.core import checks
from normalcy.core.registry import MODALITIES, build, detectors


def _cases():
    for modality in MODALITIES:
        for name in detectors(modality):
            yield pytest.param(modality, name, id=f"{modality}-{name}")


@pytest.fixture(scope="module")
def modality_data():
    cache = {}

    def get(modality):
        if modality not in cache:
            module = importlib.import_module(f"contract_{modality}")
            cache[modality] = (module.case(), getattr(module, "PARAMS", {}))
        return cache[modality]

    return get


@pytest.mark.parametrize("check", checks.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("modality, name", list(_cases()))
def test_contract(modality, name, check, modality_data, tmp_path):
    case, params = modality_data(modality)
    check(build(modality, name, params.get(name, {})), case, tmp_path)
