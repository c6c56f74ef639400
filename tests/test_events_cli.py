"""The `normalcy events` commands as a user runs them: exit codes, messages, files. Most run the
CLI's `main` in this process (a new interpreter costs seconds of imports); one runs a real
process to check the whole path from the shell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from clirunner import run_in_process


def run(*args: str) -> SimpleNamespace:
    """`normalcy events ARGS` through the CLI's entry point: returncode, stdout, stderr."""
    return run_in_process("events", *args)


def events(rng: np.random.Generator, n: int) -> pd.DataFrame:
    team = rng.integers(3, size=n)
    return pd.DataFrame({"user": [f"u{t}{i}" for t, i in zip(team, rng.integers(6, size=n))],
                         "host": [f"h{t}{i}" for t, i in zip(team, rng.integers(3, size=n))],
                         "port": rng.choice(["22", "80", "443"], size=n)})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("events")
    rng = np.random.default_rng(2)
    events(rng, 500).to_csv(root / "train.csv", index=False)
    new = events(rng, 30)
    new["y"] = 0
    new.loc[:4, "host"] = [f"h{(int(u[1]) + 1) % 3}0" for u in new.user[:5]]  # another team's host
    new.loc[:4, "y"] = 1
    new.to_csv(root / "new.csv", index=False)
    new.to_parquet(root / "new.parquet")
    return root


@pytest.fixture(scope="module")
def fitted(files) -> tuple[Path, SimpleNamespace]:
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(files / "m"), "--columns", "user,host,port")
    assert result.returncode == 0, result.stderr
    return files / "m", result


@pytest.fixture(scope="module")
def model(fitted) -> Path:
    return fitted[0]


def test_fit_saves_ape_with_vocabularies_and_a_threshold(model):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.events.ape.APE"
    assert manifest["state"]["encoder"]["columns"] == ["user", "host", "port"]
    assert sorted(manifest["state"]["encoder"]["vocab"][2]) == ["22", "443", "80"]
    assert isinstance(manifest["threshold"], float)
    assert manifest["calibration"]["n_items"] == 50  # the default holdout of 10 % of 500 events


def test_fit_message_says_how_many_events_trained_and_how_many_held_out_set_the_threshold(fitted):
    model, result = fitted
    threshold = json.loads((model / "manifest.json").read_text())["threshold"]
    [line] = result.stdout.splitlines()
    assert line.startswith(f"saved ape on 450 events of user, host, port to {model} (threshold {threshold:.6g}: "
                           "fpr:0.01 from 50 held-out events")
    # 50 held-out events cannot resolve a 1 % false-alarm rate: the user is told so, once (no
    # Python warning beside it).
    assert result.stderr.startswith("warning: 50 held-out normal items cannot resolve a false-alarm rate of 0.01")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_inputs_score_label_and_least_compatible_pair(model, files, tmp_path, suffix):
    out = tmp_path / f"scored{suffix}"
    result = run("score", str(model), "--data", str(files / "new.parquet"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scored = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out, dtype={"port": str})
    new = pd.read_parquet(files / "new.parquet")
    assert list(scored.columns) == [*new.columns, "score", "label", "least_compatible"]
    assert scored.score[:5].min() > scored.score[5:].max()  # the planted cross-team events
    for row in scored.head(5).itertuples():
        assert f"host={row.host}" in row.least_compatible


def test_evaluate_prints_the_shared_report_and_writes_metrics_that_match_sklearn(model, files, tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    from normalcy.core.modelfile import load

    out = tmp_path / "metrics.json"
    result = run("evaluate", str(model), "--data", str(files / "new.csv"), "--label-column", "y", "--json", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    new = pd.read_csv(files / "new.csv", dtype=str)
    scores = load(model).decision_function(new)
    assert metrics["auroc"] == pytest.approx(roc_auc_score(new.y.astype(int), scores))
    assert metrics["auprc"] == pytest.approx(average_precision_score(new.y.astype(int), scores))
    assert metrics["n_anomalies"] == 5 and metrics["tp"] + metrics["fn"] == 5
    # One format for every modality: "name value" pairs named as in the JSON, then where it went.
    figures, wrote = result.stdout.splitlines()
    assert f"auroc {metrics['auroc']:.4f}" in figures and f"precision {metrics['precision']:.4f}" in figures
    assert wrote == f"wrote {out}"
    again = run("evaluate", str(model), "--data", str(files / "new.csv"), "--label-column", "y")
    assert again.returncode == 0 and again.stdout.splitlines() == [figures]


def test_frequency_with_pairs_through_param_round_trip(files, tmp_path):
    out = tmp_path / "f"
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(out), "--model", "frequency",
                 "--param", "pairs=true", "--threshold", "fixed:9")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"saved frequency on 500 events of user, host, port to {out} (threshold 9: fixed:9")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["pairs"] is True and manifest["threshold"] == 9.0
    result = run("score", str(out), "--data", str(files / "new.csv"), "--out", str(tmp_path / "s.csv"))
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "s.csv")
    assert scored.score[:5].min() > scored.score[5:].max()  # pairs see the planted cross-team events


