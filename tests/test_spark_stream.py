"""Structured Streaming with one detector per key (normalcy.spark.stream): the scores equal the
in-process causal scores of each key's series, a query killed mid-stream and restarted from its
checkpoint ends with the scores of an uninterrupted run, the per-key state in Spark's state
store is safetensors + JSON (read back through Spark's state reader), a watermark puts
out-of-order readings back in order, and the CLI runs a stream with --trigger once.

One local[1] session for the module (the JVM's quick compiler only, as in test_spark.py); the
data are a few keys of a few dozen readings, generated here."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")
pytestmark = [pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

from clirunner import run_in_process  # noqa: E402
from normalcy.core.checks import assert_same_scores  # noqa: E402
from normalcy.core.errors import DataError, ModelFileError  # noqa: E402
from normalcy.core.registry import build  # noqa: E402
from normalcy.spark import session  # noqa: E402
from normalcy.spark.groups import fit_group  # noqa: E402
from normalcy.spark.stream import decode_state, encode_state, run_files, step, stream  # noqa: E402

FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"  # as test_spark.py: short jobs, quick start
KEYS = ["web-1", "db/2", "ünï"]
START = pd.Timestamp("2024-03-01")


@pytest.fixture(scope="module")
def spark():
    spark = session("local[1]", "normalcy stream tests", progress=False,
                    conf={"spark.sql.shuffle.partitions": "1", "spark.default.parallelism": "1",
                          "spark.driver.extraJavaOptions": FAST_JVM})
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    rng = np.random.default_rng(0)
    detector = build("timeseries", "rolling-mad", {"history": 50}).fit(rng.normal(size=120))
    detector.set_threshold(2.5)
    return detector, detector.save(tmp_path_factory.mktemp("stream") / "ts.model")


def readings(files: int, per_file: int, seed: int) -> list[pd.DataFrame]:
    """`files` frames, each the next `per_file` seconds of every key (some spikes), rows shuffled."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(files):
        t = START + pd.to_timedelta(np.arange(i * per_file, (i + 1) * per_file), unit="s")
        parts = []
        for j, key in enumerate(KEYS):
            v = np.sin(np.arange(i * per_file, (i + 1) * per_file) / (3 + j)) + 0.1 * rng.normal(size=per_file)
            v[rng.random(per_file) < 0.05] += 4
            parts.append(pd.DataFrame({"host": key, "ts": t, "value": v}))
        frames.append(pd.concat(parts).sample(frac=1, random_state=i).reset_index(drop=True))
    return frames


