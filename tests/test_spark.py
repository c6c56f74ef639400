"""normalcy on Spark in local mode: the same model gives the same scores as in-process, per-group
jobs report failing groups instead of dying, and bad input fails with one clear line.

One local[1] session serves every test of this module: starting a JVM and a Python worker that
imports numpy, pandas and torch costs tens of seconds, and a second worker would double the
imports on a 2-core machine for no extra coverage (the benchmark runs local[2]). CLI commands
run in this process, but for one real `normalcy spark` process. The data are a few hundred
rows, generated here."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

from clirunner import run_in_process  # noqa: E402
from normalcy.core.errors import DataError, ModelFileError  # noqa: E402
from normalcy.core.threshold import FalseAlarmRate, parse_threshold  # noqa: E402
from normalcy.spark import fit_per_group, score, score_per_group, session  # noqa: E402
from normalcy.core.registry import build  # noqa: E402
from normalcy.spark.groups import folder_name  # noqa: E402
from normalcy.timeseries.base import TimeSeriesDetector  # noqa: E402
from normalcy.timeseries.data import TimeSeries  # noqa: E402
from normalcy.timeseries.workflow import fit_model  # noqa: E402


# The JVM's quick compiler only: on short test jobs its start-up and first job take half the time
# (46 -> 21 s and 35 -> 17 s on the shared 2-core machine); long jobs want the full JIT.
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


@pytest.fixture(scope="module")
def spark():
    spark = session("local[1]", "normalcy tests", progress=False,
                    conf={"spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "1",
                          "spark.driver.extraJavaOptions": FAST_JVM})
    yield spark
    spark.stop()


def table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.lognormal(3, 1, n), "hour": rng.integers(0, 24, n).astype(np.int64),
                         "country": rng.choice(["fr", "de", "it", "es"], n), "id": np.arange(n)})


@pytest.fixture(scope="module")
def table_model(tmp_path_factory):
    from normalcy.tabular.workflow import fit_model as fit_table

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("table") / "train.parquet"
    table(rng, 600).to_parquet(path)
    model = fit_table(path, "ensemble", FalseAlarmRate(0.05), drop=["id"])
    return model, model.save(path.parent / "tx.model")


def run_cli(*args: str) -> SimpleNamespace:
    return run_in_process("spark", *args)


# --- row scoring -------------------------------------------------------------------------------


def test_cli_score_in_its_own_process_writes_what_table_score_writes(table_model, tmp_path):
    """The one `normalcy spark` command run as a process of its own, as a user runs it: its own
    JVM, Python workers started from its interpreter, stdout and exit status."""
    from normalcy.tabular.workflow import score_to_file

    model, folder = table_model
    rows = table(np.random.default_rng(1), 300)
    rows.loc[::50, "amount"] = 1e5  # a few clear anomalies, so labels are not all 0
    rows.to_parquet(tmp_path / "new.parquet")
    expected = score_to_file(model, tmp_path / "new.parquet", tmp_path / "local.parquet")

    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"--driver-java-options '{FAST_JVM}' pyspark-shell"}
    result = subprocess.run([sys.executable, "-m", "normalcy", "spark", "score", "--model", str(folder),
                             "--input", str(tmp_path / "new.parquet"), "--output", str(tmp_path / "scored"),
                             "--master", "local[1]", "--no-progress"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    got = pd.read_parquet(tmp_path / "scored").sort_values("id").reset_index(drop=True)
    assert list(got.columns) == list(expected.columns)
    np.testing.assert_allclose(got.score, expected.score, rtol=1e-12)
    assert (got.label.to_numpy() == expected.label.to_numpy()).all() and got.label.dtype == expected.label.dtype
    assert 0 < got.label.sum() < len(got)
    assert result.stdout == f"300 rows scored, {int(expected.label.sum())} flagged anomalous; results in " \
        f"{tmp_path / 'scored'}\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns=["hour"]), "no column 'hour'"),
    (lambda f: f.assign(amount=f.amount.astype(str)), "column 'amount' has type string; the model expects numbers"),
    (lambda f: f.assign(score=1.0), "already has column(s) score"),
])
def test_schema_mismatch_names_the_column_before_any_task(spark, table_model, change, message):
    frame = change(table(np.random.default_rng(2), 20))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        score(spark.createDataFrame(frame), table_model[1])


def test_cli_errors_are_one_line_and_write_nothing(spark, table_model, tmp_path):
    table(np.random.default_rng(3), 10).iloc[:0].to_parquet(tmp_path / "empty.parquet")
    cases = {
        "missing model": (["--model", str(tmp_path / "nope"), "--input", str(tmp_path / "empty.parquet")], "not a model folder"),
        "empty input": (["--model", str(table_model[1]), "--input", str(tmp_path / "empty.parquet")], "has no rows"),
        "missing input": (["--model", str(table_model[1]), "--input", str(tmp_path / "none.parquet")], "does not exist"),
    }
    for name, (args, message) in cases.items():
        result = run_cli("score", *args, "--output", str(tmp_path / "out"), "--no-progress")
        assert result.returncode == 2, name
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (name, result.stderr)
        assert not (tmp_path / "out").exists(), name


def test_image_paths_and_bytes_score_as_in_process(spark, image_data, fitted, tmp_path):
    from PIL import Image

    from normalcy.spark import write_parquet

    model = copy.copy(fitted("gaussian"))
    model.set_threshold(float(np.median(model.decision_function(image_data.test))))
    model.save(tmp_path / "img.model")
    paths, blobs = [], []
    for i, image in enumerate(image_data.test):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
        blobs.append(Path(paths[-1]).read_bytes())
    frame = spark.createDataFrame(pd.DataFrame({"path": paths, "image": blobs}))
    expected = model.decision_function(image_data.test)
    for column in ("path", "image"):
        got = score(frame, tmp_path / "img.model", column=column).toPandas()
        np.testing.assert_allclose(got.score, expected, rtol=1e-5, err_msg=column)
        assert (got.label.to_numpy() == (expected >= model.threshold_)).all()

    # A worker's DataError comes back as that error, and the output is never half-written.
    broken = spark.createDataFrame(pd.DataFrame({"path": [*paths, str(tmp_path / "missing.png")]}))
    with pytest.raises(DataError, match="missing.png"):
        write_parquet(score(broken, tmp_path / "img.model"), tmp_path / "out")
    assert not any(p.name.startswith((".out", "out")) for p in tmp_path.iterdir())


def test_events_score_as_in_process(spark, tmp_path):
    from normalcy.events import Frequency

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"user": rng.choice(["ann", "bob", "cy"], 200), "host": rng.choice(["h1", "h2"], 200)})
    model = Frequency(pairs=True).fit(frame.iloc[:150])
    model.set_threshold(1.0)
    model.save(tmp_path / "ev.model")
    got = score(spark.createDataFrame(frame.iloc[150:]), tmp_path / "ev.model").toPandas()
    np.testing.assert_allclose(got.score, model.decision_function(frame.iloc[150:].reset_index(drop=True)),
                               rtol=1e-12)


def test_text_scores_as_in_process(spark, tmp_path):
    from normalcy.text import TextDetector

    model = TextDetector(options={"n_neighbors": 2}, threads=1).fit([f"disk {i} is full on node {i}" for i in range(12)])
    model.set_threshold(0.8)
    model.save(tmp_path / "text.model")
    lines = ["disk 3 is full on node 3", "kernel panic: attempted to kill init", "disk 40 is full on node 7"]
    got = score(spark.createDataFrame(pd.DataFrame({"id": [1, 2, 3], "text": lines})), tmp_path / "text.model")
    got = got.toPandas().sort_values("id")
    expected = model.decision_function(lines)
    np.testing.assert_allclose(got.score, expected, rtol=1e-5)
    assert (got.label.to_numpy() == (expected >= 0.8)).all() and got.label.iloc[1] == 1


def test_a_model_without_threshold_or_folder_fails_on_the_driver(spark, tmp_path):
    from normalcy.core.errors import NotFittedError

    build("timeseries", "rolling-mad").fit(np.arange(50.0)).save(tmp_path / "ts.model")
    frame = spark.createDataFrame(pd.DataFrame({"t": [0], "value": [1.0]}))
    with pytest.raises(NotFittedError, match="has no threshold"):
        score(frame, tmp_path / "ts.model", time="t")
    with pytest.raises(ModelFileError, match="not a model folder"):
        score(frame, tmp_path / "none")


# --- one model per key ---------------------------------------------------------------------------


def readings(keys, start: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = [pd.DataFrame({"key": k, "t": np.arange(start, start + n),
                            "v": np.sin(np.arange(start, start + n) / (5 + i)) + 0.1 * rng.normal(size=n)})
              for i, k in enumerate(keys)]
    return pd.concat(frames, ignore_index=True)


def test_fit_and_score_per_group_equal_local_models(spark, tmp_path):
    train = readings(["a", "b/c", "ünï"], 0, 300, 6)
    train = pd.concat([train, pd.DataFrame({"key": ["short"], "t": [0], "v": [1.0]})])  # too few readings
    shuffled = spark.createDataFrame(train.sample(frac=1, random_state=0))
    index = fit_per_group(shuffled, "key", "t", ["v"], tmp_path / "models", detector="rolling-mad").set_index("key")

    assert index.loc["short", "status"] == "failed" and "too few" in index.loc["short", "error"]
    assert (index.drop("short").status == "ok").all()
    # 60 held-out readings cannot resolve fpr:0.01: each group's row says so (not a worker's stderr).
    assert all("60 held-out" in w for w in index.drop("short").warning)
    assert pd.read_parquet(tmp_path / "models" / "index.parquet").shape[0] == 4

    later = readings(["a", "b/c", "ünï", "new"], 300, 60, 7)
    scored = score_per_group(spark.createDataFrame(later.sample(frac=1, random_state=1)), "key", "t",
                             tmp_path / "models").toPandas()
    failed = scored[scored.status == "failed"].set_index("key")
    assert sorted(failed.index) == ["new"] and "no model for key 'new'" in failed.loc["new", "error"]
    for key in ["a", "b/c", "ünï"]:
        series = train[train.key == key].sort_values("t")
        local = fit_model(TimeSeries(series[["v"]].to_numpy(), ["v"]), "rolling-mad", parse_threshold("fpr:0.01"))
        assert index.loc[key, "threshold"] == pytest.approx(local.threshold_, rel=1e-12)
        saved = TimeSeriesDetector.load(tmp_path / "models" / index.loc[key, "folder"])
        assert saved.threshold_ == pytest.approx(local.threshold_, rel=1e-12)
        got = scored[scored.key == key].sort_values("t")
        expected = local.decision_function(later[later.key == key].v.to_numpy())
        np.testing.assert_allclose(got.score, expected, rtol=1e-9, atol=1e-12)
        assert (got.label.to_numpy() == (expected >= local.threshold_)).all()


def test_cli_fit_and_score_per_group(spark, tmp_path):
    data = readings(["a", "b"], 0, 200, 9)
    pd.concat([data, pd.DataFrame({"key": ["c"], "t": [0], "v": [0.5]})]).to_parquet(tmp_path / "train.parquet")
    readings(["a", "c"], 200, 30, 10).to_parquet(tmp_path / "later.parquet")
    common = ["--key", "key", "--time", "t", "--no-progress"]
    unknown = run_cli("fit-per-group", "--input", str(tmp_path / "train.parquet"), "--values", "v",
                      "--output", str(tmp_path / "models"), "--param", "window=3", *common)
    assert unknown.returncode == 2 and "range-novelty has no parameter(s) window" in unknown.stderr
    fitted = run_cli("fit-per-group", "--input", str(tmp_path / "train.parquet"), "--values", "v",
                     "--output", str(tmp_path / "models"), "--model", "range-novelty", "--param", "history=150",
                     *common)
    assert fitted.returncode == 0, fitted.stderr
    assert "2 of 3 series fitted with range-novelty" in fitted.stdout and "1 failed, first: 'c'" in fitted.stdout
    assert fitted.stderr.startswith("warning: 2 series fitted with a warning (index.parquet's warning column), "
                                    "first: 'a': 40 held-out")
    index = pd.read_parquet(tmp_path / "models" / "index.parquet").set_index("key")
    assert TimeSeriesDetector.load(tmp_path / "models" / index.loc["a", "folder"]).history == 150
    scored = run_cli("score-per-group", "--input", str(tmp_path / "later.parquet"), "--models", str(tmp_path / "models"),
                     "--output", str(tmp_path / "scored"), *common)
    assert scored.returncode == 0, scored.stderr
    assert "31 rows written" in scored.stdout and "1 series without scores" in scored.stdout
    result = pd.read_parquet(tmp_path / "scored")
    assert (result[result.key == "a"].status == "ok").sum() == 30
    assert result[result.key == "c"].error.iloc[0].startswith("DataError: no model for key 'c': its fit failed")


def test_fit_per_group_checks_columns_on_the_driver(spark, tmp_path):
    frame = spark.createDataFrame(pd.DataFrame({"key": ["a"], "t": [0], "v": ["x"]}))
    with pytest.raises(DataError, match="value column 'v' has type string"):
        fit_per_group(frame, "key", "t", ["v"], tmp_path)
    with pytest.raises(DataError, match="no column 'w'"):
        fit_per_group(frame, "key", "t", ["w"], tmp_path)
    with pytest.raises(DataError, match="has no index.parquet"):
        score_per_group(frame, "key", "t", tmp_path)


# --- no Spark needed -----------------------------------------------------------------------------


def test_one_pass_fit_equals_fit_score_then_learn():
    """fit_model's single causal pass against the two-pass recipe of `normalcy ts fit`."""
    rng = np.random.default_rng(8)
    values = np.sin(np.arange(400) / 7)[:, None] + 0.1 * rng.normal(size=(400, 1))
    one = fit_model(TimeSeries(values, ["v"]), "rolling-mad", FalseAlarmRate(0.05), holdout=0.25)
    two = build("timeseries", "rolling-mad").fit(values[:300])
    two.calibrate_scores(two.decision_function(values[300:]), FalseAlarmRate(0.05))
    for x in values[300:]:
        two.learn_one(x)
    assert one.threshold_ == two.threshold_
    after = np.cos(np.arange(50) / 3)
    np.testing.assert_array_equal(one.decision_function(after), two.decision_function(after))


