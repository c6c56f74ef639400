"""`normalcy events fit | score | evaluate | benchmark | models`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="Categorical events: a score per event of entities (user, host, process, port ...).",
                  no_args_is_help=True)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal events, one per row: a .csv, .tsv or .parquet file."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("events", "ape")),
    param: list[str] = PARAM,
    columns: str = typer.Option("", "--columns", help="Comma-separated entity columns (default: all)."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out events) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of events held out to set the threshold."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Treat an empty cell as the entity <missing> instead of an error."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of the detector (where it has one)."),
):
    """Learn which entities go together in normal events."""
    
    from normalcy.cli.common import echo_fit, echo_warnings
    from normalcy.core.threshold import parse_threshold
    from normalcy.events import DEFAULT
    from normalcy.events.workflow import fit_model

    name = model or DEFAULT
    detector = _build(name, param, {"columns": _names(columns) or None, "allow_missing": allow_missing, "seed": seed})
    strategy = parse_threshold(threshold)
    with echo_warnings():
        fit_model(data, detector, strategy, holdout, seed)
    detector.save(out)
    n_events = int(detector.encoder_.counts_[0].sum())
    echo_fit(detector, name, out, "events", f" on {n_events} events of {', '.join(detector.columns_)}")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy events fit`."),
    data: Path = typer.Option(..., "--data", help="Events to score: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Output file (.csv, .tsv or .parquet): the input columns, score, label, least_compatible."),
):
    """Score events: an anomaly score, a 0/1 label and the pair of entities that fits least well."""
    from normalcy.events.workflow import score_to_file

    result = score_to_file(_load(model_dir), data, out)
    typer.echo(f"{len(result)} events scored, {int(result['label'].sum())} flagged anomalous; results in {out}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Option(..., "--data", help="Labelled events: the entity columns plus a 0/1 label column."),
    label_column: str = typer.Option("label", "--label-column", help="The 0/1 anomaly label column."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
):
    """AUROC, AUPRC and best F1 against labels, and precision, recall, F1 at the model's threshold."""
    from normalcy.cli.common import echo_metrics
    from normalcy.events.workflow import evaluate as run_evaluation

    echo_metrics(run_evaluation(_load(model_dir), data, label_column), json_path)


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="loghub folder (<System>/*_structured.csv)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one, "
                                                    "frequency-pairs and table-onehot)."),
    systems: str = typer.Option("", "--systems", help="Comma-separated log systems (default: all with entity fields)."),
    seeds: int = typer.Option(5, "--seeds", help="Train/test splits and injections per system."),
    rate: float = typer.Option(0.05, "--rate", help="Share of injected anomalies in each test set."),
):
    """The event detectors against the table default on injected never-seen combinations."""
    from normalcy.events.benchmark import MEAN, run

    json_out, md_out, records = run(data, json_path, _names(models) or None, _names(systems) or None, seeds, rate)
    for record in records:
        if record["dataset"] == MEAN:
            typer.echo(f"{record['detector']:16s} mean AUROC {record['auroc']:.4f}  mean AUPRC {record['auprc']:.4f}")
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def models():
    """List the event detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("events")


def _build(name: str, params: list[str] | None, options: dict):
    """The detector `name` with the command's options it accepts (a detector without a seed
    takes none) and the --param values, which win."""
    from normalcy.cli.common import build_detector
    from normalcy.core.registry import detector_class, parameter_names

    accepted = parameter_names(detector_class("events", name))
    return build_detector("events", name, params, {k: v for k, v in options.items() if k in accepted})


def _load(model_dir: Path):
    from normalcy.events.base import EventDetector

    return EventDetector.load(model_dir)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