def expected_scores(detector, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Each key's readings scored in process: the fitted model's causal scores over the key's
    whole series in time order."""
    data = pd.concat(frames).sort_values(["host", "ts"]).reset_index(drop=True)
    out = []
    for key, group in data.groupby("host", sort=False):
        out.append(group.assign(expected=detector.decision_function(group.value.to_numpy())))
    return pd.concat(out)


def write_files(folder: Path, frames: list[pd.DataFrame], start: int = 0) -> None:
    """One Parquet file per frame, each a second newer than the last: Spark's file source reads
    files in order of modification time (in milliseconds), and files written within the same
    millisecond would come in any order, their readings then late."""
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i, frame in enumerate(frames, start):
        path = folder / f"part-{i:03d}.parquet"
        frame.to_parquet(path)
        os.utime(path, (now + i, now + i))


def read_output(spark, folder: Path) -> pd.DataFrame:
    """The committed output (Spark follows the file sink's log, skipping unfinished batches)."""
    return spark.read.parquet(str(folder)).toPandas().sort_values(["host", "ts"]).reset_index(drop=True)


def commits(checkpoint: Path) -> list[Path]:
    folder = checkpoint / "commits"
    return sorted((p for p in folder.glob("[0-9]*")), key=lambda p: int(p.name)) if folder.is_dir() else []


@pytest.fixture(scope="module")
def uninterrupted(spark, model, tmp_path_factory):
    """Four files of 30 readings per key, one file per micro-batch, in one run."""
    work = tmp_path_factory.mktemp("uninterrupted")
    frames = readings(4, 30, seed=1)
    write_files(work / "in", frames)
    run_files(spark, model[1], work / "in", work / "out", "host", "ts", work / "ck", once=True, max_files=1)
    return frames, work, read_output(spark, work / "out")


def test_stream_scores_equal_in_process_scores(uninterrupted, model):
    frames, _, got = uninterrupted
    expected = expected_scores(model[0], frames)
    assert len(got) == len(expected) == 4 * 30 * len(KEYS) and (got.status == "ok").all()
    merged = got.merge(expected, on=["host", "ts"], validate="one_to_one")
    assert_same_scores(merged.score, merged.expected)
    assert (merged.label == (merged.expected >= 2.5)).all() and 0 < merged.label.sum() < len(merged)


def test_restart_from_checkpoint_after_a_kill_equals_an_uninterrupted_run(spark, model, uninterrupted, tmp_path):
    frames, _, reference = uninterrupted
    write_files(tmp_path / "in", frames)
    source = spark.readStream.schema(spark.read.parquet(str(tmp_path / "in")).schema) \
        .option("maxFilesPerTrigger", 1).parquet(str(tmp_path / "in"))
    query = (stream(source, model[1], "host", "ts").writeStream.format("parquet")
             .option("path", str(tmp_path / "out")).option("checkpointLocation", str(tmp_path / "ck"))
             .trigger(processingTime="1 second").start())
    deadline = time.monotonic() + 300
    while len(commits(tmp_path / "ck")) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    query.stop()  # mid-stream: later files not yet read, a batch perhaps half done
    done = commits(tmp_path / "ck")
    assert 2 <= len(done) < 4, "the query was stopped before it had read every file"
    # A crash after the batch's output and state were written but before its commit entry:
    # the restart must redo that batch from the previous state, and write its rows once.
    done[-1].unlink()
    (done[-1].parent / f".{done[-1].name}.crc").unlink(missing_ok=True)
    before = read_output(spark, tmp_path / "out")
    assert 0 < len(before) < len(reference)

    run_files(spark, model[1], tmp_path / "in", tmp_path / "out", "host", "ts", tmp_path / "ck", once=True,
              max_files=1)
    after = read_output(spark, tmp_path / "out")
    assert len(after) == len(reference) and not after.duplicated(["host", "ts"]).any()
    merged = after.merge(reference, on=["host", "ts"], suffixes=("", "_ref"), validate="one_to_one")
    np.testing.assert_array_equal(merged.score.to_numpy(), merged.score_ref.to_numpy())
    assert (merged.label == merged.label_ref).all()


def test_per_key_state_is_safetensors_and_json(spark, model, uninterrupted):
    """The state Spark keeps per key, read back with Spark's own state reader: safetensors bytes
    (never a pickle) and a JSON record; restored, it is the detector that has learned the key's
    whole series."""
    import pickletools

    from safetensors.numpy import load as load_safetensors

    frames, work, _ = uninterrupted
    state = spark.read.format("statestore").load(str(work / "ck")).toPandas()
    assert sorted(row["host"] for row in state.key) == sorted(KEYS)
    data = pd.concat(frames)
    for key, value in zip(state.key, state.value):
        blob, text = value["groupState"]["arrays"], value["groupState"]["meta"]
        header = int.from_bytes(blob[:8], "little")
        assert blob[8:9] == b"{" and json.loads(blob[8:8 + header])  # safetensors: length + JSON header
        assert not blob.startswith(b"\x80")  # a pickle starts with its PROTO opcode
        with pytest.raises(Exception):
            list(pickletools.genops(blob))
        record = json.loads(text)
        assert record["format"] == "normalcy-stream-state" and record["class"].endswith("RollingMAD")
        arrays = load_safetensors(bytes(blob))
        twin = build("timeseries", "rolling-mad", {"history": 50}).fit(np.random.default_rng(0).normal(size=120))
        for x in data[data.host == key["host"]].sort_values("ts").value:
            twin.learn_one([x])
        own_arrays, own_meta = twin._get_state()
        assert set(arrays) == {f"detector.{k}" for k in own_arrays}
        for name, array in own_arrays.items():
            np.testing.assert_array_equal(arrays[f"detector.{name}"], array)
        assert record["detector"] == json.loads(json.dumps(own_meta))
        restored, last, waiting = decode_state(blob, text)
        assert waiting is None and last == int(data[data.host == key["host"]].ts.max().value // 1000)
        assert restored.score_one([9.0]) == twin.score_one([9.0])


def test_a_watermark_puts_out_of_order_readings_back_in_order(spark, model, tmp_path):
    frames = readings(3, 40, seed=2)
    data = pd.concat(frames, ignore_index=True)
    # Readings of seconds 30-37 arrive one file later, out of order by up to 10 s (the delay is 15 s);
    # a reading 2 minutes old arrives last.
    held = (data.ts >= START + pd.Timedelta(seconds=30)) & (data.ts < START + pd.Timedelta(seconds=38))
    first = data.ts < START + pd.Timedelta(seconds=40)
    files = [data[first & ~held], data[~first & (data.ts < START + pd.Timedelta(seconds=80))],
             pd.concat([data[held], data[data.ts >= START + pd.Timedelta(seconds=80)]])]
    stale = pd.DataFrame({"host": [KEYS[0]], "ts": [START + pd.Timedelta(seconds=1.5)], "value": [50.0]})
    files[2] = pd.concat([files[2], stale])
    write_files(tmp_path / "in", [f.sample(frac=1, random_state=3) for f in files])
    query = run_files(spark, model[1], tmp_path / "in", tmp_path / "out", "host", "ts", tmp_path / "ck",
                      once=True, max_files=1, watermark="15 seconds")
    got = read_output(spark, tmp_path / "out")
    stale_rows = got[(got.host == KEYS[0]) & (got.ts == stale.ts[0])]
    dropped = sum(op["numRowsDroppedByWatermark"] for p in query.recentProgress for op in p["stateOperators"])
    assert (len(stale_rows) == 1 and stale_rows.status.iloc[0] == "late") or (stale_rows.empty and dropped == 1)
    scored = got[got.status == "ok"]
    # Scored: every reading the watermark has passed, each key's in time order, none late.
    expected = expected_scores(model[0], [data])
    merged = scored.merge(expected, on=["host", "ts"], validate="one_to_one")
    last_watermark = max(p["eventTime"].get("watermark", "") for p in query.recentProgress)
    assert len(merged) == len(scored) and len(scored) >= 80 * len(KEYS)
    for key in KEYS:
        mine = merged[merged.host == key]
        assert (mine.ts.to_numpy() == expected[expected.host == key].ts.to_numpy()[:len(mine)]).all(), \
            f"{key}: a prefix of the series, without gaps ({last_watermark})"
    assert_same_scores(merged.score, merged.expected)


def test_cli_stream_once_and_its_errors(spark, model, tmp_path):
    """A fit-per-group folder (each key its own model; one key without) through the CLI."""
    frames = readings(2, 40, seed=4)
    train = readings(1, 80, seed=5)[0]
    root = tmp_path / "per-host"
    index = pd.concat([fit_group("host", "ts", ["value"], str(root), "rolling-mad", {"history": 30}, "fpr:0.05",
                                 0.25, group) for _, group in train[train.host != KEYS[2]].groupby("host")])
    index.to_parquet(root / "index.parquet")
    write_files(tmp_path / "in", frames)
    common = ["--input", str(tmp_path / "in"), "--key", "host", "--time", "ts", "--no-progress"]
    result = run_in_process("spark", "stream", "--model", str(root), "--output", str(tmp_path / "out"),
                            "--checkpoint", str(tmp_path / "ck"), "--trigger", "once", *common)
    assert result.returncode == 0, result.stderr
    got = read_output(spark, tmp_path / "out")
    failed = got[got.host == KEYS[2]]
    assert len(failed) == 80 and failed.score.isna().all() and failed.status.str.contains("no model for key").all()
    from normalcy.timeseries.base import TimeSeriesDetector

    folders = index.set_index("host").folder
    for key in KEYS[:2]:
        local = TimeSeriesDetector.load(root / folders[key])
        mine = got[got.host == key]
        series = pd.concat(frames)
        assert_same_scores(mine.score, local.decision_function(series[series.host == key].sort_values("ts").value))
    assert f"{len(got)} readings" in result.stdout and "80 failed" in result.stdout

    table_model = tmp_path / "ev.model"
    from normalcy.events import Frequency

    Frequency().fit(pd.DataFrame({"a": ["x", "y"] * 5, "b": ["u", "v"] * 5})).set_threshold(1.0).save(table_model)
    cases = {
        "not a time-series model": (["--model", str(table_model)], "streaming scores time-series models"),
        "a missing column": (["--model", str(model[1]), "--input", str(tmp_path / "in"), "--key", "nope"],
                             "no column 'nope'"),
    }
    for name, (args, message) in cases.items():
        run = run_in_process("spark", "stream", *common, *args, "--output", str(tmp_path / "o2"),
                             "--checkpoint", str(tmp_path / "c2"), "--trigger", "once")
        assert run.returncode == 2, name
        assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, (name, run.stderr)
        assert not (tmp_path / "o2").exists(), name
    shutil.rmtree(tmp_path / "in")
    (tmp_path / "in").mkdir()
    empty = run_in_process("spark", "stream", "--model", str(model[1]), *common, "--output", str(tmp_path / "o3"),
                           "--checkpoint", str(tmp_path / "c3"), "--trigger", "once")
    assert empty.returncode == 2 and "holds no file yet" in empty.stderr


# --- no Spark needed -----------------------------------------------------------------------------


def test_state_round_trip_and_refusals(model):
    detector = model[0]
    blob, text = encode_state(detector, 17, None, False)
    restored, last, waiting = decode_state(blob, text)
    assert last == 17 and waiting is None
    x = np.linspace(-3, 3, 40)
    assert_same_scores(restored.decision_function(x), detector.decision_function(x))
    record = json.loads(text)
    for change, message in [
        (lambda r: {**r, "class": "normalcy.tabular.ecod.ECOD"}, "not a registered time-series detector"),
        (lambda r: {**r, "class": "os.system"}, "not a registered time-series detector"),
        (lambda r: {**r, "params": {**r["params"], "history": -1}}, "stream state"),
        (lambda r: {**r, "format": "pickle"}, "is not a normalcy-stream-state"),
    ]:
        with pytest.raises(ModelFileError, match=message):
            decode_state(blob, json.dumps(change(record)))
    with pytest.raises(ModelFileError, match="cannot be read"):
        decode_state(b"\x80\x04K\x01.", text)  # a pickle is not read as one
    with pytest.raises(ModelFileError, match="cannot be read"):
        decode_state(blob, "NaN")


def test_stream_refuses_what_it_cannot_score(spark, model, tmp_path):
    frame = spark.createDataFrame(pd.DataFrame({"host": ["a"], "ts": [1.0], "value": [1.0]}))
    with pytest.raises(DataError, match="a watermark needs a timestamp time column"):
        stream(frame, model[1], "host", "ts", watermark="1 minute")
    with pytest.raises(DataError, match="value column 'value' has type string"):
        stream(spark.createDataFrame(pd.DataFrame({"host": ["a"], "ts": [1.0], "value": ["x"]})), model[1], "host", "ts")
    whole = build("timeseries", "window-iforest", {"window": 8}).fit(np.sin(np.arange(100.0))).set_threshold(0.6)
    with pytest.raises(DataError, match="window-iforest scores a recorded series as a whole"):
        stream(frame, whole.save(tmp_path / "whole"), "host", "ts")


class _State:
    """Spark's GroupState as `step` uses it, without a watermark."""

    def __init__(self):
        self.value = None

    @property
    def exists(self):
        return self.value is not None

    @property
    def get(self):
        return self.value

    def update(self, value):
        self.value = value


def test_step_scores_a_batch_as_the_series_and_fails_a_bad_reading_alone(model, monkeypatch):
    """Two micro-batches of one key through `step`: the scores equal decision_function over the
    key's series; a repeated time is late, and a reading the detector refuses (a DataError) fails
    alone, never learned, while the batch's other readings are scored as the series without it."""
    from normalcy.spark.stream import _ORDER, open_models

    detector, folder = model
    models = open_models(None, folder, ship=False)
    rng = np.random.default_rng(6)
    values = rng.normal(size=40)
    values[30] = 99.0
    times = START + pd.to_timedelta(np.arange(40), unit="s")
    frame = pd.DataFrame({"host": "a", "ts": times, "value": values})
    frame[_ORDER] = frame.ts.astype("datetime64[us]").astype(np.int64)
    refuse = type(detector)._variable_scores

    def variable_scores(self, past, x):
        if x[0] == 99.0:
            raise DataError("99 is not a reading")
        return refuse(self, past, x)

    monkeypatch.setattr(type(detector), "_variable_scores", variable_scores)
    state = _State()
    first = step(models, "host", "ts", ["value"], True, False, "a", [frame.iloc[:25].sample(frac=1, random_state=0)],
                 state)
    repeat = frame.iloc[[24]].assign(value=9.0)  # the time of the last scored reading, again
    second = step(models, "host", "ts", ["value"], True, False, "a", [frame.iloc[25:], repeat], state)
    got = pd.concat([first, second], ignore_index=True).sort_values(["ts", "status"], kind="stable")
    assert list(got.status[got.ts == times[30]]) == ["failed: 99 is not a reading"]
    assert got.score[got.ts == times[30]].isna().all()
    assert list(got.status[got.ts == times[24]]) == ["late", "ok"]
    ok = got[got.status == "ok"]
    assert len(ok) == 39
    assert_same_scores(ok.score, detector.decision_function(np.delete(values, 30)))
    assert (ok.label == (ok.score >= detector.threshold_)).all()