def test_folder_names_are_safe_and_distinct():
    keys = ["a/b", "a_b", "../etc", "", "x" * 300, 42, "42"]
    names = [folder_name(k) for k in keys]
    assert len(set(names[:-1])) == len(names) - 1 and names[-2] == names[-1]  # 42 and "42" are one key as text
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) <= 73


# --- logs and time series through score ------------------------------------------------------------


def hdfs_lines(rng: np.random.Generator, blocks: int, start: int = 0) -> list[str]:
    """HDFS-format lines of `blocks` block sessions (open, a few writes, close; one in five
    blocks breaks off or retries), interleaved, a second apart, and a header-less line now and then."""
    events = []
    for b in range(start, start + blocks):
        session = [f"Receiving block blk_{b} src: /10.0.0.{b % 7}:5001"]
        session += [f"PacketResponder {k} for block blk_{b} terminating" for k in range(int(rng.integers(1, 4)))]
        if rng.random() < 0.2:
            session.insert(1, f"Retrying write of blk_{b} after timeout")
        if rng.random() > 0.1:
            session.append(f"Deleting block blk_{b} file /data/{b}")
        events += [(rng.random() * blocks, line) for line in session]
    events.sort()
    out = []
    for i, (_, text) in enumerate(events):
        stamp = pd.Timestamp("2008-11-09 20:00:00") + pd.Timedelta(seconds=i)
        out.append(f"{stamp:%y%m%d %H%M%S} 148 INFO dfs.DataNode: {text}")
        if i % 37 == 5:
            out.append(f"   continuation of the line before, no header, blk_{start}")
    return out


