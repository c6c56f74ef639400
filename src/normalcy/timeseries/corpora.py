"""Labelled corpora for `normalcy ts benchmark`, found by their layout under a folder, each
series split into a training part (learned first) and a test part (scored, labelled).

- NAB (a folder with `labels/combined_windows.json` and `data/`): each file's probationary first
  15 % (at most 750 readings), which NAB never scores, is the training part; the rest is the
  test part, with the windows that reach into it.
- Telemanom layout, NASA MSL (a folder with `labeled_anomalies.csv`, `train/` and `test/`):
  each channel's `train/<chan>.npy` and `test/<chan>.npy`, column 0 (the telemetry value; the
  other columns are one-hot command flags, inputs of the original forecaster, not telemetry),
  with `anomaly_sequences` as inclusive index ranges into the test array.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError
from normalcy.timeseries.data import TimeSeries
from normalcy.timeseries.nab import load_corpus, probation_length


@dataclass(frozen=True)
class LabelledSeries:
    """One series: its training and test parts and the labelled windows of the test part
    (inclusive reading indices)."""

    name: str
    train: TimeSeries
    test: TimeSeries
    windows: list[tuple[int, int]]
    full_windows: list[tuple[int, int]] | None = None  # NAB: the windows in the whole file, for its scorer

    def labels(self) -> np.ndarray:
        y = np.zeros(len(self.test), dtype=np.int8)
        for a, b in self.windows:
            y[a : b + 1] = 1
        return y


@dataclass(frozen=True)
class Corpus:
    name: str
    kind: str  # "nab" or "telemanom"
    series: list[LabelledSeries]


def find_corpora(root: str | Path) -> list[Corpus]:
    """Every corpus at `root` or in a folder below it (two levels at most), by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"benchmark data folder {root} does not exist")
    found = []
    for folder in sorted({root, *root.glob("*"), *root.glob("*/*")}):
        if (folder / "labels" / "combined_windows.json").is_file() and (folder / "data").is_dir():
            found.append(nab_corpus(folder))
        elif (folder / "labeled_anomalies.csv").is_file() and (folder / "train").is_dir():
            found.append(telemanom_corpus(folder))
    if not found:
        raise DataError(f"no corpus under {root}: expected a NAB folder (labels/combined_windows.json, data/) "
                        "or a telemanom folder (labeled_anomalies.csv, train/, test/)")
    return found


def nab_corpus(folder: Path) -> Corpus:
    series = []
    for f in load_corpus(folder):
        cut = probation_length(len(f.values))
        values = f.values[:, None]
        windows = [(max(a - cut, 0), b - cut) for a, b in f.windows if b >= cut]
        series.append(LabelledSeries(f.name, TimeSeries(values[:cut], ["value"], f.timestamps[:cut]),
                                     TimeSeries(values[cut:], ["value"], f.timestamps[cut:]), windows, f.windows))
    return Corpus(folder.name, "nab", series)


def telemanom_corpus(folder: Path) -> Corpus:
    table = folder / "labeled_anomalies.csv"
    with open(table, newline="") as fh:
        rows = sorted(csv.DictReader(fh), key=lambda r: r["chan_id"])
    series = []
    for row in rows:
        paths = [folder / part / f"{row['chan_id']}.npy" for part in ("train", "test")]
        if not all(p.is_file() for p in paths):
            continue
        train, test = (np.load(p, allow_pickle=False)[:, :1].astype(np.float64) for p in paths)
        try:
            ranges = json.loads(row["anomaly_sequences"])
        except json.JSONDecodeError as exc:
            raise DataError(f"{table}: channel {row['chan_id']}: anomaly_sequences is not a JSON list") from exc
        windows = [(int(a), min(int(b), len(test) - 1)) for a, b in ranges if int(a) < len(test)]
        series.append(LabelledSeries(row["chan_id"], TimeSeries(train, ["value"]), TimeSeries(test, ["value"]), windows))
    if not series:
        raise DataError(f"{table} names no channel with both train/ and test/ arrays in {folder}")
    return Corpus(folder.name, "telemanom", series)
