"""The `normalcy alerts` commands as a user runs them: fit, rank (with and without feedback),
evaluate, models, and bad input as one line with no output left behind; one real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clirunner import run_in_process
from normalcy.alerts.evaluate import precision_at_k


def run(*args: str):
    return run_in_process("alerts", *args)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A history where host h0 keeps raising 'av-update' (routine), and a queue where two hosts
    raise 'ransom-note' (new, true) among routine alerts (false)."""
    root = tmp_path_factory.mktemp("alerts")
    rng = np.random.default_rng(8)
    n = 200
    hosts = rng.choice(["h0", "h1", "h2"], size=n)
    pd.DataFrame({"time": 60.0 * np.arange(n), "host": hosts, "rule": [f"r-{h}" for h in hosts],
                  "type": np.where(hosts == "h0", "av-update", rng.choice(["login-fail", "port-scan"], size=n)),
                  "severity": rng.integers(1, 4, size=n)}).to_csv(root / "history.csv", index=False)
    queue = pd.DataFrame({"time": [f"1970-01-02T00:0{i}:00Z" for i in range(8)],
                          "host": ["h0", "h1", "h0", "h2", "h0", "h1", "h2", "h0"],
                          "rule": ["r-h0", "r-h1", "r-h0", "r-h2", "r-h0", "r-h1", "r-h2", "r-h0"],
                          "type": ["av-update", "ransom-note", "av-update", "port-scan", "av-update", "login-fail",
                                   "ransom-note", "av-update"],
                          "severity": [3, 1, 3, 2, 3, 2, 1, 3]})
    queue["truth"] = (queue["type"] == "ransom-note").astype(int)
    queue.to_csv(root / "queue.csv", index=False)
    queue.iloc[[0, 2]].assign(verdict=["fp", "fp"]).to_csv(root / "verdicts.csv", index=False)
    return root


@pytest.fixture(scope="module")
def model(files) -> Path:
    out = files / "car.model"
    result = run("fit", "--data", str(files / "history.csv"), "--out", str(out), "--entities", "host,rule",
                 "--score-column", "severity", "--param", 'content_params={"epochs": 5}')
    assert result.returncode == 0, result.stderr
    assert "200 alerts of 3 types from 3 host stream(s); entities host, rule; raw score severity" in result.stdout
    return out


def test_rank_writes_the_queue_best_first_with_percentiles_and_reasons(model, files, tmp_path):
    out = tmp_path / "ranked.csv"
    result = run("rank", str(model), "--data", str(files / "queue.csv"), "--out", str(out), "--top", "2")
    assert result.returncode == 0, result.stderr
    ranked = pd.read_csv(out)
    assert list(ranked["rank"]) == list(range(1, 9))
    assert (np.diff(ranked["score"]) <= 0).all()
    for column in ("prior", "sequence_percentile", "content_percentile", "score_percentile", "reasons", "truth"):
        assert column in ranked.columns
    assert ranked["reasons"].str.startswith("sequence: ").all()
    assert "8 alerts ranked" in result.stdout and len(result.stdout.strip().splitlines()) == 3
    # The new type is as surprising as anything in the history; h0's routine, repeated in the
    # queue, is expected and its repeats sink to the bottom although their severity is the highest.
    assert (ranked.loc[ranked["type"] == "ransom-note", "sequence_percentile"] == 1.0).all()
    assert set(ranked["type"][-2:]) == {"av-update"}


def test_feedback_sinks_the_pattern_analysts_dismissed(model, files, tmp_path):
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    run("rank", str(model), "--data", str(files / "queue.csv"), "--out", str(before))
    result = run("rank", str(model), "--data", str(files / "queue.csv"), "--out", str(after),
                 "--feedback", str(files / "verdicts.csv"))
    assert result.returncode == 0, result.stderr
    b, a = (pd.read_csv(p).set_index("time") for p in (before, after))
    routine = b.index[b["type"] == "av-update"]
    assert (a.loc[routine, "score"] < b.loc[routine, "score"]).all()
    assert a.loc[routine, "reasons"].str.contains("feedback: 0 of 2 reviewed alerts with the same type were true").all()
    others = b.index[b["type"] != "av-update"]
    np.testing.assert_allclose(a.loc[others, "score"], b.loc[others, "score"])