def line_frame(spark, lines: list[str], partitions: int = 3):
    """A DataFrame of the lines in `partitions` ordered partitions (as a text file's splits)."""
    return spark.sparkContext.parallelize([(x,) for x in lines], partitions).toDF(["line"])


SEMANTIC = {"embedder": "hashing", "level_weights": {"WARN": 0.25}}


@pytest.mark.parametrize("grouping", [{"group_by": r"blk_\d+", "detector": "invariants"},
                                      {"window": 20.0, "step": 10.0, "detector": "pca"},
                                      {"group_by": r"blk_\d+", "detector": "semantic-bag", "detector_params": SEMANTIC},
                                      {"window": 20.0, "step": 10.0, "detector": "semantic-seq",
                                       "detector_params": {**SEMANTIC, "epochs": 2, "n_models": 1}}],
                         ids=["sessions", "windows", "semantic-sessions", "semantic-windows"])
def test_log_models_score_groups_as_in_process(spark, tmp_path, grouping):
    from normalcy.core.checks import assert_same_scores
    from normalcy.logs import LogModel

    rng = np.random.default_rng(11)
    model = LogModel(log_format="hdfs", **grouping).fit(hdfs_lines(rng, 60))
    if model.threshold_ is None:
        model.set_threshold(1.0)
    model.save(tmp_path / "logs.model")
    lines = hdfs_lines(rng, 25, start=100)
    # Lines no template matched, at two levels: semantic detectors read their text and level.
    for k, (level, text) in enumerate([("WARN", "Disk quota exceeded while writing"), ("ERROR", "Kernel panic holding"),
                                       ("WARN", "Disk quota exceeded while writing")]):
        at = 20 + 30 * k
        lines.insert(at, f"{lines[at][:13]} 148 {level} dfs.DataNode: {text} blk_{100 + 3 * k}")
    expected = model.analyse(lines, explain=False)
    got = score(line_frame(spark, lines), tmp_path / "logs.model").toPandas().set_index("group")
    assert sorted(got.index) == sorted(expected.groups.keys)
    got = got.loc[expected.groups.keys]
    assert_same_scores(got.score, expected.scores)
    assert (got.label.to_numpy() == expected.labels).all()
    assert (got.lines.to_numpy() == [len(idx) for idx in expected.groups.lines]).all()
    # first_line is the line number in the input (1-based), as in-process line numbers
    assert (got.first_line.to_numpy() == [idx[0] + 1 for idx in expected.groups.lines]).all()


