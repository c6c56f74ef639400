"""`normalcy ts fit | models | score | evaluate | stream | benchmark`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

DEFAULT = "subsequence-join"  # normalcy.timeseries.DEFAULT, without importing the modality for --help
app = typer.Typer(help="Time series: an anomaly score per reading, batch or streaming.", no_args_is_help=True)

TIME = typer.Option(None, "--time-column", help="Timestamp column (default: 'timestamp', 'time', 'date' or a datetime index).")
COLUMNS = typer.Option(None, "--columns", help="Comma-separated value columns (default: all but time).")
DUPLICATES = typer.Option("error", "--duplicates", help="Rows sharing a timestamp: error, first, last or mean.")
PLOT = typer.Option(None, "--plot", help="PNG to write: each variable, the score against the threshold, flagged spans.")
REPORT = typer.Option(None, "--report", help="Self-contained HTML page: the plot and a table of the flagged spans.")


@app.command()
def fit(
    data: Path = typer.Argument(..., help="Mostly normal series: CSV or Parquet."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(DEFAULT, "--model", help=model_help("timeseries", DEFAULT)),
    param: list[str] = PARAM,
    history: int = typer.Option(None, "--history", help="Readings the detector remembers (default: the detector's); "
                                "the same as --param history=N."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on the last --holdout of the data; never "
                                  "below the detector's alert level, if it has one) or fixed:VALUE."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction at the end of the data whose causal scores set the threshold."),
    time_column: str = TIME, columns: str = COLUMNS, duplicates: str = DUPLICATES,
):
    """Learn a series' normal behaviour and set an alert threshold."""
    import warnings

    from normalcy.cli.common import echo_fit
    from normalcy.core.holdout import CalibrationWarning
    from normalcy.core.registry import detector_class, parse_params
    from normalcy.core.threshold import parse_threshold
    from normalcy.timeseries.workflow import fit_model

    strategy = parse_threshold(threshold)
    params = {**({"history": history} if history is not None else {}),
              **parse_params(param, detector_class("timeseries", model))}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = _read(data, time_column, columns, duplicates)
        detector = fit_model(series, model, strategy, holdout, params, name=str(data))
    detector.save(out)
    echo_fit(detector, model, out, "readings")  # it states the calibration's caveat itself
    for warning in caught:
        if not issubclass(warning.category, CalibrationWarning):
            typer.echo(f"warning: {warning.message}", err=True)


