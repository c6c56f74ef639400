"""Plots and HTML reports of scored series: spans, decimation, the figure, the page, the CLI."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from clirunner import run_in_process
from metric_frames import metric_frame, ts_files  # noqa: F401 - a shared fixture

from normalcy.core.errors import DataError
from normalcy.core.modelfile import load
from normalcy.timeseries.data import TimeSeries
from normalcy.timeseries.plot import ScoredSeries, chosen_variables, decimate, flagged_spans, plot_png
from normalcy.timeseries.report import report_html

# Hand-worked case: threshold 2; readings 1, 2, 3 (1 sits exactly on it), 5 and 8 are flagged.
SCORES = np.array([0, 2, 3, 2.5, 0, 5, 1, 0, 4], dtype=float)
# The top variable per reading: b, a, a in the first span; b at 5; a at 8.
TOP = [0, 1, 0, 0, 0, 1, 0, 0, 0]
PER_VARIABLE = np.array([[1.0, 0.0] if t == 0 else [0.0, 1.0] for t in TOP])


def _series(n=len(SCORES), d=2, seed=0) -> TimeSeries:
    values = np.random.default_rng(seed).normal(size=(n, d))
    return TimeSeries(values, ["a", "b", *[f"v{j}" for j in range(2, d)]][:d],
                      pd.date_range("2024-01-01", periods=n, freq="h").to_numpy())


def test_flagged_spans_by_hand():
    spans = flagged_spans(SCORES, PER_VARIABLE, 2.0, ["a", "b"])
    assert [(s.start, s.end, s.peak, s.peak_score, s.drivers) for s in spans] == [
        (1, 3, 2, 3.0, ["a", "b"]),  # a tops 2 of the 3 readings
        (5, 5, 5, 5.0, ["b"]),
        (8, 8, 8, 4.0, ["a"]),  # a span may end with the series
    ]
    # Equal counts: the variable seen first leads.
    assert flagged_spans([3, 3], [[0, 1], [1, 0]], 1.0, ["a", "b"])[0].drivers == ["b", "a"]
    assert flagged_spans(SCORES, PER_VARIABLE, 5.01, ["a", "b"]) == []


def test_decimation_keeps_every_bucket_extreme():
    rng = np.random.default_rng(1)
    values = rng.normal(size=100_003)
    values[12_345], values[777] = 50.0, -50.0
    keep = decimate(values, 1000)
    assert len(keep) <= 2 * 1000 + 2 and np.all(np.diff(keep) > 0)
    assert {0, 777, 12_345, len(values) - 1} <= set(keep.tolist())
    size = -(-len(values) // 1000)
    kept = np.zeros(len(values), dtype=bool)
    kept[keep] = True
    for start in range(0, len(values), size):  # each bucket's max and min are drawn
        block, mask = values[start : start + size], kept[start : start + size]
        assert block[mask].max() == block.max() and block[mask].min() == block.min()
    np.testing.assert_array_equal(decimate(values[:50], 1000), np.arange(50))


def _reddish(png: bytes) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 0] - rgb[..., 2] > 40)).sum())


def _greenish(png: bytes) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb[..., 1] - rgb[..., 0] > 15) & (rgb[..., 1] - rgb[..., 2] > 15)).sum())


def test_png_size_and_what_is_shaded():
    series = _series()
    png = plot_png(ScoredSeries(series, SCORES, PER_VARIABLE, 2.0, [(4, 6)]), "t")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (1400, 90 + 2 * 150 + 230)
    assert _reddish(png) > 100 and _greenish(png) > 100
    quiet = plot_png(ScoredSeries(series, SCORES, PER_VARIABLE, 99.0), "t", width=800)
    assert Image.open(io.BytesIO(quiet)).size == (800, 620)
    assert _reddish(quiet) == 0 and _greenish(quiet) == 0  # no flags, no windows: nothing shaded


def test_many_variables_are_capped_by_peak_score():
    per_variable = np.zeros((5, 9))
    per_variable[2, [7, 1, 4, 0]] = [9, 8, 7, 6]
    assert chosen_variables(per_variable, 3) == [1, 4, 7]
    assert chosen_variables(per_variable[:, :3], 3) == [0, 1, 2]
    series = _series(n=5, d=9)
    png = plot_png(ScoredSeries(series, per_variable.max(axis=1), per_variable, 7.5), "t", max_panels=3)
    assert Image.open(io.BytesIO(png)).size == (1400, 90 + 3 * 150 + 230)


def test_mismatched_scores_are_refused():
    with pytest.raises(DataError, match="do not match"):
        ScoredSeries(_series(), SCORES[:-1], PER_VARIABLE, 2.0)
    with pytest.raises(DataError, match="outside"):
        ScoredSeries(_series(), SCORES, PER_VARIABLE, 2.0, [(5, 9)])


class _Tables(HTMLParser):
    """Rows of cell texts of every table, and the img sources."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(page: str) -> _Tables:
    parser = _Tables()
    parser.feed(page)
    return parser