def test_time_series_score_per_key_and_whole(spark, tmp_path):
    from normalcy.core.checks import assert_same_scores

    model = build("timeseries", "rolling-mad", {"history": 40}).fit(np.sin(np.arange(200) / 5))
    model.set_threshold(2.0)
    model.save(tmp_path / "ts.model")
    data = readings(["a", "b"], 200, 50, 12).rename(columns={"v": "value"}).sample(frac=1, random_state=2)
    per_key = score(spark.createDataFrame(data), tmp_path / "ts.model", key="key", time="t").toPandas()
    for key in ["a", "b"]:
        mine = per_key[per_key.key == key]
        assert (np.diff(mine.t.to_numpy()) > 0).all()  # rows come back in time order
        expected = model.decision_function(data[data.key == key].sort_values("t").value.to_numpy())
        assert_same_scores(mine.score, expected)
        assert (mine.label.to_numpy() == (expected >= 2.0)).all()
    whole = data[data.key == "a"].drop(columns="key")
    got = score(spark.createDataFrame(whole), tmp_path / "ts.model", time="t").toPandas()
    assert list(got.columns) == ["t", "value", "score", "label"]
    assert_same_scores(got.score, model.decision_function(whole.sort_values("t").value.to_numpy()))
    with pytest.raises(DataError, match="name the time column"):
        score(spark.createDataFrame(whole), tmp_path / "ts.model")


