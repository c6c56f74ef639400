"""Reading tables and the column policy (normalcy.tabular.data): every source gives the same
matrix, missing values, robust scaling, categories seen and unseen, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from normalcy.core.errors import DataError
from normalcy.tabular.data import MISSING, TableEncoder, read_table


def mixed_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "size": [1.0, 2.0, 3.0, 4.0, 100.0, 5.0],
        "count": [3, 1, 4, 1, 5, 9],
        "colour": ["red", "red", "blue", "red", "green", "blue"],
    })


def encode(frame: pd.DataFrame, fit_on: pd.DataFrame | None = None) -> np.ndarray:
    train, train_name = read_table(mixed_frame() if fit_on is None else fit_on)
    table, name = read_table(frame)
    return TableEncoder().fit(train, train_name).transform(table, name)


def test_every_source_gives_the_same_table(tmp_path):
    frame = mixed_frame()
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_csv(tmp_path / "t.tsv", index=False, sep="\t")
    frame.to_parquet(tmp_path / "t.parquet")
    expected = encode(frame)
    for source in (tmp_path / "t.csv", str(tmp_path / "t.tsv"), tmp_path / "t.parquet", pa.table(frame),
                   frame.to_numpy(dtype=object)):
        got = read_table(source)[0]
        if isinstance(source, np.ndarray):  # arrays have no names: positions stand in
            got.columns = frame.columns
        assert np.array_equal(encode(got), expected)


def test_numeric_array_columns_are_named_by_position():
    frame, _ = read_table(np.arange(6.0).reshape(3, 2))
    assert list(frame.columns) == ["x0", "x1"]
    assert list(read_table(np.arange(3.0))[0].columns) == ["x0"]


def test_robust_scaling_uses_median_and_interquartile_range():
    size = mixed_frame()["size"].to_numpy()
    q25, median, q75 = np.percentile(size, [25, 50, 75])
    expected = (size - median) / ((q75 - q25) / 1.349)
    np.testing.assert_allclose(encode(mixed_frame())[:, 0], expected)


def test_constant_and_mostly_constant_columns_get_a_usable_scale():
    train = pd.DataFrame({"flat": [2.0] * 5, "mostly": [1.0, 1.0, 1.0, 1.0, 6.0]})
    z = encode(train, fit_on=train)
    assert np.all(z[:, 0] == 0)  # constant: centred, scale 1
    np.testing.assert_allclose(z[:, 1], (train["mostly"] - 1.0) / train["mostly"].std(ddof=0))


def test_missing_numbers_take_the_training_median():
    frame = mixed_frame()
    train = frame.copy()
    train.loc[0, "size"] = np.nan
    median = np.nanmedian(train["size"])
    z = encode(pd.DataFrame({"size": [np.nan, median], "count": [1, 1], "colour": ["red", "red"]}), fit_on=train)
    assert z[0, 0] == z[1, 0]


def test_categories_become_training_frequencies_and_unseen_ones_frequency_zero():
    encoder = TableEncoder().fit(mixed_frame())
    raw = encoder.transform(pd.DataFrame({"size": [3.0] * 4, "count": [3] * 4,
                                          "colour": ["red", "blue", "green", "purple"]}))[:, 2]
    frequency = raw * encoder.scale_[2] + encoder.center_[2]
    np.testing.assert_allclose(frequency, [3 / 6, 2 / 6, 1 / 6, 0.0])


def test_missing_category_is_its_own_category():
    train = pd.DataFrame({"c": ["a", None, "a", None, "b"]})
    encoder = TableEncoder().fit(train)
    assert encoder.categories_["c"][MISSING] == pytest.approx(2 / 5)
    z = encoder.transform(pd.DataFrame({"c": [None, np.nan]}))
    assert z[0, 0] == z[1, 0] == encoder.transform(train)[1, 0]


def test_booleans_and_strings_are_categorical_numbers_numeric():
    encoder = TableEncoder().fit(pd.DataFrame({"flag": [True, False, True], "n": [1, 2, 3], "s": ["x", "y", "x"]}))
    assert encoder.kinds_ == ["categorical", "numeric", "categorical"]


def test_extra_columns_are_ignored_and_order_follows_the_fit():
    frame = mixed_frame()
    shuffled = frame[["colour", "size", "count"]].assign(label=1)
    assert np.array_equal(encode(shuffled), encode(frame))


def test_encoder_state_round_trip():
    encoder = TableEncoder().fit(mixed_frame())
    arrays, meta = encoder.get_state()
    import json

    meta = json.loads(json.dumps(meta))  # as the model file stores it
    again = TableEncoder.from_state(arrays, meta)
    probe = pd.DataFrame({"size": [np.nan, 7.0], "count": [2, 8], "colour": ["blue", "unseen"]})
    assert np.array_equal(again.transform(probe), encoder.transform(probe))


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("frame, words", [
    (pd.DataFrame({"size": [1.0], "count": [1]}), ["colour"]),
    (pd.DataFrame({"size": ["big"], "count": [1], "colour": ["red"]}), ["size", "big"]),
    (pd.DataFrame({"size": [np.inf], "count": [1], "colour": ["red"]}), ["size", "infinity"]),
    (pd.DataFrame({"size": [True], "count": [1], "colour": ["red"]}), ["size", "true/false"]),
])
def test_bad_input_at_score_time_names_the_column(frame, words):
    with pytest.raises(DataError) as err:
        encode(frame)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("source, words", [
    (pd.DataFrame({"a": []}), ["empty"]),
    (np.empty((0, 3)), ["empty"]),
    (pd.DataFrame([[1, 2]], columns=["a", "a"]), ["duplicate", "a"]),
    ({"a": [1]}, ["dict"]),
    ("nowhere.csv", ["nowhere.csv", "does not exist"]),
])
def test_unreadable_tables_are_refused(source, words):
    with pytest.raises(DataError) as err:
        read_table(source)
    for word in words:
        assert word in str(err.value)


def test_empty_file_and_unknown_suffix_are_refused(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "t.xlsx").write_text("a\n1\n")
    with pytest.raises(DataError, match="empty"):
        read_table(tmp_path / "empty.csv")
    with pytest.raises(DataError, match="xlsx"):
        read_table(tmp_path / "t.xlsx")


def test_fit_refuses_all_missing_and_date_columns():
    with pytest.raises(DataError, match="'gap'"):
        TableEncoder().fit(pd.DataFrame({"gap": [np.nan, np.nan], "n": [1.0, 2.0]}))
    with pytest.raises(DataError, match="'when'"):
        TableEncoder().fit(pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
