"""Grouping lines into sessions and time windows, and the event-count matrix."""

from __future__ import annotations

import json
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from normalcy.core import FalseAlarmRate, checks, load
from normalcy.core.checks import assert_same_scores
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.holdout import CalibrationWarning
from normalcy.logs.model import LogModel
from normalcy.logs.sessions import by_identifier, by_time, count_matrix, parse_duration


def test_identifier_groups_keep_reading_order_and_multi_id_lines():
    contents = ["open blk_1", "open blk_-2", "noise", "copy blk_1 to blk_-2", "close blk_1"]
    groups = by_identifier(contents, r"blk_-?\d+")
    assert groups.keys == ["blk_1", "blk_-2"]
    assert [g.tolist() for g in groups.lines] == [[0, 3, 4], [1, 3]]
    assert groups.ungrouped == 1
    assert [s.tolist() for s in groups.sequences(np.array([10, 11, 12, 13, 14]))] == [[10, 13, 14], [11, 13]]


def test_identifier_pattern_errors_are_clear():
    with pytest.raises(DataError, match="not a valid regex"):
        by_identifier(["x"], "blk_(")
    with pytest.raises(DataError, match="no line matches"):
        by_identifier(["x"], r"blk_\d+")


def test_sliding_windows_by_hand_named_by_their_start_time():
    # Lines at t = 0, 25, 10 (out of order in the file), one without a time (takes the time of
    # the line before it, 10) and 61, seconds after 2005-12-04 04:47:44.
    t0 = 1133671664.0
    times = [t0, t0 + 25, t0 + 10, None, t0 + 61]
    groups = by_time(times, window=30, step=15)
    # Windows [0,30) [15,45) [30,60) [45,75) [60,90): the empty one at 30 is not made.
    assert groups.keys == ["2005-12-04 04:47:44", "2005-12-04 04:47:59", "2005-12-04 04:48:29", "2005-12-04 04:48:44"]
    assert [g.tolist() for g in groups.lines] == [[0, 1, 2, 3], [1], [4], [4]]


def test_a_line_far_in_the_future_makes_one_window_not_billions():
    # Windows were every step from the first time to the last: this asked for 1.7e9 of them.
    groups = by_time([0.0, 1.0, 1e11], window=60)
    assert len(groups) == 2 and [g.tolist() for g in groups.lines] == [[0, 1], [2]]