def test_evaluate_reports_precision_and_ndcg_that_match_the_ranked_file(model, files, tmp_path):
    out, report = tmp_path / "ranked.csv", tmp_path / "metrics.json"
    run("rank", str(model), "--data", str(files / "queue.csv"), "--out", str(out))
    result = run("evaluate", str(model), "--data", str(files / "queue.csv"), "--json", str(report))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(report.read_text())
    ranked = pd.read_csv(out)
    assert metrics["n_alerts"] == 8 and metrics["n_true"] == 2
    assert metrics["precision_at_10"] == pytest.approx(precision_at_k(ranked["truth"], ranked["score"], 10))
    assert metrics["precision_at_10"] == pytest.approx(2 / 8)  # k is capped at the 8 alerts
    assert "precision_at_50" in result.stdout and "ndcg" in result.stdout


def test_models_lists_car_with_its_parameters():
    result = run("models")
    assert result.returncode == 0 and result.stdout.startswith("car: CAR (Lin et al. 2018)")
    assert "prior_strength=2.0" in result.stdout


@pytest.mark.parametrize("make_bad, message", [
    (lambda q: q.assign(host=["h0", None, "h0", "h2", "h0", "h1", "h2", "h0"]), "column 'host' is empty at row 1"),
    (lambda q: q.drop(columns="rule"), "missing alert column(s) rule"),
    (lambda q: q.assign(time=["soon"] * 8), "column 'time' at row 0 holds 'soon'"),
    (lambda q: q.assign(severity=["high"] * 8), "column 'severity' at row 0 holds 'high'"),
    (lambda q: q.assign(verdict=["maybe"] * 8), "verdict column 'verdict' at row 0 holds 'maybe'"),
])
def test_bad_input_is_one_clear_line_and_no_output(model, files, tmp_path, make_bad, message):
    bad, out = tmp_path / "bad.csv", tmp_path / "ranked.csv"
    make_bad(pd.read_csv(files / "queue.csv")).to_csv(bad, index=False)
    result = run("rank", str(model), "--data", str(bad), "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_real_process_ranks_and_reports_a_missing_model_in_one_line(model, files, tmp_path):
    out = tmp_path / "ranked.parquet"
    ok = subprocess.run([sys.executable, "-m", "normalcy", "alerts", "rank", str(model), "--data",
                         str(files / "queue.csv"), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert len(pd.read_parquet(out)) == 8
    bad = subprocess.run([sys.executable, "-m", "normalcy", "alerts", "rank", str(tmp_path / "none"), "--data",
                          str(files / "queue.csv"), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_a_source_column_adds_the_corroboration_part_to_the_ranked_file(files, tmp_path):
    out = tmp_path / "sourced.model"
    result = run("fit", "--data", str(files / "history.csv"), "--out", str(out), "--entities", "host,rule",
                 "--source", "rule", "--param", 'content_params={"epochs": 2}')
    assert result.returncode == 0, result.stderr
    assert "entities host, rule; source rule" in result.stdout
    ranked_file = tmp_path / "ranked.csv"
    assert run("rank", str(out), "--data", str(files / "queue.csv"), "--out", str(ranked_file)).returncode == 0
    ranked = pd.read_csv(ranked_file)
    # each host hears from one rule: one source per stream, the history's only value
    assert (ranked["corroboration_percentile"] == 0.5).all()
    assert ranked["reasons"].str.contains("corroboration: 1 distinct rule value").all()
    result = run("fit", "--data", str(files / "history.csv"), "--out", str(tmp_path / "bad.model"), "--source", "host")
    assert result.returncode == 2 and "is the stream column" in result.stderr