@app.command()
def models():
    """List the detectors with their parameters and defaults."""
    from normalcy.cli.common import list_models

    list_models("timeseries")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy ts fit`."),
    data: Path = typer.Argument(..., help="The series that follows the training data."),
    out: Path = typer.Option(None, "--out", help="CSV to write: time, score, label, the variable behind each score "
                             "and, for detectors that give it (gbt-forecast's TreeSHAP), the evidence."),
    plot: Path = PLOT, report: Path = REPORT,
    time_column: str = TIME, duplicates: str = DUPLICATES,
):
    """Causal scores of a series, with labels at the model's threshold and the variable behind each."""
    import pandas as pd

    from normalcy.core.errors import DataError
    from normalcy.timeseries.plot import ScoredSeries

    if not (out or plot or report):
        raise DataError("nothing to write: give --out, --plot or --report")
    detector = _load(model_dir)
    series = _read(data, time_column, ",".join(detector.columns_), duplicates)
    explanation = detector.explain(series)
    scores, per_variable = explanation.scores, explanation.contributions
    threshold = detector._require_threshold()
    frame = pd.DataFrame({"time": series.index, "score": scores, "label": (scores >= threshold).astype(int),
                          "top_variable": [top[0] for top in explanation.top()]})
    if explanation.evidence and any(explanation.evidence):  # e.g. gbt-forecast's TreeSHAP attributions
        frame["evidence"] = ["; ".join(e) for e in explanation.evidence]
    files = {out: frame.to_csv(index=False)} if out else {}
    files |= _pictures(ScoredSeries(series, scores, per_variable, threshold), f"{data.name}: {detector.name}",
                       {"model": str(model_dir), "data": str(data)}, None, plot, report)
    _write_all(files)
    typer.echo(f"{len(frame)} readings scored, {int(frame.label.sum())} flagged; wrote {', '.join(map(str, files))}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Argument(..., help="Labelled series: value columns plus a 0/1 label column (or --windows)."),
    json_path: Path = typer.Option(None, "--json", help="Where to write the metrics (they are printed either way)."),
    plot: Path = PLOT, report: Path = REPORT,
    label_column: str = typer.Option("label", "--label-column", help="The 0/1 anomaly label column."),
    windows_path: str = typer.Option(None, "--windows", help="Labelled windows instead of a label column: a JSON file "
                                     "of [[start, end], ...] (timestamps, or row numbers from 0, ends included), NAB's "
                                     "combined_windows.json, or row ranges inline: 100:120,300:310."),
    time_column: str = TIME, duplicates: str = DUPLICATES,
):
    """AUC-PR, VUS-PR, PATE and event-wise F1 of causal scores against labelled windows."""
    import numpy as np

    from normalcy.cli.common import echo_metrics
    from normalcy.core.errors import DataError
    from normalcy.timeseries import metrics as ts_metrics
    from normalcy.timeseries.data import is_label_column, load_series
    from normalcy.timeseries.plot import ScoredSeries

    detector = _load(model_dir)
    inputs = [c for c in detector.columns_ if is_label_column(c) or c == label_column]
    if inputs:
        raise DataError(f"{model_dir} takes the label column(s) {', '.join(map(repr, inputs))} as input; labels must "
                        "never be model inputs: fit it again without them")
    series = _read(data, time_column, ",".join(detector.columns_), duplicates)
    if windows_path is not None:
        windows = _windows(windows_path, data, series)
        labels = np.zeros(len(series), dtype=np.int8)
        for a, b in windows:
            labels[a : b + 1] = 1
    else:
        labels = load_series(data, time_column, [label_column], duplicates, missing="error").values[:, 0]
        if not np.isin(labels, (0, 1)).all():
            raise DataError(f"{data}: label column {label_column!r} must hold only 0 and 1")
        labels = labels.astype(np.int8)
        windows = [(a, b - 1) for a, b in ts_metrics.ranges(labels)]
    explanation = detector.explain(series)
    scores = explanation.scores
    threshold = detector._require_threshold()
    metrics = {**_labelled_metrics(labels, scores, threshold), "n_windows": len(windows), "n_readings": len(scores)}
    _write_all(_pictures(ScoredSeries(series, scores, explanation.contributions, threshold, windows),
                         f"{data.name}: {detector.name}", {"model": str(model_dir), "data": str(data)},
                         metrics, plot, report))
    echo_metrics({"model": str(model_dir), "detector": detector.name, "data": str(data), **metrics}, json_path)


def _labelled_metrics(labels, scores, threshold) -> dict:
    """The threshold-free metrics and event-wise F1 at the threshold; None where the labels
    have no anomaly (or nothing else), which leaves them undefined."""
    from normalcy.timeseries import metrics as m

    if labels.min() == labels.max():
        return {"vus_pr": None, "pate": None, "auc_pr": None, "event_f1_at_threshold": None}
    return {"vus_pr": m.vus_pr(labels, scores), "pate": m.pate(labels, scores), "auc_pr": m.auc_pr(labels, scores),
            "event_f1_at_threshold": m.event_f1(labels, (scores >= threshold).astype("int8"))}


@app.command()
def stream(model_dir: Path = typer.Argument(..., help="Model folder.")):
    """Read readings from stdin (numbers separated by commas, or a JSON object per line, which
    may carry a "timestamp") and write one JSON line per reading: its line number, score, alert
    and each variable's raw score. A reading that cannot be used (not numbers, the wrong count,
    infinite or beyond 1e30) gets {"line": N, "error": ...} instead, is not learned, and the
    stream goes on; the command then ends with status 2."""
    from normalcy.core.errors import DataError
    from normalcy.core.threads import thread_limit

    detector = _load(model_dir)
    detector.check_streams()
    threshold = detector._require_threshold()
    refused, seen = [], 0
    # One thread limit for the whole stream: each reading's own block then costs nothing.
    with thread_limit(getattr(detector, "threads", None)):
        for number, line in enumerate(sys.stdin, 1):
            line = line.strip()
            if not line:
                continue
            seen += 1
            try:
                reading, t = _reading(line)
                explanation = detector.explain_one(reading, t)
                detector.learn_one(reading, t)
                score = float(explanation.scores[0])
                # allow_nan=False: a NaN or infinity here is a bug, reported per line, never printed
                text = json.dumps({"line": number, "score": score, "alert": score >= threshold,
                                   "variables": dict(zip(explanation.parts, explanation.contributions[0].tolist()))},
                                  allow_nan=False)
            except ValueError as exc:  # a DataError, or json.dumps meeting a NaN
                refused.append(number)
                text = json.dumps({"line": number, "error": f"stdin line {number}: {exc}"})
            print(text, flush=True)
    if refused:
        lines = ", ".join(map(str, refused[:10])) + (", ..." if len(refused) > 10 else "")
        raise DataError(f"{len(refused)} of {seen} readings refused (stdin line {lines}); "
                        "their error lines say why")


def _reading(line: str):
    """A stdin line as a reading and its time (None when it has none)."""
    from normalcy.core.errors import DataError
    from normalcy.timeseries.data import TIME_NAMES

    if not line.startswith("{"):
        try:
            return [float(v) for v in line.split(",")], None
        except ValueError:
            raise DataError(f"not numbers or a JSON object: {line[:80]!r}") from None
    try:
        reading = json.loads(line)
    except RecursionError:
        raise DataError("the JSON object nests too deeply") from None
    except ValueError as exc:
        raise DataError(f"not a JSON object ({exc}): {line[:80]!r}") from None
    if not isinstance(reading, dict):
        raise DataError(f"not numbers or a JSON object: {line[:80]!r}")
    times = [k for k in reading if k.lower() in TIME_NAMES]
    return reading, reading[times[0]] if times else None


@app.command()
def benchmark(
    data: Path = typer.Option(None, "--data", help="A folder holding corpora: NAB (data/, labels/combined_windows.json) "
                              "and telemanom-style ones such as NASA MSL (labeled_anomalies.csv, train/, test/), "
                              "found up to two levels down."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    detectors_option: str = typer.Option(None, "--detectors", "--models", help="Comma-separated detectors and baselines "
                                         "(zscore, constant, random, ab-join); 'default' names the default; "
                                         "NAME:PARAM=VALUE:... a detector with parameters changed (default: every "
                                         "registered detector and every baseline)."),
    peer: list[str] = typer.Option(None, "--peer", help="LIBRARY=PYTHON: run a peer library's algorithms with the "
                                   "Python of its own environment, e.g. tsb-ad=/tmp/peers/tsbad/bin/python; "
                                   "LIBRARY=cached reads its cached scores without running it."),
    cache: Path = typer.Option(None, "--cache", help="Where per-series scores are cached (default "
                               "/tmp/normalcy-ts-benchmark); a rerun computes only what changed."),
    scaling: int = typer.Option(None, "--scaling", help="Instead of the corpora: seconds to learn N readings and "
                                "score N more, with 1, 5, 25 and 50 variables (--data is then not read)."),
    variables: str = typer.Option("1,5,25,50", "--variables", help="With --scaling: the numbers of variables, "
                                  "comma-separated."),
):
    """Every detector, the baselines and peers on every corpus: VUS-PR, AUC-PR, PATE, event-wise
    F1 at the detector's own threshold, top-1 hit rate, NAB scores on NAB, speed; and the default
    chosen by the worst corpus."""
    from normalcy.core.errors import DataError
    from normalcy.core.registry import detector_class, detectors, parse_params
    from normalcy.timeseries import DEFAULT
    from normalcy.timeseries.baselines import BASELINES
    from normalcy.timeseries.benchmark import CACHE, run
    from normalcy.timeseries.benchmark import scaling as cost_by_variables

    if data is None and scaling is None:
        raise DataError("give --data FOLDER (the corpora) or --scaling N")
    known = [*detectors("timeseries"), *BASELINES]
    names = known if detectors_option is None else [
        DEFAULT if m.strip() == "default" else m.strip() for m in detectors_option.split(",") if m.strip()]
    unknown = [m for m in names if m.split(":")[0] not in known or (":" in m and m.split(":")[0] in BASELINES)]
    if unknown or not names:
        raise DataError(f"unknown detector(s) {', '.join(unknown) or '(none)'}; expected some of {', '.join(known)}")
    for m in names:  # a variant's parameters are checked before anything runs
        if ":" in m:
            parse_params(m.split(":")[1:], detector_class("timeseries", m.split(":")[0]))
    peers = {}
    for spec in peer or []:
        library, sep, python = spec.partition("=")
        if not sep or not library or not python:
            raise DataError(f"--peer {spec!r} not understood; expected LIBRARY=PYTHON")
        peers[library.strip()] = python.strip()
    if scaling is not None:
        if scaling < 100:
            raise DataError(f"--scaling needs at least 100 readings, got {scaling}")
        try:
            counts = [int(v) for v in variables.split(",")]
        except ValueError:
            counts = []
        if not counts or min(counts) < 1 or max(counts) > 1000:
            raise DataError(f"--variables must be comma-separated integers in [1, 1000], got {variables!r}")
        chosen = [n for n in names if n not in BASELINES] if detectors_option is not None else [DEFAULT]
        json_out, md_out, _ = cost_by_variables(chosen, json_path, scaling, counts)
    else:
        json_out, md_out, _ = run(data, list(dict.fromkeys(names)), json_path, cache or CACHE, peers)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


def _read(data: Path, time_column, columns, duplicates):
    from normalcy.timeseries.data import load_series

    return load_series(data, time_column, [c.strip() for c in columns.split(",")] if columns else None, duplicates)


def _load(model_dir: Path):
    from normalcy.timeseries.base import TimeSeriesDetector

    return TimeSeriesDetector.load(model_dir)


def _pictures(scored, title: str, facts: dict, metrics: dict | None, plot: Path | None, report: Path | None) -> dict:
    """The PNG and HTML contents asked for, drawn once; written only after everything is ready."""
    if not (plot or report):
        return {}
    from normalcy.timeseries.plot import plot_png
    from normalcy.timeseries.report import report_html

    png = plot_png(scored, title)
    return {**({plot: png} if plot else {}), **({report: report_html(scored, title, png, facts, metrics)} if report else {})}


def _write_all(files: dict) -> None:
    from normalcy.core.benchmark import write_atomic

    for path, content in files.items():
        write_atomic(path, content)


def _windows(spec: str, data: Path, series) -> list[tuple[int, int]]:
    """Inclusive reading indices of the labelled windows: row ranges inline ("100:120,300:310"),
    or a JSON file holding a list of [start, end] pairs (row numbers or timestamps), or NAB's
    {"dir/file.csv": [[start, end], ...]} looked up by the data's path (or, failing that, by its
    file name alone)."""
    import re

    import numpy as np
    import pandas as pd

    from normalcy.core.errors import DataError

    path = Path(spec)
    if not path.is_file() and re.fullmatch(r"\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*", spec):
        return _row_windows([[int(v) for v in part.split(":")] for part in spec.split(",")], spec, series)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read windows from {path}: {exc}") from exc
    if isinstance(doc, dict):
        keys = [k for k in doc if data.as_posix().endswith(k)] or [k for k in doc if Path(k).name == data.name]
        if not keys:
            raise DataError(f"{path}: no entry for {data}; its keys are paths such as {next(iter(doc), '(none)')!r}")
        if len(keys) > 1:
            raise DataError(f"{path}: more than one entry for {data}: {', '.join(keys)}")
        doc = doc[keys[0]]
    if not isinstance(doc, list) or not all(isinstance(w, list) and len(w) == 2 for w in doc):
        raise DataError(f"{path}: windows must be a list of [start, end] pairs")
    if doc and all(isinstance(v, int) and not isinstance(v, bool) for w in doc for v in w):
        return _row_windows(doc, str(path), series)
    if series.timestamps is None:
        raise DataError(f"{data} has no time column, so the timestamps of the windows in {path} cannot be placed; "
                        "give the windows as row numbers instead")
    windows = []
    for start, end in doc:
        try:
            bounds = [pd.Timestamp(v) for v in (start, end)]
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}: window [{start!r}, {end!r}] is not two timestamps or two row numbers") from exc
        bounds = [np.datetime64(t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t, "ns") for t in bounds]
        a = int(np.searchsorted(series.timestamps, bounds[0], side="left"))
        b = int(np.searchsorted(series.timestamps, bounds[1], side="right")) - 1
        if a <= b:  # windows outside the series, or between two readings, hold no reading
            windows.append((a, b))
    return windows


def _row_windows(pairs, source: str, series) -> list[tuple[int, int]]:
    """Windows given as row numbers (0 = the first reading, ends included), checked."""
    from normalcy.core.errors import DataError

    for a, b in pairs:
        if not 0 <= a <= b < len(series):
            raise DataError(f"{source}: window {a}:{b} is not a range of rows within the {len(series)} readings "
                            f"(0 to {len(series) - 1}, start <= end)")
    return [(int(a), int(b)) for a, b in pairs]