def test_models_lists_every_registered_detector_with_its_parameters():
    result = run("models")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")] == ["ape", "frequency"]
    assert "seed=0" in result.stdout and "pairs=False" in result.stdout


@pytest.mark.parametrize("make_bad, message", [
    (lambda d: d.drop(columns="port").to_csv(d.attrs["path"], index=False), "missing entity column(s) port"),
    (lambda d: d.assign(user=[None] + list(d.user[1:])).to_csv(d.attrs["path"], index=False),
     "column 'user' has no entity at row 0"),
    (lambda d: Path(d.attrs["path"]).write_text(""), "empty"),
])
def test_bad_input_is_one_clear_line_and_no_output(model, files, tmp_path, make_bad, message):
    frame = pd.read_csv(files / "new.csv", dtype=str)
    frame.attrs["path"] = str(tmp_path / "bad.csv")
    make_bad(frame)
    out = tmp_path / "out.csv"
    result = run("score", str(model), "--data", str(tmp_path / "bad.csv"), "--out", str(out))
    assert result.returncode == 2
    assert message in result.stderr and "bad.csv" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_real_process_reports_bad_input_in_one_line_with_status_2(model, files, tmp_path):
    pd.read_csv(files / "new.csv", dtype=str).drop(columns="host").to_csv(tmp_path / "bad.csv", index=False)
    result = subprocess.run([sys.executable, "-m", "normalcy", "events", "score", str(model), "--data",
                             str(tmp_path / "bad.csv"), "--out", str(tmp_path / "o.csv")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'bad.csv'}: missing entity column(s) host; expected user, host, port "
        "(found user, port, y)"]
    assert not (tmp_path / "o.csv").exists()


def test_fit_with_unknown_column_model_or_parameter_fails_clearly(files, tmp_path):
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"), "--columns", "user,nope")
    assert result.returncode == 2 and "missing entity column(s) nope" in result.stderr
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"), "--model", "lstm")
    assert result.returncode == 2
    assert result.stderr == "error: unknown events detector 'lstm'; expected one of ape, frequency\n"
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"), "--model", "frequency",
                 "--param", "dim=3")
    assert result.returncode == 2 and "frequency has no parameter(s) dim" in result.stderr
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"), "--param", "dim=0")
    assert result.returncode == 2 and "APE dim must be a whole number >= 1" in result.stderr
    assert not (tmp_path / "m").exists()


def test_a_gap_in_the_fitted_part_of_a_holdout_split_names_the_file(files, tmp_path):
    frame = pd.read_csv(files / "train.csv", dtype=str)
    frame.loc[100, "host"] = None
    frame.to_csv(tmp_path / "gap.csv", index=False)
    result = run("fit", "--data", str(tmp_path / "gap.csv"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'gap.csv'}: column 'host' has no entity at row 100")


def test_another_modality_model_is_refused_by_events_score(files, tmp_path):
    from normalcy.logs import UnseenTemplates

    UnseenTemplates().fit([[1, 2], [2, 3]]).save(tmp_path / "t")
    result = run("score", str(tmp_path / "t"), "--data", str(files / "new.csv"), "--out", str(tmp_path / "o.csv"))
    assert result.returncode == 2 and "expected a model of kind EventDetector" in result.stderr