# --- per-group fitting of tables, events and event streams --------------------------------------------


def test_fit_per_group_tables_and_events_equal_in_process(spark, tmp_path):
    from normalcy.core.checks import assert_same_scores
    from normalcy.core.holdout import fit_with_holdout
    from normalcy.core.modelfile import load
    from normalcy.spark.groups import ordered_rows

    rng = np.random.default_rng(13)
    rows = table(rng, 240).assign(shop=np.repeat(["north", "south", "east"], 80), t=np.arange(240))
    rows["user"] = rng.choice(["ann", "bob", "cy", "dee"], 240)
    later = table(rng, 30).assign(shop=np.repeat(["north", "south", "west"], 10), t=np.arange(30))
    later["user"] = rng.choice(["ann", "bob", "eve"], 30)
    cases = [("tabular", "ecod", ["amount", "hour", "country"]), ("events", "frequency", ["country", "user"])]
    for modality, detector, columns in cases:
        out = tmp_path / modality
        index = fit_per_group(spark.createDataFrame(rows.sample(frac=1, random_state=4)), "shop", "t", columns, out,
                              detector, threshold="fpr:0.1", holdout=0.25, modality=modality).set_index("shop")
        assert (index.status == "ok").all() and len(index) == 3
        scored = score_per_group(spark.createDataFrame(later), "shop", None, out).toPandas()
        assert scored[scored.shop == "west"].error.iloc[0].startswith("DataError: no model for key 'west'")
        for shop in ["north", "south"]:
            mine = ordered_rows(rows[rows.shop == shop], "t", columns)[columns]
            local = fit_with_holdout(build(modality, detector), mine, parse_threshold("fpr:0.1"), 0.25, 0)
            assert index.loc[shop, "threshold"] == pytest.approx(local.threshold_, rel=1e-12)
            saved = load(tmp_path / modality / index.loc[shop, "folder"])
            new = later[later.shop == shop].sort_values("t")
            got = scored[scored.shop == shop].sort_values("t")
            assert_same_scores(got.score, local.decision_function(new[columns].reset_index(drop=True)))
            assert_same_scores(saved.decision_function(new[columns].reset_index(drop=True)), got.score)
            assert (got.label.to_numpy() == (got.score.to_numpy() >= local.threshold_)).all()


