"""`normalcy table fit | score | evaluate | models | benchmark`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, echo_warnings, model_help

app = typer.Typer(help="Tables: a score per row for numeric and categorical columns.", no_args_is_help=True)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal rows: a .csv, .tsv or .parquet file."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("tabular", "ensemble, or nearest with --clean")),
    param: list[str] = PARAM,
    clean: bool = typer.Option(False, "--clean", help="Every row is known to be normal: the default becomes nearest."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out rows) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of rows held out to set the threshold."),
    drop: str = typer.Option("", "--drop", help="Comma-separated columns to leave out (ids, labels, dates)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
    strict: bool = typer.Option(False, "--strict", help="Refuse a column of numbers with text cells, instead of "
                                                        "reading it as categories with a warning."),
):
    """Learn what normal rows look like."""
    from normalcy.cli.common import build_detector, echo_fit
    from normalcy.core.threshold import parse_threshold
    from normalcy.tabular import DEFAULT, DEFAULT_CLEAN
    from normalcy.tabular.workflow import fit_model

    model = model or (DEFAULT_CLEAN if clean else DEFAULT)
    detector = build_detector("tabular", model, param)
    with echo_warnings():
        fit_model(data, detector, parse_threshold(threshold), holdout, _names(drop), seed, strict)
    detector.save(out)
    echo_fit(detector, model, out, "rows", f" on {len(detector.columns)} columns")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy table fit`."),
    data: Path = typer.Option(..., "--data", help="Rows to score: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Output file (.csv, .tsv or .parquet): the input columns, score, label."),
    explain: bool = typer.Option(False, "--explain", help="Add top_column: the column that added most to each row's score."),
):
    """Score rows: each gets an anomaly score and a 0/1 label at the model's threshold."""
    from normalcy.tabular.workflow import score_to_file

    result = score_to_file(_load_table_model(model_dir), data, out, explain)
    typer.echo(f"{len(result)} rows scored, {int(result['label'].sum())} flagged anomalous; results in {out}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy table fit`."),
    data: Path = typer.Option(..., "--data", help="Labelled rows: .csv, .tsv or .parquet."),
    label_column: str = typer.Option(..., "--label-column", help="Column holding 1 (anomaly) or 0 (normal)."),
    json_path: Path = typer.Option(None, "--json", help="Write the metrics to this JSON file."),
):
    """Metrics on labelled rows: AUROC, AUPRC, best F1, and precision/recall at the model's threshold."""
    from normalcy.cli.common import echo_metrics
    from normalcy.tabular.workflow import evaluate as evaluate_rows

    result = evaluate_rows(_load_table_model(model_dir), data, label_column)
    echo_metrics({"model": str(model_dir), "data": str(data), **result}, json_path)


@app.command()
def models():
    """Every table detector: its name for --model, its parameters for --param, what it does."""
    from normalcy.cli.common import list_models

    list_models("tabular")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="A folder of .npz datasets (arrays X and y), or one .npz file."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown report is written beside it (.md)."),
    models: str = typer.Option(None, "--models", help="Comma-separated detectors (default: every one)."),
    protocol: str = typer.Option("both", "--protocol", help="unsupervised, semi-supervised or both."),
    libraries: str = typer.Option("normalcy,pyod", "--libraries",
                                  help="normalcy, pyod or both (PyOD's detectors of the same names, side by side)."),
    max_rows: int = typer.Option(10000, "--max-rows", help="Subsample larger datasets to this many rows (0: never)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subsampling and of the semi-supervised split."),
    threads: int = typer.Option(1, "--threads", help="BLAS/OpenMP threads (1 is fastest on small tables; 0: leave as is)."),
):
    """Every detector on every dataset: AUROC, AUPRC, fit and score seconds, ours beside PyOD's."""
    from normalcy.core.errors import DataError
    from normalcy.core.registry import detector_class, detectors
    from normalcy.core.threads import thread_limit
    from normalcy.tabular.benchmark import PROTOCOLS, run, summary

    names = list(detectors("tabular")) if models is None else _names(models)
    for name in names:
        detector_class("tabular", name)  # unknown names fail before any work
    if not names:
        raise DataError("--models names no detector")
    protocols = tuple(PROTOCOLS) if protocol == "both" else (protocol,)
    if protocols[0] not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; expected unsupervised, semi-supervised or both")
    if threads < 0:
        raise DataError(f"--threads must be 0 (leave as is) or a positive number, got {threads}")
    import faiss  # noqa: F401  (loaded first, so that thread_limit caps its OpenMP threads too)

    with thread_limit(threads or None):
        json_out, md_out, records = run(data, names, json_path, max_rows or None, seed, protocols,
                                        tuple(_names(libraries)))
    for (proto, library, name), row in summary(records).items():
        typer.echo(f"{proto:15s} {library:8s} {name:9s} mean AUROC {_num(row['auroc'])}  mean AUPRC "
                   f"{_num(row['auprc'])}  fit+score {row['fit_seconds'] + row['score_seconds']:.1f} s  over "
                   f"{row['n_datasets']} datasets" + (f", failed on {', '.join(row['failed'])}" if row["failed"] else ""))
    typer.echo(f"wrote {json_out} and {md_out}")


def _load_table_model(model_dir: Path):
    from normalcy.tabular.base import TabularDetector

    return TabularDetector.load(model_dir)


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