def test_report_lists_the_spans_strongest_first():
    scored = ScoredSeries(_series(), SCORES, PER_VARIABLE, 2.0, [(4, 6)])
    png = plot_png(scored, "t")
    page = _parse(report_html(scored, "t", png, {"data": "x.csv"}, {"vus_pr": 0.25}))
    facts, metrics, windows, spans = page.tables
    assert ["data", "x.csv"] in facts and ["flagged spans", "3"] in facts
    assert metrics == [["vus_pr", "0.25"]]
    assert windows[1] == ["2024-01-01 04:00:00", "2024-01-01 06:00:00", "3", "first flagged at 2024-01-01 05:00:00"]
    assert spans[0] == ["#", "start", "end", "readings", "peak score", "peak at", "driven by", "in a labelled window"]
    assert spans[1:] == [
        ["1", "2024-01-01 05:00:00", "2024-01-01 05:00:00", "1", "5", "2024-01-01 05:00:00", "b", "yes"],
        ["2", "2024-01-01 08:00:00", "2024-01-01 08:00:00", "1", "4", "2024-01-01 08:00:00", "a", "no"],
        ["3", "2024-01-01 01:00:00", "2024-01-01 03:00:00", "3", "3", "2024-01-01 02:00:00", "a, b", "no"],
    ]
    (src,) = page.images
    assert base64.b64decode(src.removeprefix("data:image/png;base64,")) == png
    # No time column: positions stand in for times; no labels: no label column.
    untimed = ScoredSeries(TimeSeries(_series().values, ["a", "b"]), SCORES, PER_VARIABLE, 2.0)
    rows = _parse(report_html(untimed, "t", png, {})).tables[-1]
    assert rows[0][-1] == "driven by" and rows[3][:3] == ["3", "reading 1", "reading 3"]


# --- the CLI --------------------------------------------------------------------------------


def cli(*args):
    return run_in_process("ts", *map(str, args))


def test_score_writes_plot_and_report(ts_files, tmp_path):
    result = cli("score", ts_files.model, ts_files.test, "--plot", tmp_path / "p.png", "--report", tmp_path / "r.html")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "p.png").size == (1400, 620)
    spans = _parse((tmp_path / "r.html").read_text()).tables[-1]
    spike = str(pd.Timestamp("2024-01-03") + 150 * pd.Timedelta("5min"))
    # The spike's span leads, driven by mem; it starts at the spike and, for a windowed default,
    # lasts while the subsequences ending after it hold the spike.
    model = load(ts_files.model)
    reach = pd.Timedelta("5min") * (getattr(model, "window_", None) or getattr(model, "window", None) or 1)
    start, end = (pd.Timestamp(v) for v in spans[1][1:3])
    assert start == pd.Timestamp(spike) and pd.Timestamp(spike) <= end < pd.Timestamp(spike) + reach
    assert spans[1][6] == "mem"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png", "r.html"]  # no temp files left


def test_evaluate_report_with_nab_style_windows(ts_files, tmp_path):
    t = pd.read_csv(ts_files.test).timestamp
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps({"sub/test.csv": [[t[148], t[152]]], "other.csv": []}))
    result = cli("evaluate", ts_files.model, ts_files.test, "--windows", windows,
                 "--report", tmp_path / "r.html", "--json", tmp_path / "e.json")
    assert result.returncode == 0, result.stderr
    from_windows = json.loads((tmp_path / "e.json").read_text())
    assert from_windows["n_windows"] == 1 and from_windows["event_f1_at_threshold"] > 0
    page = _parse((tmp_path / "r.html").read_text())
    metrics = dict(page.tables[1])
    assert float(metrics["vus_pr"]) == pytest.approx(from_windows["vus_pr"], abs=1e-4)
    assert page.tables[-1][1][-1] == "yes"  # the spike's span lies in the window
    # The same window as a label column gives the same metrics.
    result = cli("evaluate", ts_files.model, ts_files.test, "--json", tmp_path / "l.json")
    assert result.returncode == 0, result.stderr
    from_labels = json.loads((tmp_path / "l.json").read_text())
    assert {k: from_labels[k] for k in ("vus_pr", "auc_pr", "pate")} == {k: from_windows[k] for k in ("vus_pr", "auc_pr", "pate")}


def test_bad_input_writes_nothing(ts_files, tmp_path):
    bad = tmp_path / "bad.csv"
    frame = metric_frame(50)
    frame["mem"] = frame["mem"].astype(object)
    frame.loc[10, "mem"] = "oops"
    frame.to_csv(bad, index=False)
    out = tmp_path / "out"
    cases = [
        ("score", ts_files.model, bad, "--plot", out / "p.png", "--report", out / "r.html"),
        ("score", ts_files.model, ts_files.test),  # nothing asked for
        ("evaluate", ts_files.model, ts_files.test, "--windows", tmp_path / "none.json", "--report", out / "r.html"),
    ]
    (tmp_path / "none.json").write_text(json.dumps({"elsewhere/x.csv": []}))
    for args in cases:
        result = cli(*args)
        assert result.returncode == 2 and result.stderr.startswith("error: "), (args, result.stderr)
        assert re.search(r"oops|nothing to write|no entry", result.stderr)
    assert not out.exists()
