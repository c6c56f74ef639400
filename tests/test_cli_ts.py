"""The `normalcy ts` commands as a user runs them: exit codes, messages, files. In-process
(tests/clirunner.py), with one real process for the entry point and stdin."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from unittest import mock

import numpy as np
import pandas as pd
import pytest

from clirunner import run_in_process
from metric_frames import metric_frame, ts_files  # noqa: F401 - a shared fixture
from normalcy.core.checks import assert_same_scores
from normalcy.core.modelfile import load, read_manifest
from normalcy.core.registry import detectors
from normalcy.timeseries.data import load_series


def ts(*args, stdin: str | None = None):
    """`normalcy ts ARGS` in this process, with `stdin` as standard input."""
    with mock.patch.object(sys, "stdin", io.StringIO(stdin or "")):
        return run_in_process("ts", *map(str, args))


def _one_clear_line(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _strict_json(line: str) -> dict:
    def refuse(name):
        raise AssertionError(f"non-JSON {name} in {line!r}")

    return json.loads(line, parse_constant=refuse)


def _stream_lines(test: pd.DataFrame, n: int) -> list[str]:
    return [f"{c},{m}" for c, m in zip(test.cpu[:n], test.mem[:n])]


def test_fit_says_what_set_the_threshold_and_warns_when_too_few(ts_files):
    """Issue 12 item 13 / issue 22 item 2: how many held-out readings set the threshold, and a
    warning when they cannot resolve the requested rate."""
    model = load(ts_files.model)
    assert model.calibration_.n_items == 80 and model.calibration_.rule == "fpr:0.01"
    assert ts_files.fit_stdout.startswith(f"saved subsequence-join to {ts_files.model} (threshold ")
    assert "from 80 held-out readings" in ts_files.fit_stdout
    assert ts_files.fit_stderr.startswith("warning: 80 held-out") and "at least 100" in ts_files.fit_stderr


def test_fit_score_and_evaluate(ts_files, tmp_path):
    result = ts("score", ts_files.model, ts_files.test, "--out", tmp_path / "s.csv")
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "s.csv")
    assert list(scores.columns) == ["time", "score", "label", "top_variable"]
    assert scores.score.idxmax() == 150 and scores.top_variable[150] == "mem" and scores.label[150] == 1
    result = ts("evaluate", ts_files.model, ts_files.test, "--json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "e.json").read_text())
    assert metrics["auc_pr"] > 0.1 and metrics["n_readings"] == 200 and metrics["detector"] == "subsequence-join"
    # one evaluate format for every modality (issue 22 item 7): NAME VALUE figures, then the file
    figures, wrote = result.stdout.strip().splitlines()
    assert f"auc_pr {metrics['auc_pr']:.4f}" in figures and "n_readings 200" in figures
    assert wrote == f"wrote {tmp_path / 'e.json'}"


def test_fit_takes_any_registered_model_and_its_parameters(ts_files, tmp_path):
    result = ts("fit", ts_files.train, "--out", tmp_path / "m", "--model", "rolling-mad", "--history", "70",
                "--param", "warmup=15", "--param", "likelihood=false", "--threshold", "fixed:4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"saved rolling-mad to {tmp_path / 'm'} (threshold 4: fixed:4")
    manifest = read_manifest(tmp_path / "m")
    assert {k: manifest["params"][k] for k in ("history", "warmup", "likelihood")} == \
        {"history": 70, "warmup": 15, "likelihood": False}
    _one_clear_line(ts("fit", ts_files.train, "--out", tmp_path / "x", "--model", "nope"), "nope", "rolling-mad")
    _one_clear_line(ts("fit", ts_files.train, "--out", tmp_path / "x", "--param", "colour=red"), "colour", "history")
    _one_clear_line(ts("fit", ts_files.train, "--out", tmp_path / "x", "--param", "history=-1"), "history")
    assert not (tmp_path / "x").exists()


def test_models_lists_every_registered_detector_with_its_parameters():
    from normalcy.cli.timeseries import DEFAULT
    from normalcy.timeseries import DEFAULT as MODALITY_DEFAULT

    result = ts("models")
    assert result.returncode == 0, result.stderr
    listed = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert listed == list(detectors("timeseries"))
    assert "window=16" in result.stdout and "rearm_damping=0.5" in result.stdout
    assert DEFAULT == MODALITY_DEFAULT


def test_too_short_training_data_is_refused_naming_the_minimum(tmp_path):
    """Issue 12 item 9: a 2-reading series gave threshold 5e-324 and flagged 90% of normal data."""
    for n, model, minimum in [(2, "multiscale-novelty", 46), (45, "range-novelty", 46), (60, "window-pca", 100)]:
        metric_frame(n).drop(columns="label").to_csv(tmp_path / "short.csv", index=False)
        _one_clear_line(ts("fit", tmp_path / "short.csv", "--out", tmp_path / "m", "--model", model),
                        f"{n} readings are too few", f"at least {minimum} readings")
    assert not (tmp_path / "m").exists()
    # the minimum is enough, and a fixed threshold needs only the warm-up
    metric_frame(46).drop(columns="label").to_csv(tmp_path / "ok.csv", index=False)
    assert ts("fit", tmp_path / "ok.csv", "--out", tmp_path / "m").returncode == 0
    metric_frame(19).drop(columns="label").to_csv(tmp_path / "warm.csv", index=False)
    _one_clear_line(ts("fit", tmp_path / "warm.csv", "--out", tmp_path / "f", "--threshold", "fixed:3"), "at least 20")


def test_constant_training_data_is_a_warning(tmp_path):
    frame = metric_frame(200).drop(columns="label")
    frame["mem"] = 7.0
    frame.to_csv(tmp_path / "flat.csv", index=False)
    result = ts("fit", tmp_path / "flat.csv", "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "'mem' never change(s)" in result.stderr and "'cpu'" not in result.stderr


def test_stream_equals_batch_scores(ts_files, tmp_path):
    test = pd.read_csv(ts_files.test)
    lines = _stream_lines(test, 60)
    lines[10] = json.dumps({"cpu": test.cpu[10], "mem": test.mem[10], "timestamp": test.timestamp[10]})
    result = ts("stream", ts_files.model, stdin="\n".join(lines) + "\n")
    assert result.returncode == 0, result.stderr
    out = [_strict_json(line) for line in result.stdout.splitlines()]
    assert [o["line"] for o in out] == list(range(1, 61))
    batch = load(ts_files.model).decision_function(load_series(ts_files.test, columns=["cpu", "mem"]))
    assert_same_scores([o["score"] for o in out], batch[:60], "streamed scores")
    assert set(out[0]["variables"]) == {"cpu", "mem"}


@pytest.fixture(scope="module")
def clean_stream(ts_files):
    """160 stdin lines of the test series and what `ts stream` writes for them."""
    lines = _stream_lines(pd.read_csv(ts_files.test), 160)
    clean = ts("stream", ts_files.model, stdin="\n".join(lines) + "\n")
    assert clean.returncode == 0, clean.stderr
    return lines, [_strict_json(line) for line in clean.stdout.splitlines()]


@pytest.mark.parametrize("bad, why", [
    ("inf,30", "finite numbers"), ("50,1e999", "finite numbers"), ("1e308,30", "finite numbers"),
    ("-1.7976931348623157e308,30", "finite numbers"), ('{"cpu": Infinity, "mem": 30}', "finite numbers"),
    ('{"cpu": 1e999, "mem": 30}', "finite numbers"), ('{"cpu": 50, "mem": -1e31}', "finite numbers"),
    ('{"cpu": ' + "[" * 100_000 + "]" * 100_000 + ', "mem": 30}', "nests too deeply"),
    ('{"cpu": [1, 2], "mem": 30}', "must be numbers"), ('{"cpu": 50}', "lacks variable"),
    ("1,abc", "not numbers"), ("1,2,3", "needs 2 value"), ('{"cpu": 50, ', "not a JSON object"),
])
def test_stream_refuses_a_bad_reading_per_line_and_goes_on(ts_files, clean_stream, bad, why):
    """Issue 12 items 2 and 7: one inf, 1e999 or near-DBL_MAX reading used to make every later
    score NaN (printed as non-JSON NaN, labelled normal); a deeply nested line raised
    RecursionError. Now the reading gets an error line, is not learned, and later scores equal
    those of a stream that never saw it."""
    lines, expected = clean_stream
    dirty = ts("stream", ts_files.model, stdin="\n".join(lines[:100] + [bad] + lines[100:]) + "\n")
    _one_clear_line(dirty, "1 of 161 readings refused", "line 101")
    out = [_strict_json(line) for line in dirty.stdout.splitlines()]
    assert out[100]["line"] == 101 and why in out[100]["error"] and "score" not in out[100]
    assert [o["score"] for o in out[101:]] == [o["score"] for o in expected[100:]]
    assert out[151]["alert"] is True  # the spike at reading 150 still alerts


def test_reading_time_from_a_json_line():
    from normalcy.cli.timeseries import _reading

    assert _reading('{"cpu": 1, "timestamp": "2024-01-03T10:00"}') == ({"cpu": 1, "timestamp": "2024-01-03T10:00"},
                                                                       "2024-01-03T10:00")
    assert _reading("1.5,2") == ([1.5, 2.0], None)


def test_bad_input_fails_clearly_and_writes_nothing(ts_files, tmp_path):
    out = tmp_path / "m"
    _one_clear_line(ts("fit", ts_files.train, "--out", out, "--columns", "disk"), "disk")
    empty = tmp_path / "empty.csv"
    empty.write_text("timestamp,v\n")
    _one_clear_line(ts("fit", empty, "--out", out), "empty")
    nan = tmp_path / "nan.csv"
    nan.write_text("timestamp,v\n2024-01-01,\n2024-01-02,\n")
    _one_clear_line(ts("fit", nan, "--out", out), "'v'")
    _one_clear_line(ts("fit", ts_files.train, "--out", out, "--threshold", "f1"), "f1")
    assert not out.exists()


@pytest.mark.parametrize("value", ["inf", "1e999", "1e308", "-1.7e308"])
def test_a_poisonous_reading_in_a_file_is_refused_naming_it(ts_files, tmp_path, value):
    """Issue 12 items 2 and 4: `ts score` on such a file gave NaN scores labelled normal; `ts
    fit` on it a model that saved but could not load."""
    frame = pd.read_csv(ts_files.test)
    frame["mem"] = frame["mem"].astype(object)
    frame.loc[37, "mem"] = value
    frame.to_csv(tmp_path / "bad.csv", index=False)
    when = frame.timestamp[37]
    _one_clear_line(ts("score", ts_files.model, tmp_path / "bad.csv", "--out", tmp_path / "s.csv"), "'mem'", when,
                    "finite numbers between -1e+30 and 1e+30")
    _one_clear_line(ts("fit", tmp_path / "bad.csv", "--out", tmp_path / "m"), "'mem'", when)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_scaling_runs_variants_at_the_variable_counts_asked(tmp_path):
    result = ts("benchmark", "--scaling", 300, "--variables", "1,3", "--json", tmp_path / "s.json",
                "--models", "rolling-mad:history=20")
    assert result.returncode == 0, result.stderr
    records = json.loads((tmp_path / "s.json").read_text())["records"]
    assert [(r["detector"], r["variables"], r["readings"]) for r in records] == [
        ("rolling-mad:history=20", 1, 300), ("rolling-mad:history=20", 3, 300)]
    assert all(r["fit_seconds"] > 0 and r["fit_cpu_seconds"] >= 0 for r in records)
    _one_clear_line(ts("benchmark", "--scaling", 300, "--variables", "1,x", "--json", tmp_path / "t.json"),
                    "--variables", "'1,x'")


def test_benchmark_on_a_tiny_nab_folder(tmp_path):
    for name in ("a/one.csv", "a/two.csv"):
        frame = metric_frame(300, spike_at=200)[["timestamp", "mem"]].rename(columns={"mem": "value"})
        (tmp_path / "data" / "a").mkdir(parents=True, exist_ok=True)
        frame.to_csv(tmp_path / "data" / name, index=False)
    t = metric_frame(300).timestamp.astype(str)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(
        {"a/one.csv": [[t[190], t[210]]], "a/two.csv": []}))
    result = ts("benchmark", "--data", tmp_path, "--json", tmp_path / "b.json", "--models", "range-novelty")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads((tmp_path / "b.json").read_text())["records"]
    assert record["nab_standard"] > 80  # the spike, found mid-window, and no false alarm
    for key in ("nab_low_fp", "nab_low_fn", "vus_pr", "pate", "auc_pr", "seconds_per_1k_points"):
        assert key in record
    _one_clear_line(ts("benchmark", "--data", tmp_path, "--json", tmp_path / "c.json", "--models", "nope"), "nope")


def test_smoke_a_real_process_streams_and_refuses_a_bad_reading(ts_files):
    """The one real process: the installed entry point, real stdin and exit status."""
    lines = _stream_lines(pd.read_csv(ts_files.test), 3)
    result = subprocess.run([sys.executable, "-m", "normalcy", "ts", "stream", str(ts_files.model)],
                            input="\n".join([lines[0], "inf,30", lines[1]]) + "\n", capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: 1 of 3 readings refused (stdin line 2); their error lines say why"
    first, refused, third = (_strict_json(line) for line in result.stdout.splitlines())
    assert first["line"] == 1 and "score" in first and "finite numbers" in refused["error"] and third["line"] == 3



# --- issue 16 item 6: the frictions a new user met ---------------------------------------------


def test_labels_are_never_inputs_and_evaluate_prints_its_metrics(tmp_path):
    """A label column in the training file is left out of the variables; asked for, it is refused;
    evaluate without an output option prints the metrics."""
    metric_frame(400, spike_at=300).to_csv(tmp_path / "train.csv", index=False)  # label column included
    result = ts("fit", tmp_path / "train.csv", "--out", tmp_path / "m")
    assert result.returncode == 0, result.stderr
    assert load(tmp_path / "m").columns_ == ["cpu", "mem"]
    _one_clear_line(ts("fit", tmp_path / "train.csv", "--out", tmp_path / "x", "--columns", "cpu,label"),
                    "'label'", "never model inputs")
    assert not (tmp_path / "x").exists()
    metric_frame(200, spike_at=150, seed=1, start="2024-01-03").to_csv(tmp_path / "test.csv", index=False)
    result = ts("evaluate", tmp_path / "m", tmp_path / "test.csv")
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    figures = dict(zip(line.split()[0::2], line.split()[1::2]))
    assert figures["n_readings"] == "200"
    assert 0 < float(figures["vus_pr"]) <= 1 and figures["n_windows"] == "1"


def test_windows_by_row_number_for_a_series_without_time(tmp_path):
    frame = metric_frame(600, spike_at=500)
    np.save(tmp_path / "train.npy", frame[["cpu", "mem"]].to_numpy()[:400])
    np.save(tmp_path / "test.npy", frame[["cpu", "mem"]].to_numpy()[400:])
    assert ts("fit", tmp_path / "train.npy", "--out", tmp_path / "m").returncode == 0
    inline = ts("evaluate", tmp_path / "m", tmp_path / "test.npy", "--windows", "98:102", "--json", tmp_path / "a.json")
    assert inline.returncode == 0, inline.stderr
    (tmp_path / "w.json").write_text("[[98, 102]]")
    in_file = ts("evaluate", tmp_path / "m", tmp_path / "test.npy", "--windows", tmp_path / "w.json",
                 "--json", tmp_path / "b.json")
    assert in_file.returncode == 0, in_file.stderr
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["n_windows"] == b["n_windows"] == 1 and a["vus_pr"] == b["vus_pr"] and a["vus_pr"] > 0.2
    _one_clear_line(ts("evaluate", tmp_path / "m", tmp_path / "test.npy", "--windows", "150:250"), "150:250",
                    "200 readings")
    (tmp_path / "t.json").write_text('[["2024-01-01", "2024-01-02"]]')
    _one_clear_line(ts("evaluate", tmp_path / "m", tmp_path / "test.npy", "--windows", tmp_path / "t.json"),
                    "no time column", "row numbers")


def test_window_parameters_through_param(ts_files, tmp_path):
    fitted = ts("fit", ts_files.train, "--out", tmp_path / "j", "--model", "subsequence-join", "--param", "window=12")
    assert fitted.returncode == 0, fitted.stderr
    assert load(tmp_path / "j").window_ == 12
    fitted = ts("fit", ts_files.train, "--out", tmp_path / "s", "--model", "multiscale-novelty",
                "--param", "windows=[1, 6]", "--param", "tolerances=[0.002, 0.02]", "--param", "spread_window=24")
    assert fitted.returncode == 0, fitted.stderr
    assert load(tmp_path / "s").windows == [1, 6]


def test_score_names_the_variable_and_gbt_forecast_its_treeshap_evidence(ts_files, tmp_path):
    fitted = ts("fit", ts_files.train, "--out", tmp_path / "g", "--model", "gbt-forecast", "--param", "n_estimators=10")
    assert fitted.returncode == 0, fitted.stderr
    result = ts("score", tmp_path / "g", ts_files.test, "--out", tmp_path / "s.csv")
    assert result.returncode == 0, result.stderr
    scores = pd.read_csv(tmp_path / "s.csv")
    peak = int(scores.score.idxmax())
    assert peak == 150 and scores.top_variable[peak] == "mem"
    assert scores.evidence[peak].startswith("mem: reading") and "the forecast rested most on" in scores.evidence[peak]


def test_stream_refuses_a_model_that_scores_whole_files(ts_files, tmp_path):
    fitted = ts("fit", ts_files.train, "--out", tmp_path / "m", "--model", "window-iforest", "--threshold", "fixed:0.6")
    assert fitted.returncode == 0, fitted.stderr
    result = ts("stream", tmp_path / "m", stdin="1\n2\n")
    _one_clear_line(result, "window-iforest", "as a whole", "subsequence-join")
    assert result.stdout == ""
