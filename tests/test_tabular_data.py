"""Reading tables and the column policy (normalcy.tabular.data): every source gives the same
matrix, missing values, robust scaling, categories seen and unseen, columns that cannot
describe normal rows, silent changes of meaning, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from normalcy.core.errors import DataError, ModelFileError
from normalcy.tabular.data import MISSING, MixedColumnWarning, TableEncoder, check_strict, read_table


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
    (pd.DataFrame({"size": [np.inf], "count": [1], "colour": ["red"]}), ["size", "infinity", "row 0"]),
    (pd.DataFrame({"size": [1.0], "count": [1], "colour": pd.Series(["\ud800"], dtype=object)}),
     ["colour", "lone surrogate", "row 0"]),
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
    with pytest.raises(DataError, match=r"'when'.*--drop when"):
        TableEncoder().fit(pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"])}))


def test_a_datetime_column_in_a_parquet_file_is_named_with_the_file(tmp_path):
    """Issue 22 item 1: the error named "data frame", not the file."""
    from normalcy.tabular import KNN

    pd.DataFrame({"x": np.arange(20.0) % 7, "when": pd.date_range("2024-01-01", periods=20)}).to_parquet(
        tmp_path / "t.parquet")
    with pytest.raises(DataError, match=r"t.parquet: column 'when' has type datetime64.*--drop when"):
        KNN().fit(tmp_path / "t.parquet")
    frame, _ = read_table(tmp_path / "t.parquet")  # also through a frame read from the file
    with pytest.raises(DataError, match=r"t.parquet: column 'when'"):
        KNN().fit(frame.iloc[:15])


def numbers(n: int = 30) -> pd.DataFrame:
    return pd.DataFrame({"x": np.random.default_rng(0).normal(size=n)})


@pytest.mark.parametrize("values, words", [
    ([f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:00:00" for i in range(30)], ["dates or times as text", "--drop ts"]),
    ([f"{1 + i % 28:02d}/03/2024" for i in range(30)], ["dates or times as text"]),
    ([f"order-{i:05d}" for i in range(30)], ["identifier", "all 30 values differ", "--drop ts"]),
    (np.arange(1000, 1030), ["row number, identifier or time stamp", "--drop ts"]),
    (np.arange(1_700_000_000, 1_700_000_000 - 30 * 60, -60), ["only rise or only fall", "--drop ts"]),
])
def test_dates_as_text_and_identifiers_are_refused_naming_the_column_and_drop(values, words):
    """Issue 22 item 1: a text timestamp was a category: every new row unseen, AUROC 0.5."""
    with pytest.raises(DataError) as err:
        TableEncoder().fit(numbers().assign(ts=values), "wine.csv")
    assert str(err.value).startswith("wine.csv: column 'ts'")
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("values", [
    [f"c{i % 7}" for i in range(30)],  # categories that repeat
    [f"v{i}" for i in range(9)] + [None] * 21,  # distinct, but too few to call an identifier
    np.random.default_rng(1).integers(0, 1000, 30),  # integers in no order
    np.arange(30.0),  # floats: a measurement, even if it rises
])
def test_ordinary_columns_are_not_taken_for_identifiers(values):
    TableEncoder().fit(numbers().assign(ts=values), "t")


def test_a_text_cell_in_a_column_of_numbers_is_named_in_a_warning_or_refused_when_strict(tmp_path):
    """Issue 12 item 12: one text cell made a numeric column categorical without a word."""
    frame = pd.DataFrame({"size": [float(i) for i in range(30)], "n": np.arange(30) % 4})
    frame["size"] = frame["size"].astype(object)
    frame.loc[17, "size"] = "twelve"
    frame.to_csv(tmp_path / "t.csv", index=False)
    table, name = read_table(tmp_path / "t.csv")
    with pytest.warns(MixedColumnWarning, match=r"t.csv: column 'size' is read as categories, not numbers, "
                                                r"because of 1 non-numeric value\(s\) among its 30, the first "
                                                r"'twelve' at row 17"):
        encoder = TableEncoder().fit(table, name)
    assert encoder.kinds_ == ["categorical", "numeric"]
    with pytest.raises(DataError, match=r"t.csv: column 'size' holds numbers and 1 non-numeric value\(s\), the "
                                        r"first 'twelve' at row 17.*--drop size"):
        check_strict(table, name)
    check_strict(table.drop(columns=["size"]), name)


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path):
    """Issue 12 item 12: pandas renamed the second `a` to `a.1` silently."""
    (tmp_path / "t.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match=r"t.csv: the header names column 'a' twice \(columns 1 and 3\)"):
        read_table(tmp_path / "t.csv")
    (tmp_path / "t.tsv").write_text("a\ta.1\n1\t2\n")  # a real column named a.1 is fine
    assert list(read_table(tmp_path / "t.tsv")[0].columns) == ["a", "a.1"]


def test_a_model_file_encoder_with_a_zero_scale_is_refused():
    arrays, meta = TableEncoder().fit(mixed_frame()).get_state()
    arrays["encoder.scale"] = np.array([1.0, 0.0, 1.0])
    with pytest.raises(ModelFileError, match="scales must be positive"):
        TableEncoder.from_state(arrays, meta)
