"""`normalcy ts fit | score | evaluate | stream | benchmark`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

app = typer.Typer(help="Time series: an anomaly score per reading, batch or streaming.", no_args_is_help=True)

TIME = typer.Option(None, "--time-column", help="Timestamp column (default: 'timestamp', 'time', 'date' or a datetime index).")
COLUMNS = typer.Option(None, "--columns", help="Comma-separated value columns (default: all but time).")
DUPLICATES = typer.Option("error", "--duplicates", help="Rows sharing a timestamp: error, first, last or mean.")


@app.command()
def fit(
    data: Path = typer.Argument(..., help="Mostly normal series: CSV or Parquet."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option("range-novelty", "--model", help="Detector: range-novelty, rolling-mad or spectral-residual."),
    history: int = typer.Option(None, "--history", help="Readings the detector remembers (default: the detector's)."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on the last --holdout of the data) or fixed:VALUE."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction at the end of the data whose causal scores set the threshold."),
    time_column: str = TIME, columns: str = COLUMNS, duplicates: str = DUPLICATES,
):
    """Learn a series' normal behaviour and set an alert threshold."""
    from normalcy.core.errors import DataError
    from normalcy.core.threshold import parse_threshold
    from normalcy.timeseries import DETECTORS, TimeSeries

    if model not in DETECTORS:
        raise DataError(f"unknown model {model!r}; expected one of {', '.join(DETECTORS)}")
    if not 0.0 < holdout < 1.0:
        raise DataError(f"--holdout must be in (0, 1), got {holdout}")
    series = _read(data, time_column, columns, duplicates)
    split = int(len(series) * (1 - holdout))
    if split < 1 or split == len(series):
        raise DataError(f"{data}: {len(series)} readings are too few to hold out {holdout:g} of them")
    detector = DETECTORS[model](**({"history": history} if history else {}))
    detector.fit(TimeSeries(series.values[:split], series.columns))
    detector.calibrate_scores(detector.score(series.values[split:]), parse_threshold(threshold))
    for row in series.values[split:]:  # the saved model goes on from the end of the data
        detector.learn_one(row)
    detector.save(out)
    typer.echo(f"saved {model} to {out} (threshold {detector.threshold_:.4f})")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy ts fit`."),
    data: Path = typer.Argument(..., help="The series that follows the training data."),
    out: Path = typer.Option(..., "--out", help="CSV to write: time, score, label, top variable."),
    time_column: str = TIME, duplicates: str = DUPLICATES,
):
    """Causal scores of a series, with labels at the model's threshold and the variable behind each."""
    import pandas as pd

    from normalcy.core.benchmark import write_atomic

    detector = _load(model_dir)
    series = _read(data, time_column, ",".join(detector.columns_), duplicates)
    scores, per_variable = detector.score_details(series.values)
    threshold = detector._require_threshold()
    frame = pd.DataFrame({"time": series.index, "score": scores, "label": (scores >= threshold).astype(int),
                          "top_variable": [detector.columns_[j] for j in per_variable.argmax(axis=1)]})
    write_atomic(out, frame.to_csv(index=False))
    typer.echo(f"{len(frame)} readings scored, {int(frame.label.sum())} flagged; results in {out}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Argument(..., help="Labelled series: value columns plus a 0/1 label column."),
    json_path: Path = typer.Option(..., "--json", help="Where to write the metrics."),
    label_column: str = typer.Option("label", "--label-column", help="The 0/1 anomaly label column."),
    time_column: str = TIME, duplicates: str = DUPLICATES,
):
    """AUC-PR, VUS-PR and PATE of causal scores against labels."""
    import numpy as np

    from normalcy.core.benchmark import write_atomic
    from normalcy.core.errors import DataError
    from normalcy.timeseries.benchmark import threshold_free
    from normalcy.timeseries.data import load_series

    detector = _load(model_dir)
    labels = load_series(data, time_column, [label_column], duplicates, missing="error").values[:, 0]
    if not np.isin(labels, (0, 1)).all():
        raise DataError(f"{data}: label column {label_column!r} must hold only 0 and 1")
    series = _read(data, time_column, ",".join(detector.columns_), duplicates)
    scores = detector.score(series.values)
    edges = np.flatnonzero(np.diff(np.r_[0, labels, 0]))
    windows = [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]
    metrics = {"model": str(model_dir), "detector": type(detector).__name__, "data": str(data),
               **threshold_free([(scores, windows)], probation=0.0), "n_readings": len(scores)}
    write_atomic(json_path, json.dumps(metrics, indent=2) + "\n")
    typer.echo(", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


@app.command()
def stream(model_dir: Path = typer.Argument(..., help="Model folder.")):
    """Read readings from stdin (numbers separated by commas, or a JSON object per line) and
    write one JSON line per reading: score, alert and each variable's raw score."""
    from normalcy.core.errors import DataError

    detector = _load(model_dir)
    threshold = detector._require_threshold()
    for number, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            reading = json.loads(line) if line.startswith("{") else [float(v) for v in line.split(",")]
        except ValueError as exc:
            raise DataError(f"stdin line {number}: not numbers or a JSON object: {line[:80]!r}") from exc
        score, variables = detector.explain_one(reading)
        detector.learn_one(reading)
        print(json.dumps({"score": score, "alert": score >= threshold, "variables": variables}), flush=True)


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="A NAB folder (data/ and labels/combined_windows.json)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("range-novelty,rolling-mad,spectral-residual", "--models", help="Comma-separated detectors."),
):
    """Every detector causally over NAB: NAB scores (three profiles), AUC-PR, VUS-PR, PATE, speed."""
    from normalcy.core.errors import DataError
    from normalcy.timeseries import DETECTORS
    from normalcy.timeseries.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in DETECTORS]
    if unknown or not names:
        raise DataError(f"unknown model(s) {', '.join(unknown) or '(none)'}; expected some of {', '.join(DETECTORS)}")
    json_out, md_out, _ = run(data, names, json_path)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


def _read(data: Path, time_column, columns, duplicates):
    from normalcy.timeseries.data import load_series

    return load_series(data, time_column, [c.strip() for c in columns.split(",")] if columns else None, duplicates)


def _load(model_dir: Path):
    from normalcy.core.errors import ModelFileError
    from normalcy.core.modelfile import load
    from normalcy.timeseries.base import TimeSeriesDetector

    detector = load(model_dir)
    if not isinstance(detector, TimeSeriesDetector):
        raise ModelFileError(f"{model_dir} holds a {type(detector).__name__}, not a time-series detector")
    return detector