def test_fit_per_group_event_streams_by_entity(spark, tmp_path):
    """Each host's stream of (process, action) events, cut into sessions of 5 events, with its
    own sequence model; a session with an action its host never does scores highest."""
    from normalcy.spark.groups import Settings, event_ids, group_sessions

    rng = np.random.default_rng(14)
    rows = []
    cycles = {"web": [("nginx", "accept"), ("nginx", "read"), ("php", "exec"), ("nginx", "write"), ("nginx", "close")],
              "db": [("pg", "connect"), ("pg", "query"), ("pg", "query"), ("pg", "commit"), ("pg", "close")]}
    for host, cycle in cycles.items():
        for i in range(60 * len(cycle)):
            rows.append((host, i, *cycle[i % len(cycle)]))
    train = pd.DataFrame(rows, columns=["host", "t", "process", "action"])
    params = {"window": 4, "hidden": 8, "embedding": 4, "min_steps": 150, "threads": 1}
    index = fit_per_group(spark.createDataFrame(train), "host", "t", ["process", "action"], tmp_path / "m",
                          "entity-sequence", params, threshold="own", modality="logs", chunk=5)
    assert (index.status == "ok").all()
    test = train[train.t < 25].copy()
    odd = (test.host == "web") & (test.t == 12)
    test.loc[odd, ["process", "action"]] = ["pg", "connect"]  # a db action on the web host
    scored = score_per_group(spark.createDataFrame(test), "host", "t", tmp_path / "m").toPandas()
    web = scored[scored.host == "web"].set_index("session")
    assert list(web.index) == ["0", "1", "2", "3", "4"] and (web.events == 5).all()
    assert web.score["2"] > web.score.drop("2").max() + 1.0  # -ln p: a far less likely session
    # the ids are the same in every process: a 63-bit hash of the fields' text
    settings = Settings("logs", ["process", "action"], "t", None, 5)
    names, seqs, _ = group_sessions(test[test.host == "web"], settings)
    assert (seqs[2] == event_ids(test[test.host == "web"].sort_values("t").iloc[10:15], ["process", "action"])).all()
    assert all(s.min() >= 0 for s in seqs) and names == ["0", "1", "2", "3", "4"]


