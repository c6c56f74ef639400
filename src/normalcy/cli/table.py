"""`normalcy table fit | score | benchmark`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Tables: a score per row for numeric and categorical columns.", no_args_is_help=True)

MODELS = "ensemble, iforest, knn, lof, ecod, copod, hbos, pca"


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal rows: a .csv, .tsv or .parquet file."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option("ensemble", "--model", help=f"Detector: {MODELS}."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out rows) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of rows held out to set the threshold."),
    drop: str = typer.Option("", "--drop", help="Comma-separated columns to leave out (ids, labels)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
):
    """Learn what normal rows look like."""
    from normalcy.core.threshold import parse_threshold
    from normalcy.tabular.workflow import fit_model

    detector = fit_model(data, model, parse_threshold(threshold), holdout, _names(drop), seed)
    detector.save(out)
    typer.echo(f"saved {model} on {len(detector.columns)} columns to {out} (threshold {detector.threshold_:.4f})")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy table fit`."),
    data: Path = typer.Option(..., "--data", help="Rows to score: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Output file (.csv, .tsv or .parquet): the input columns, score, label."),
    explain: bool = typer.Option(False, "--explain", help="Add top_column: the column that added most to each row's score."),
):
    """Score rows: each gets an anomaly score and a 0/1 label at the model's threshold."""
    from normalcy.core.errors import ModelFileError
    from normalcy.core.modelfile import load
    from normalcy.tabular.base import TabularDetector
    from normalcy.tabular.workflow import score_to_file

    detector = load(model_dir)
    if not isinstance(detector, TabularDetector):
        raise ModelFileError(f"{model_dir} holds a {type(detector).__name__}, not a table detector")
    result = score_to_file(detector, data, out, explain)
    typer.echo(f"{len(result)} rows scored, {int(result['label'].sum())} flagged anomalous; results in {out}")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="A folder of .npz datasets (arrays X and y), or one .npz file."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("ensemble,iforest,knn,lof,ecod,copod,hbos,pca", "--models", help="Comma-separated detectors."),
    max_rows: int = typer.Option(10000, "--max-rows", help="Subsample larger datasets to this many rows (0: never)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling."),
):
    """Every detector on every dataset, fitted and scored on all rows: AUROC, AUPRC, seconds."""
    from normalcy.core.errors import DataError
    from normalcy.tabular import DETECTORS
    from normalcy.tabular.benchmark import run

    names = _names(models)
    unknown = [m for m in names if m not in DETECTORS]
    if unknown or not names:
        raise DataError(f"unknown model(s) {', '.join(unknown) or '(none)'}; expected some of {MODELS}")
    json_out, md_out, records = run(data, names, json_path, max_rows or None, seed)
    for name in names:
        mine = [r for r in records if r["detector"] == name]
        typer.echo(f"{name:9s} mean AUROC {sum(r['auroc'] for r in mine) / len(mine):.4f}  "
                   f"mean AUPRC {sum(r['auprc'] for r in mine) / len(mine):.4f}  over {len(mine)} datasets")
    typer.echo(f"wrote {json_out} and {md_out}")


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