@pytest.mark.parametrize("window,step", [(60, 60), (60, 15), (45, 20), (100, 7)])
def test_windows_hold_exactly_the_lines_within_them(window, step):
    rng = np.random.default_rng(window + step)
    times = rng.uniform(1e9, 1e9 + 1000, 300)
    groups = by_time(list(times), window, step)
    first = times.min()
    for key, lines in zip(groups.keys, groups.lines):
        start = (datetime.strptime(key[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
                 + (float("0." + key[20:]) if len(key) > 19 else 0.0))
        k = round((start - first) / step)
        inside = np.flatnonzero((times >= first + k * step) & (times < first + k * step + window))
        assert lines.tolist() == inside.tolist()
    assert len(np.unique(np.concatenate(groups.lines))) == 300


def test_fixed_windows_partition_the_lines():
    rng = np.random.default_rng(0)
    times = list(rng.uniform(0, 1000, 200))
    groups = by_time(times, window=60)
    assert sorted(np.concatenate(groups.lines).tolist()) == list(range(200))


def test_windows_need_times_and_sane_sizes():
    with pytest.raises(DataError, match="no line had one"):
        by_time([None, None], 60)
    with pytest.raises(DataError, match="step"):
        by_time([1.0], 60, 120)
    with pytest.raises(DataError, match="at most 1000"):
        by_time([1.0], 3600, 1)


def test_count_matrix_has_an_unseen_column():
    counts = count_matrix([np.array([5, 5, 9, 7]), np.array([7])], np.array([5, 7]))
    assert counts.tolist() == [[2, 1, 1], [0, 1, 0]]


@pytest.mark.parametrize("text,seconds", [("90", 90), ("60s", 60), ("5m", 300), ("2h", 7200), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "0s", "0", "0.0m"])
def test_bad_durations_are_refused(text):
    # A zero window used to mean silently "no windows": every line its own group.
    with pytest.raises(DataError, match="duration"):
        parse_duration(text)


def bgl_lines(rng: np.random.Generator, start: int, n: int, burst: bool = False) -> list[str]:
    """BGL-format lines, one every 10 s; normal traffic is two kinds of message, a burst ten
    lines of a third."""
    out = []
    for i in range(n):
        msg = ("instruction cache parity error corrected" if rng.random() < 0.5
               else f"generating core.{int(rng.integers(1000))}")
        if burst and 100 <= i < 110:
            msg = f"rts panic! - stopping execution at 0x{int(rng.integers(1 << 30)):x}"
        out.append(f"- {start + 10 * i} 2005.06.03 R02 2005-06-03 R02 RAS KERNEL INFO {msg}")
    return out


def test_log_model_with_time_windows_round_trips_and_flags_an_error_burst(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.warns(CalibrationWarning, match="10 held-out normal items cannot resolve"):
        model = LogModel("unseen", log_format="bgl", window=600, step=300).fit_holdout(
            bgl_lines(rng, 1_000_000, 3000), 0.1, FalseAlarmRate(0.05))
    assert model.n_lines_ == 3000 and model.n_groups_ + model.calibration_.n_items == 100
    again = load(model.save(tmp_path / "m"))
    new = bgl_lines(rng, 2_000_000, 300, burst=True)
    result, reloaded = model.analyse(new), again.analyse(new)
    assert np.array_equal(result.event_ids, reloaded.event_ids)
    assert_same_scores(reloaded.scores, result.scores)
    flagged = [k for k, label in zip(result.groups.keys, result.labels) if label]
    # The burst is at t = 2,001,000 .. 2,001,090: the windows starting at 2,000,600 and 2,000,900.
    assert flagged == ["1970-01-24 03:43:20", "1970-01-24 03:48:20"]


def test_log_model_explains_with_the_templates_of_the_events_to_blame():
    rng = np.random.default_rng(3)
    model = LogModel("unseen", log_format="bgl", window=600).fit(bgl_lines(rng, 1_000_000, 600))
    explanation = model.explain(bgl_lines(rng, 2_000_000, 300, burst=True))
    flagged = np.flatnonzero(explanation.scores >= 1)
    assert len(flagged) == 1 and explanation.top()[flagged[0]] == ["unseen"]
    reasons, *templates = explanation.evidence[flagged[0]]
    assert reasons == "10 event(s) with a template not seen in training"
    assert templates == ["unseen: rts panic! - stopping execution at <HEX>"]


def test_a_window_of_zero_seconds_is_refused_not_taken_as_no_windows():
    lines = bgl_lines(np.random.default_rng(0), 1_000_000, 50)
    with pytest.raises(DataError, match="window"):
        LogModel("unseen", log_format="bgl", window=0).fit(lines)


def test_too_few_windows_to_learn_from_say_the_minimum():
    lines = bgl_lines(np.random.default_rng(0), 1_000_000, 50)  # 500 s of log
    with pytest.raises(DataError, match="the log gives 1 window from 50 lines; pca needs at least 2 to learn from"):
        LogModel("pca", log_format="bgl", window=3600).fit(lines)


def test_the_log_model_keeps_the_detector_contract():
    lines = bgl_lines(np.random.default_rng(4), 1_000_000, 400)
    new = bgl_lines(np.random.default_rng(5), 2_000_000, 300, burst=True)
    labels = np.zeros(10, dtype=int)
    labels[3] = 1  # the window at 2,000,900 s holds the whole burst
    hostile = [("no lines", []), ("one line", lines[:1]), ("a lone surrogate", ["- 1 a b c d e K INFO \ud800"]),
               ("a number", 42), ("not text", [b"bytes", None]), ("a time far out", ["- 99999999999999 a b c d e f g x"])]
    case = checks.Case(lines, new, labels, hostile)
    for check in checks.CHECKS:
        check(LogModel("unseen", log_format="bgl", window=300), case, Path(tempfile.mkdtemp()))


def test_the_logs_package_registers_the_log_model_so_a_fresh_process_can_load_one():
    import normalcy.logs
    from normalcy.core.registry import CLASSES

    # `load` imports only the package a model file's class path names (normalcy.logs), never
    # normalcy.logs.model itself: `normalcy serve m.model` failed with "unknown detector class".
    assert normalcy.logs.LogModel is LogModel and CLASSES["normalcy.logs.model.LogModel"] is LogModel


def rewrite_params(path: Path, **params) -> None:
    """Change a saved model's parameters and recompute the checksum, as anyone can."""
    from normalcy.core import modelfile

    manifest = json.loads((path / "manifest.json").read_text())
    manifest["params"].update(params)
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def session_model(tmp_path_factory) -> Path:
    lines = [f"session {i % 7} step {i % 3}" for i in range(60)]
    return LogModel("unseen", group_by=r"session \d+").fit(lines).save(tmp_path_factory.mktemp("m") / "m")


@pytest.mark.parametrize("params, message", [
    ({"group_by": "session ("}, "--group-by 'session (' is not a valid regex"),
    ({"group_by": "a" * 2000}, "2000 characters long"),
    ({"log_format": "(?P<content>.*"}, "not a valid regex"),
    ({"window": 0, "group_by": None}, "window"),
    ({"detector": "nope"}, "unknown logs detector 'nope'"),
    ({"detector_params": {"bogus": 1}}, "has no parameter"),
])
def test_a_model_file_with_bad_regexes_or_settings_is_refused_at_load(session_model, tmp_path, params, message):
    import shutil

    path = Path(shutil.copytree(session_model, tmp_path / "m"))
    rewrite_params(path, **params)
    with pytest.raises(ModelFileError, match=re.escape(message) if "(" in message else message):
        load(path)


HOSTILE = [None, True, 0, -1, 2 ** 63, 1e308, 5e-324, "", "(a|aa)+$", "\\", "x" * 5000, [], [1], {}, {"window": 3}]


@pytest.mark.parametrize("param", ["detector", "log_format", "group_by", "window", "step", "detector_params", "sim_th",
                                   "depth", "max_children"])
def test_any_value_of_any_parameter_in_a_model_file_loads_and_scores_or_is_refused_clearly(session_model, tmp_path,
                                                                                         param):
    import shutil

    from normalcy.core.errors import NormalcyError

    lines = [f"session {i % 7} step {i % 3}" for i in range(20)]
    for n, value in enumerate(HOSTILE):
        path = Path(shutil.copytree(session_model, tmp_path / f"m{n}"))
        rewrite_params(path, **{param: value})
        try:
            model = load(path)
        except ModelFileError:
            continue
        try:
            assert np.isfinite(model.explain(lines).scores).all()
        except NormalcyError:
            pass


def test_a_model_files_backtracking_group_pattern_cannot_hang_scoring(session_model, tmp_path):
    import shutil
    import time

    slow, hang = tmp_path / "slow", tmp_path / "hang"
    shutil.copytree(session_model, slow)
    shutil.copytree(session_model, hang)
    # 2^24 ways to split 24 a's: about 6 s a line on Python's re.
    rewrite_params(slow, group_by="(a+)+$")
    start = time.perf_counter()
    load(slow).analyse(["a" * 24 + "!", "a" * 24 + "!", "a" * 24], explain=False)
    assert time.perf_counter() - start < 2
    # A pattern the regex engine cannot shortcut stops at the time bound with the line named.
    rewrite_params(hang, group_by="(a|aa)+$")
    with pytest.raises(DataError, match=r"--group-by '\(a\|aa\)\+\$' ran over .* on <lines>:1"):
        load(hang).analyse(["a" * 60 + "!"], explain=False)
