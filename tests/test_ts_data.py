"""Reading time series by the documented policy (normalcy.timeseries.data)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from normalcy.core.errors import DataError
from normalcy.timeseries.data import as_series, load_series


def _frame():
    return pd.DataFrame({"timestamp": ["2024-01-01 00:02", "2024-01-01 00:00", "2024-01-01 00:01"],
                         "a": [3.0, 1.0, 2.0], "b": [30, 10, 20]})


def test_csv_and_parquet_read_the_same_sorted_series(tmp_path):
    _frame().to_csv(tmp_path / "s.csv", index=False)
    _frame().to_parquet(tmp_path / "s.parquet")
    for path in (tmp_path / "s.csv", tmp_path / "s.parquet"):
        s = load_series(path)
        assert s.columns == ["a", "b"]
        np.testing.assert_array_equal(s.values, [[1, 10], [2, 20], [3, 30]])
        assert str(s.timestamps[0]).startswith("2024-01-01T00:00")


def test_arrow_table_and_datetime_index():
    import pyarrow as pa

    s = load_series(pa.Table.from_pandas(_frame()), columns=["b"])
    np.testing.assert_array_equal(s.values[:, 0], [10, 20, 30])
    indexed = _frame().assign(timestamp=lambda f: pd.to_datetime(f.timestamp)).set_index("timestamp")
    assert load_series(indexed).values[0, 0] == 1.0


def test_no_time_column_uses_positions():
    s = as_series(np.array([1.0, 2.0, 3.0]))
    assert s.timestamps is None and s.values.shape == (3, 1)


def test_duplicates_are_an_error_unless_the_user_chooses():
    f = pd.DataFrame({"timestamp": ["2024-01-01", "2024-01-01", "2024-01-02"], "v": [1.0, 3.0, 5.0]})
    with pytest.raises(DataError, match="share a timestamp.*duplicates="):
        load_series(f)
    np.testing.assert_array_equal(load_series(f, duplicates="mean").values[:, 0], [2.0, 5.0])
    np.testing.assert_array_equal(load_series(f, duplicates="last").values[:, 0], [3.0, 5.0])


def test_gaps_and_missing_values_follow_the_policy():
    f = pd.DataFrame({"timestamp": ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 00:04"],
                      "v": [np.nan, 2.0, 4.0]})
    np.testing.assert_array_equal(load_series(f).values[:, 0], [2.0, 2.0, 4.0])
    regular = load_series(f, freq="1min")
    np.testing.assert_array_equal(regular.values[:, 0], [2.0, 2.0, 2.0, 2.0, 4.0])
    with pytest.raises(DataError, match="missing a value"):
        load_series(f, missing="error")


@pytest.mark.parametrize("frame, words", [
    (pd.DataFrame({"timestamp": [], "v": []}), "empty"),
    (pd.DataFrame({"timestamp": ["2024-01-01", "2024-01-02"], "v": [np.nan, np.nan]}), "'v' has no values"),
    (pd.DataFrame({"timestamp": ["2024-01-01", "2024-01-02"], "v": [1.0, "high"]}), "'high'"),
    (pd.DataFrame({"timestamp": ["2024-01-01", "not a date"], "v": [1.0, 2.0]}), "not timestamps"),
])
def test_bad_input_is_a_clear_error(frame, words):
    with pytest.raises(DataError, match=words):
        load_series(frame)


def test_unknown_column_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="unknown column.*zz.*a, b"):
        load_series(_frame(), columns=["zz"])
    with pytest.raises(DataError, match="does not exist"):
        load_series(tmp_path / "none.csv")


# --- issue 16 item 6: the frictions a new user met ---------------------------------------------


def test_label_and_row_index_columns_are_never_variables(tmp_path):
    from normalcy.timeseries.data import IndexColumnWarning

    frame = pd.DataFrame({"Unnamed: 0": range(4), "sample": range(10, 14), "cpu": [1.0, 2.0, 3.0, 4.0],
                          "is_anomaly": [0, 0, 1, 0], "Label": [0, 1, 0, 0]})
    frame.to_csv(tmp_path / "s.csv", index=False)
    with pytest.warns(IndexColumnWarning, match="'Unnamed: 0', 'sample'"):
        s = load_series(tmp_path / "s.csv")
    assert s.columns == ["cpu"]
    # an integer column that does not count the rows is a variable like any other
    frame.assign(sample=[3, 1, 2, 5]).drop(columns="Unnamed: 0").to_csv(tmp_path / "t.csv", index=False)
    assert load_series(tmp_path / "t.csv").columns == ["sample", "cpu"]
    # named explicitly, a column is read whatever its name (evaluate reads its labels so)
    assert load_series(tmp_path / "s.csv", columns=["is_anomaly"]).values[:, 0].tolist() == [0, 0, 1, 0]


def test_headerless_text_ucr_txt_and_npy_series(tmp_path):
    (tmp_path / "one.txt").write_text("0.5\n1.5\n2.5\n3.5\n")  # UCR archive: one number a line
    (tmp_path / "row.txt").write_text("1 2 3 4 5\n")  # or all on one line
    (tmp_path / "two.csv").write_text("1.0,10\n2.0,20\n3.0,30\n")  # no header: the first line is a reading
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    np.save(tmp_path / "wide.npy", np.arange(6).reshape(3, 2))
    got = {name: load_series(tmp_path / name) for name in ("one.txt", "row.txt", "two.csv", "flat.npy", "wide.npy")}
    assert got["one.txt"].columns == ["value"] and got["one.txt"].values[:, 0].tolist() == [0.5, 1.5, 2.5, 3.5]
    assert got["row.txt"].values[:, 0].tolist() == [1, 2, 3, 4, 5]
    assert got["two.csv"].columns == ["x0", "x1"] and got["two.csv"].values.tolist() == [[1, 10], [2, 20], [3, 30]]
    assert got["flat.npy"].values.shape == (5, 1) and got["wide.npy"].columns == ["x0", "x1"]
    assert got["wide.npy"].values[2].tolist() == [4.0, 5.0]
    # a header stays a header
    (tmp_path / "named.csv").write_text("cpu,mem\n1,2\n")
    assert load_series(tmp_path / "named.csv").columns == ["cpu", "mem"]
    np.save(tmp_path / "cube.npy", np.zeros((2, 2, 2)))
    with pytest.raises(DataError, match="1-d or 2-d"):
        load_series(tmp_path / "cube.npy")
