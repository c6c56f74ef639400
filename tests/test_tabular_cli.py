"""The `normalcy table` commands as a user runs them: exit codes, messages, files. In-process
(tests/clirunner.py), but for one smoke test in a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from clirunner import run_in_process

from normalcy.core import load
from normalcy.core.registry import detectors


def run(*args: str):
    return run_in_process("table", *args)


def rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["kind"] = rng.choice(["x", "y"], size=n)
    frame["id"] = np.arange(n)
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("table")
    rng = np.random.default_rng(5)
    rows(rng, 300).to_csv(root / "train.csv", index=False)
    new = rows(rng, 20)
    new.loc[0, ["a", "b", "c"]] = 40.0
    new.loc[1, "kind"] = "never seen"
    new.to_parquet(root / "new.parquet")
    return root


@pytest.fixture(scope="module")
def fitted(files):
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(files / "m"), "--model", "ecod",
                 "--drop", "id")
    assert result.returncode == 0, result.stderr
    return files / "m", result


@pytest.fixture(scope="module")
def model(fitted) -> Path:
    return fitted[0]


def test_a_real_process_fits(files, tmp_path):
    """The one smoke test through `python -m normalcy` (entry point, exit code, files); the
    rest runs the same entry function in this process."""
    fit = subprocess.run([sys.executable, "-m", "normalcy", "table", "fit", "--data", str(files / "train.csv"),
                          "--out", str(tmp_path / "m"), "--model", "hbos", "--drop", "id"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert fit.returncode == 0 and fit.stdout.startswith(f"saved hbos on 4 columns to {tmp_path / 'm'}"), fit.stderr
    assert len(load(tmp_path / "m").decision_function(files / "new.parquet")) == 20


def test_fit_writes_a_model_with_a_threshold_and_without_dropped_columns(model):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.tabular.ecod.ECOD"
    assert manifest["threshold"] > 0
    assert manifest["state"]["encoder"]["columns"] == ["a", "b", "c", "kind"]
    assert manifest["calibration"]["n_items"] == 30


def test_fit_says_how_many_held_out_rows_set_the_threshold_and_warns_when_too_few(fitted, files, tmp_path):
    """Issue 22 item 2, issue 12 item 13: no word of the held-out size before."""
    model, result = fitted
    detector = load(model)
    assert result.stdout == (f"saved ecod on 4 columns to {model} (threshold {detector.threshold_:.6g}: "
                             f"{detector.calibration_.describe('rows')})\n")
    assert "fpr:0.01 from 30 held-out rows" in result.stdout
    assert result.stderr == f"warning: {detector.calibration_.note}\n" and "30 held-out" in result.stderr
    enough = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "e"), "--model", "ecod",
                 "--drop", "id", "--threshold", "fpr:0.05", "--holdout", "0.2")
    assert "fpr:0.05 from 60 held-out rows" in enough.stdout and "; flags 5.0% of them" in enough.stdout
    assert enough.stderr == ""


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_score_writes_input_columns_score_and_label(model, files, tmp_path, suffix):
    out = tmp_path / f"scored{suffix}"
    result = run("score", str(model), "--data", str(files / "new.parquet"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    scored = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    new = pd.read_parquet(files / "new.parquet")
    assert list(scored.columns) == [*new.columns, "score", "label"]
    pd.testing.assert_frame_equal(scored[new.columns], new, check_dtype=False)
    threshold = json.loads((model / "manifest.json").read_text())["threshold"]
    assert (scored["label"] == (scored["score"] >= threshold)).all()
    assert scored["label"].iloc[0] == 1  # the planted outlier
    assert scored["score"].iloc[0] == scored["score"].max()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_the_scored_table_gets_the_mode_the_umask_gives(model, files, tmp_path, suffix, umask, mode):
    """Issue 12 item 8: the scored table was written 0600 whatever the umask."""
    before = os.umask(umask)
    try:
        result = run("score", str(model), "--data", str(files / "new.parquet"), "--out", str(tmp_path / f"s{suffix}"))
    finally:
        os.umask(before)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / f"s{suffix}").stat().st_mode & 0o777 == mode


def test_explain_names_the_column_to_blame(model, files, tmp_path):
    out = tmp_path / "explained.csv"
    result = run("score", str(model), "--data", str(files / "new.parquet"), "--out", str(out), "--explain")
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(out)
    assert list(scored.columns)[-3:] == ["score", "label", "top_column"]
    assert scored["top_column"].iloc[1] == "kind"  # the unseen category
    assert set(scored["top_column"]) <= {"a", "b", "c", "kind"}


@pytest.mark.parametrize("flags, expected", [([], "Ensemble"), (["--clean"], "Nearest"),
                                             (["--clean", "--model", "lof"], "LOF")])
def test_default_model_is_the_ensemble_or_with_clean_rows_the_nearest_distance(files, tmp_path, flags, expected):
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "e"), "--drop", "id", *flags)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "e" / "manifest.json").read_text())["class"].endswith("." + expected)


def test_param_sets_a_detector_parameter_checked_against_its_constructor(files, tmp_path):
    result = run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "k"), "--drop", "id",
                 "--model", "knn", "--param", "n_neighbors=3")
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "k" / "manifest.json").read_text())["params"] == {"n_neighbors": 3}
    _one_clear_line(run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "x"), "--drop", "id",
                        "--model", "knn", "--param", "depth=3"), "knn has no parameter(s) depth", "n_neighbors")
    _one_clear_line(run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "x"), "--drop", "id",
                        "--model", "knn", "--param", "n_neighbors=0"), "n_neighbors must be a positive integer")
    assert not (tmp_path / "x").exists()


def test_models_lists_every_registered_detector_with_its_parameters():
    result = run("models")
    assert result.returncode == 0
    names = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert names == list(detectors("tabular"))
    assert "    parameters: n_neighbors=5" in result.stdout and "members=None" in result.stdout


@pytest.mark.parametrize("column, words", [
    ("id", ["'id' looks like a row number, identifier or time stamp", "--drop id"]),
    ("when", ["'when' holds dates or times as text", "--drop when"]),
])
def test_identifier_and_timestamp_columns_are_refused_naming_drop(files, tmp_path, column, words):
    """Issue 22 item 1: a text timestamp column made every test row score 1.85e30."""
    frame = pd.read_csv(files / "train.csv")
    frame["when"] = pd.date_range("2024-01-01", periods=len(frame), freq="min").strftime("%Y-%m-%dT%H:%M:%S")
    frame.to_csv(tmp_path / "t.csv", index=False)
    drop = "when" if column == "id" else "id"
    _one_clear_line(run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--drop", drop),
                    "t.csv: column", *words)
    assert run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--drop", "id,when",
               "--model", "hbos").returncode == 0


def test_a_text_cell_in_numbers_is_a_warning_or_with_strict_an_error(files, tmp_path):
    """Issue 12 item 12."""
    frame = pd.read_csv(files / "train.csv").astype({"a": object})
    frame.loc[7, "a"] = "unknown"
    frame.to_csv(tmp_path / "t.csv", index=False)
    warned = run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--drop", "id",
                 "--model", "hbos", "--threshold", "fixed:10")
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr.splitlines() == [f"warning: {tmp_path / 't.csv'}: column 'a' is read as categories, not "
                                          "numbers, because of 1 non-numeric value(s) among its 300, the first "
                                          "'unknown' at row 7; fix the cell(s) or refuse such columns with --strict"]
    _one_clear_line(run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "s"), "--drop", "id",
                        "--strict"), "column 'a' holds numbers and 1 non-numeric value(s)", "'unknown' at row 7")
    assert not (tmp_path / "s").exists()


def test_errors_name_the_row_of_the_file_although_a_holdout_split_it(files, tmp_path):
    """Rows were renumbered within the fitted (or the held-out) part: row 250 was called 226."""
    frame = pd.read_csv(files / "train.csv")
    frame.loc[250, "b"] = np.inf
    frame.to_csv(tmp_path / "t.csv", index=False)
    _one_clear_line(run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"), "--drop", "id"),
                    "column 'b' contains infinity at row 250 ")


def test_a_header_naming_a_column_twice_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,a\n" + "".join(f"{i},{i % 3},{i % 5}\n" for i in range(30)))
    _one_clear_line(run("fit", "--data", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m")),
                    "the header names column 'a' twice (columns 1 and 3)")


@pytest.fixture(scope="module")
def bench_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(200, 4)), rng.normal(size=(10, 4)) + 6])
    y = np.r_[np.zeros(200), np.ones(10)]
    np.savez(root / "1_tiny.npz", X=X, y=y)
    return root


def test_benchmark_follows_the_project_convention(bench_data, tmp_path):
    out = tmp_path / "bench.json"
    result = run("benchmark", "--data", str(bench_data), "--json", str(out), "--models", "ecod,iforest",
                 "--max-rows", "100", "--libraries", "normalcy", "--protocol", "unsupervised")
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert {"machine", "versions", "records"} <= set(doc)
    assert [r["detector"] for r in doc["records"]] == ["ecod", "iforest"]
    for record in doc["records"]:
        assert {"detector", "dataset", "library", "protocol", "auroc", "auprc", "fit_seconds",
                "score_seconds"} <= set(record)
        assert record["dataset"] == "1_tiny" and record["n_rows"] == 100
        assert record["protocol"] == "unsupervised" and record["library"] == "normalcy"
        assert record["n_fit_rows"] == record["n_scored_rows"] == 100
        assert record["auroc"] > 0.95
    assert "| unsupervised | normalcy | ecod | 1_tiny |" in out.with_suffix(".md").read_text()


def test_benchmark_runs_both_protocols_beside_pyod(bench_data, tmp_path):
    pytest.importorskip("pyod")
    out = tmp_path / "bench.json"
    result = run("benchmark", "--data", str(bench_data), "--json", str(out), "--models", "ensemble,knn")
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())["records"]
    assert {(r["protocol"], r["library"], r["detector"]) for r in records} == {
        (p, lib, d) for p in ("unsupervised", "semi-supervised")
        for lib, d in (("normalcy", "ensemble"), ("normalcy", "knn"), ("pyod", "knn"))}
    semi = [r for r in records if r["protocol"] == "semi-supervised"]
    # Half of the 200 normal rows are fitted on; the other half and all 10 anomalies are scored.
    assert all(r["n_fit_rows"] == 100 and r["n_scored_rows"] == 110 for r in semi)
    knn = {(r["protocol"], r["library"]): r["auroc"] for r in records if r["detector"] == "knn"}
    assert knn["unsupervised", "normalcy"] == pytest.approx(knn["unsupervised", "pyod"], abs=1e-9)
    assert "time ours / pyod" in out.with_suffix(".md").read_text()


@pytest.mark.parametrize("flags, word", [(["--protocol", "sideways"], "sideways"),
                                         (["--models", "ecod,magic"], "magic")])
def test_benchmark_refuses_an_unknown_protocol_or_detector(bench_data, tmp_path, flags, word):
    _one_clear_line(run("benchmark", "--data", str(bench_data), "--json", str(tmp_path / "b.json"), *flags), word)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def labelled(files) -> Path:
    rng = np.random.default_rng(9)
    frame = rows(rng, 60)
    frame["y"] = 0
    frame.loc[:5, ["a", "b"]] = 30.0
    frame.loc[:5, "y"] = 1
    frame.to_csv(files / "labelled.csv", index=False)
    return files / "labelled.csv"


def test_evaluate_reports_metrics_that_sklearn_agrees_with_in_the_shared_format(model, labelled, tmp_path):
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = tmp_path / "metrics.json"
    result = run("evaluate", str(model), "--data", str(labelled), "--label-column", "y", "--json", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(out.read_text())
    frame = pd.read_csv(labelled)
    detector = load(model)
    scores = detector.decision_function(frame.drop(columns=["y"]))
    assert metrics["auroc"] == pytest.approx(roc_auc_score(frame["y"], scores))
    assert metrics["auprc"] == pytest.approx(average_precision_score(frame["y"], scores))
    flagged = scores >= detector.threshold_
    tp = int((flagged & (frame["y"] == 1)).sum())
    assert metrics["precision"] == pytest.approx(tp / flagged.sum())
    assert metrics["recall"] == pytest.approx(tp / 6)
    assert metrics["n_items"] == 60 and metrics["n_anomalies"] == 6
    assert 0 < metrics["f1_max"] <= 1 and metrics["seconds"] >= 0
    # Issue 22 item 7: one format for every modality (normalcy.cli.common.echo_metrics).
    figures, wrote = result.stdout.splitlines()
    assert figures.startswith(f"auroc {metrics['auroc']:.4f}  auprc {metrics['auprc']:.4f}  f1_max ")
    assert "n_items 60  n_anomalies 6" in figures and wrote == f"wrote {out}"


def test_evaluate_refuses_bad_input_in_one_line_and_writes_nothing(model, labelled, tmp_path):
    frame = pd.read_csv(labelled)
    frame.assign(y=frame["y"].astype(object).where(frame.index != 3, "maybe")).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "m.json"
    _one_clear_line(run("evaluate", str(model), "--data", str(tmp_path / "bad.csv"), "--label-column", "y",
                        "--json", str(out)), "maybe", "row 3")
    assert not out.exists()


@pytest.mark.parametrize("change, word", [
    (lambda f: f.drop(columns=["y"]), "'y'"),
    (lambda f: f.assign(y=f["y"].where(f.index != 4, np.nan)), "row 4"),
    (lambda f: f.assign(y=2), "got 2"),
    (lambda f: f.assign(y=0), "both"),
    (lambda f: f.drop(columns=["kind"]), "kind"),
    (lambda f: f.assign(a=f["a"].astype(object).where(f.index != 2, "ten")), "ten"),
    (lambda f: f.assign(a=f["a"].where(f.index != 2, np.inf)), "infinity"),
    (lambda f: f.iloc[:0], "empty"),
])
def test_evaluate_names_what_is_wrong_with_the_input(change, word, model, labelled):
    from normalcy.core.errors import DataError
    from normalcy.tabular.workflow import evaluate

    with pytest.raises(DataError, match=word):
        evaluate(load(model), change(pd.read_csv(labelled)), "y")


def _one_clear_line(result, *words: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]


def test_scoring_rows_without_a_fitted_column_fails_clearly(model, files, tmp_path):
    pd.read_parquet(files / "new.parquet").drop(columns=["kind"]).to_csv(tmp_path / "bad.csv", index=False)
    out = tmp_path / "o.csv"
    _one_clear_line(run("score", str(model), "--data", str(tmp_path / "bad.csv"), "--out", str(out)), "kind")
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.csv"]


def test_unknown_output_format_and_model_are_refused(model, files, tmp_path):
    out = tmp_path / "o.xlsx"
    _one_clear_line(run("score", str(model), "--data", str(files / "new.parquet"), "--out", str(out)), "o.xlsx")
    _one_clear_line(run("fit", "--data", str(files / "train.csv"), "--out", str(tmp_path / "m"),
                        "--model", "magic"), "unknown tabular detector 'magic'", "ensemble, knn, nearest")
    assert list(tmp_path.iterdir()) == []


def test_threshold_rules_of_fit(files):
    from normalcy.core.errors import DataError
    from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed
    from normalcy.tabular.workflow import fit_model

    fixed = fit_model(files / "train.csv", "hbos", Fixed(3.0), drop=["id"])
    assert fixed.threshold_ == 3.0 and fixed.calibration_.rule == "fixed:3"
    calibrated = fit_model(files / "train.csv", "hbos", FalseAlarmRate(0.1), holdout=0.2, drop=["id"])
    assert calibrated.calibration_.n_items == 60
    held = pd.read_csv(files / "train.csv").drop(columns=["id"])  # scores on the held-out rows set it
    assert 0 < calibrated.threshold_ <= calibrated.decision_function(held).max() + 1e-9
    with pytest.raises(DataError, match="holdout"):
        fit_model(files / "train.csv", "hbos", FalseAlarmRate(0.1), holdout=0.0, drop=["id"])
    with pytest.raises(DataError, match="f1"):
        fit_model(files / "train.csv", "hbos", F1Optimal(), drop=["id"])
    with pytest.raises(DataError, match="nope"):
        fit_model(files / "train.csv", "hbos", Fixed(1.0), drop=["nope"])
