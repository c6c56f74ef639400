"""Grouping lines into sessions and time windows, and the event-count matrix."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.errors import DataError
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


def test_sliding_windows_by_hand():
    # Lines at t = 0, 25, 10 (out of order in the file), one without a time (takes the time of
    # the line before it, 10) and 61.
    times = [0.0, 25.0, 10.0, None, 61.0]
    groups = by_time(times, window=30, step=15)
    # Windows [0,30) [15,45) [30,60) [45,75) [60,90): the empty one at 30 is dropped.
    assert groups.keys == ["0", "15", "45", "60"]
    assert [g.tolist() for g in groups.lines] == [[0, 1, 2, 3], [1], [4], [4]]


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


def test_count_matrix_has_an_unseen_column():
    counts = count_matrix([np.array([5, 5, 9, 7]), np.array([7])], np.array([5, 7]))
    assert counts.tolist() == [[2, 1, 1], [0, 1, 0]]


@pytest.mark.parametrize("text,seconds", [("90", 90), ("60s", 60), ("5m", 300), ("2h", 7200), ("1d", 86400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(DataError):
        parse_duration("soon")


def test_log_model_with_time_windows_round_trips_and_flags_an_error_burst(tmp_path):
    from normalcy.core import FalseAlarmRate, load
    from normalcy.logs.model import LogModel

    rng = np.random.default_rng(2)
    # BGL-format lines, one every ~10 s; normal traffic is two kinds of message.
    def lines(start, n, burst=False):
        out = []
        for i in range(n):
            t = start + 10 * i
            msg = ("instruction cache parity error corrected" if rng.random() < 0.5
                   else f"generating core.{int(rng.integers(1000))}")
            if burst and 100 <= i < 110:
                msg = f"rts panic! - stopping execution at 0x{int(rng.integers(1 << 30)):x}"
            out.append(f"- {t} 2005.06.03 R02 2005-06-03 R02 RAS KERNEL INFO {msg}")
        return out

    train = lines(1_000_000, 3000)
    model = LogModel("unseen", log_format="bgl", window=600, step=300).fit_holdout(
        train, 0.1, FalseAlarmRate(0.05))
    again = load(model.save(tmp_path / "m"))
    new = lines(2_000_000, 300, burst=True)
    result, reloaded = model.analyse(new), again.analyse(new)
    assert np.array_equal(result.event_ids, reloaded.event_ids)
    assert np.array_equal(result.scores, reloaded.scores)
    flagged = [k for k, label in zip(result.groups.keys, result.labels) if label]
    # The burst is at t = 2,001,000 .. 2,001,090: the windows starting at 2,000,600 and 2,000,900.
    assert flagged == ["2000600", "2000900"]
