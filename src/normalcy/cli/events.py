"""`normalcy events fit | score | evaluate | benchmark`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Categorical events: a score per event of entities (user, host, process, port ...).",
                  no_args_is_help=True)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal events, one per row: a .csv, .tsv or .parquet file."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option("ape", "--model", help="Detector: ape, frequency or frequency-pairs."),
    columns: str = typer.Option("", "--columns", help="Comma-separated entity columns (default: all)."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out events) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of events held out to set the threshold."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Treat an empty cell as the entity <missing> instead of an error."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of APE's training."),
):
    """Learn which entities go together in normal events."""
    from normalcy.core.threshold import parse_threshold
    from normalcy.events.workflow import fit_model

    detector = fit_model(data, model, parse_threshold(threshold), holdout, _names(columns) or None,
                         allow_missing, seed)
    detector.save(out)
    typer.echo(f"saved {model} on {', '.join(detector.columns_)} to {out} (threshold {detector.threshold_:.4f})")


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
    json_path: Path = typer.Option(..., "--json", help="Where to write the metrics."),
):
    """AUROC, AUPRC and best F1 against labels, and the confusion counts at the model's threshold."""
    from normalcy.core.benchmark import write_atomic
    from normalcy.events.workflow import evaluate as run_evaluation

    result = run_evaluation(_load(model_dir), data, label_column)
    write_atomic(json_path, json.dumps(result, indent=2) + "\n")
    typer.echo(f"AUROC {result['auroc']:.4f}  AUPRC {result['auprc']:.4f}  best F1 {result['f1_max']:.4f}; "
               f"written to {json_path}")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="loghub folder (<System>/*_structured.csv)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("ape,frequency,frequency-pairs,table-onehot", "--models", help="Comma-separated detectors."),
    systems: str = typer.Option("", "--systems", help="Comma-separated log systems (default: all with entity fields)."),
    seeds: int = typer.Option(5, "--seeds", help="Train/test splits and injections per system."),
    rate: float = typer.Option(0.05, "--rate", help="Share of injected anomalies in each test set."),
):
    """APE against frequency baselines and the table default on injected never-seen combinations."""
    from normalcy.events.benchmark import MEAN, run

    json_out, md_out, records = run(data, json_path, _names(models), _names(systems) or None, seeds, rate)
    for record in records:
        if record["dataset"] == MEAN:
            typer.echo(f"{record['detector']:16s} mean AUROC {record['auroc']:.4f}  mean AUPRC {record['auprc']:.4f}")
    typer.echo(f"wrote {json_out} and {md_out}")


def _load(model_dir: Path):
    from normalcy.events.base import EventDetector

    return EventDetector.load(model_dir)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
