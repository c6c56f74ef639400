"""docs/contributing.md's promise: a new detector is one class. A throwaway time-series
detector defined here, and nothing else, is listed by the CLI, fitted and scored through it,
served over HTTP, and passes the contract checks; the registry is restored afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV
from starlette.testclient import TestClient

import contract_timeseries
from clirunner import run_in_process
from normalcy.core import checks, registry
from normalcy.core.modelfile import load
from normalcy.serve.app import create_app


@pytest.fixture
def zscore(monkeypatch):
    """The docs' example detector, registered for this test only."""
    monkeypatch.setattr(registry, "CLASSES", dict(registry.CLASSES))
    monkeypatch.setattr(registry, "_BY_NAME", {k: dict(v) for k, v in registry._BY_NAME.items()})
    from normalcy.timeseries.base import TimeSeriesDetector

    class ZScore(TimeSeriesDetector):
        """The z-score of each variable against its last `history` readings."""

        name = "throwaway-zscore"

        def _variable_scores(self, past, x):
            return np.abs(x - past.mean(axis=0)) / (past.std(axis=0) + 1e-9)

    return ZScore


def test_a_new_detector_is_one_class(zscore, tmp_path):
    assert registry.detectors("timeseries")["throwaway-zscore"] is zscore

    listed = run_in_process("ts", "models")
    assert listed.returncode == 0 and "throwaway-zscore" in listed.stdout

    rng = np.random.default_rng(0)
    values = np.sin(np.arange(600) / 10) + 0.1 * rng.normal(size=600)
    pd.DataFrame({"value": values[:500]}).to_csv(tmp_path / "train.csv", index=False)
    test = values[500:].copy()
    test[50] += 5.0
    pd.DataFrame({"value": test}).to_csv(tmp_path / "test.csv", index=False)
    fitted = run_in_process("ts", "fit", str(tmp_path / "train.csv"), "--model", "throwaway-zscore",
                            "--param", "history=50", "--param", "likelihood=false", "--out", str(tmp_path / "m"))
    assert fitted.returncode == 0, fitted.stderr
    model = load(tmp_path / "m")
    assert type(model) is zscore and model.history == 50
    scored = run_in_process("ts", "score", str(tmp_path / "m"), str(tmp_path / "test.csv"), "--out", str(tmp_path / "s.csv"))
    assert scored.returncode == 0, scored.stderr
    scores = pd.read_csv(tmp_path / "s.csv")["score"].to_numpy()
    assert int(np.argmax(scores)) == 50
    checks.assert_same_scores(scores, model.decision_function(test[:, None]))

    with TestClient(create_app([("z", tmp_path / "m")])) as client:
        metadata = client.get("/v2/models/z").json()
        body = {"inputs": [{"name": metadata["inputs"][0]["name"], "datatype": "FP64", "shape": [100, 1],
                            "data": test.tolist()}]}
        answer = client.post("/v2/models/z/infer", json=body)
    assert answer.status_code == 200, answer.text
    served = next(o for o in answer.json()["outputs"] if o["name"] == "score")["data"]
    checks.assert_same_scores(served, scores)

    checks.check_detector(zscore(history=30, warmup=10), contract_timeseries.case(), tmp_path)


def test_grid_search_with_an_auroc_scorer_selects_a_parameter(zscore):
    rng = np.random.default_rng(1)
    X = np.sin(np.arange(400) / 8)[:, None] + 0.05 * rng.normal(size=(400, 1))
    y = np.zeros(400, dtype=int)
    y[[150, 300]] = 1
    X[[150, 300]] += 3.0
    search = GridSearchCV(zscore(likelihood=False, warmup=5), {"history": [10, 40]}, scoring="roc_auc",
                          cv=[(np.arange(100), np.arange(100, 400))]).fit(X, y)
    assert search.best_params_["history"] in (10, 40) and search.best_score_ > 0.9