# --- graph embeddings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 3, 8, 40])
def test_slot_keys_send_each_part_to_a_partition_of_its_own(spark, n):
    """What the embedding relies on to run one part per task: repartitioning rows by the slot
    keys puts every key in its own partition (hashing part ids 0..7 into 8 partitions left
    some partitions with two or three parts)."""
    from pyspark.sql import functions as F

    from normalcy.spark.graph import slot_keys

    keys = slot_keys(spark, n)
    rows = spark.createDataFrame(pd.DataFrame({"slot": np.repeat(keys, 5)}))
    placed = (rows.repartition(n, "slot").withColumn("where", F.spark_partition_id())
              .groupBy("slot").agg(F.collect_set("where").alias("where")).toPandas())
    assert sorted(len(a) for a in placed["where"]) == [1] * n  # each key's rows together
    assert sorted(a[0] for a in placed["where"]) == list(range(n))  # one key per partition


def test_graph_fit_partitions_merges_and_scores(spark, tmp_path):
    """On one part, Spark's embedding is embed_part of Spark's own edge table; on several, the
    parts share boundary nodes, every node gets one vector, and Spark's scores are 1 - cos of
    the node table's vectors; edges across teams score higher than inside them."""
    from normalcy.spark import graph as g

    rng = np.random.default_rng(15)
    user = rng.integers(0, 120, 2000)
    host = np.where(rng.random(2000) < 0.95, (user % 4) * 6 + rng.integers(0, 6, 2000), rng.integers(0, 24, 2000))
    train = spark.createDataFrame(pd.DataFrame({"user": [f"u{u}" for u in user], "host": [f"h{h}" for h in host]}))

    one = g.fit(train, ["user", "host"], dim=4)
    edges, _ = g.entity_graph(train, ["user", "host"])
    e = edges.toPandas()
    ids, vectors, degree = g.embed_part(e.src.to_numpy(), e.dst.to_numpy(), e.weight.to_numpy(), dim=4)
    nodes = one.nodes.toPandas().set_index("node").loc[ids]
    assert one.info["parts"] == 1 and one.info["nodes"] == len(ids) == 144
    np.testing.assert_allclose(np.stack(nodes.vector.to_numpy()), vectors, atol=1e-9)
    np.testing.assert_allclose(nodes.degree.to_numpy(), degree)

    several = g.fit(train, ["user", "host"], dim=4, max_part_edges=150)
    assert several.info["parts"] >= 4 and several.info["boundary_nodes"] > 0 and several.info["nodes"] == 144
    probe = rng.integers(0, 120, 200)
    inside = [(f"u{u}", f"h{(u % 4) * 6 + rng.integers(6)}") for u in probe]
    across = [(f"u{u}", f"h{((u % 4 + 2) % 4) * 6 + rng.integers(6)}") for u in probe]
    events = pd.DataFrame(inside + across + [("stranger", "h1")], columns=["user", "host"]).assign(row=np.arange(401))
    got = g.score(spark.createDataFrame(events), several).toPandas().sort_values("row")
    table = several.nodes.toPandas()
    vec = {(t, v): np.asarray(x) for t, v, x in zip(table.type, table.value, table.vector)}
    expected = [g.cosine_scores(vec[("user", u)][None], vec[("host", h)][None])[0] if ("user", u) in vec else 1.0
                for u, h in zip(events.user, events.host)]
    np.testing.assert_allclose(got.score.to_numpy(), expected, atol=1e-9)
    assert got.score.iloc[-1] == g.UNSEEN_SCORE
    from normalcy.core import metrics

    assert metrics.auroc(np.r_[np.zeros(200), np.ones(200)], got.score.to_numpy()[:400]) > 0.9

    several.save(tmp_path / "graph")  # Parquet + JSON
    again = g.GraphEmbedding.load(tmp_path / "graph")
    assert again.info["parts"] == several.info["parts"] and again.dim == 4
    saved = again.nodes.set_index("node").loc[table.node]
    np.testing.assert_array_equal(np.stack(saved.vector.to_numpy()), np.stack(table.vector.to_numpy()))
