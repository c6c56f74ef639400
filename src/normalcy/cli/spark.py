"""`normalcy spark score | fit-per-group | score-per-group | bench`: Parquet in, Parquet out."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM

app = typer.Typer(help="Apache Spark: score DataFrames and fit one time-series model per key (needs the spark extra).",
                  no_args_is_help=True)

MASTER = typer.Option(None, "--master", help="Spark master, e.g. local[2] (default: spark-submit's, else local[*]).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Spark's console progress bar (stages, tasks).")


@app.command()
def score(
    model: Path = typer.Option(..., "--model", help="Model folder (table, events, image or text detector)."),
    input: str = typer.Option(..., "--input", help="Parquet file or folder to score."),
    output: Path = typer.Option(..., "--output", help="Parquet folder to write: the input columns, score, label."),
    column: str = typer.Option(None, "--column", help="Image or text column (default image/path, or text)."),
    master: str = MASTER, progress: bool = PROGRESS,
    shared: bool = typer.Option(False, "--shared", help="The model folder is on storage every executor reads "
                                "(NFS); read it there instead of shipping it with the job."),
):
    """Score every row with a fitted model, on Spark."""
    from normalcy import spark as ns
    from normalcy.core.modelfile import read_manifest

    read_manifest(model)  # a missing model folder fails before Spark starts
    spark = ns.session(master, "normalcy spark score", progress)
    scored = ns.score(ns.read_parquet(spark, input), model, column, ship=not shared)
    ns.write_parquet(scored, output)
    rows, flagged = _counts(spark.read.parquet(str(output)))
    typer.echo(f"{rows} rows scored, {flagged} flagged anomalous; results in {output}")


@app.command("fit-per-group")
def fit_per_group(
    input: str = typer.Option(..., "--input", help="Parquet file or folder: key, time and value columns."),
    output: Path = typer.Option(..., "--output", help="Folder for one model per key and index.parquet."),
    key: str = typer.Option(..., "--key", help="Column naming the series."),
    time_column: str = typer.Option(..., "--time", help="Column ordering each series (timestamps or numbers)."),
    values: str = typer.Option(..., "--values", help="Comma-separated value columns."),
    detector: str = typer.Option("range-novelty", "--model", "--detector",
                                 help="Time-series detector; `normalcy ts models` lists every one with its parameters."),
    param: list[str] = PARAM,
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on the last --holdout) or fixed:VALUE."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction at the end of each series that sets its threshold."),
    master: str = MASTER, progress: bool = PROGRESS,
):
    """Fit one time-series model per key; a failing key gets a failure record, the others go on."""
    from normalcy import spark as ns
    from normalcy.core.registry import detector_class, parse_params

    params = parse_params(param, detector_class("timeseries", detector))  # fails before Spark starts
    spark = ns.session(master, "normalcy spark fit-per-group", progress)
    index = ns.fit_per_group(ns.read_parquet(spark, input), key, time_column, _names(values), output,
                             detector, params, threshold=threshold, holdout=holdout)
    failed = index[index.status != "ok"]
    warned = index[(index.status == "ok") & index.warning.notna()]
    typer.echo(f"{len(index) - len(failed)} of {len(index)} series fitted with {detector}; index in {output}/index.parquet"
               + (f"; {len(failed)} failed, first: {failed[key].iloc[0]!r}: {failed.error.iloc[0]}" if len(failed) else ""))
    if len(warned):
        typer.echo(f"warning: {len(warned)} series fitted with a warning (index.parquet's warning column), first: "
                   f"{warned[key].iloc[0]!r}: {warned.warning.iloc[0]}", err=True)


@app.command("score-per-group")
def score_per_group(
    input: str = typer.Option(..., "--input", help="Parquet file or folder: key, time and value columns."),
    models: Path = typer.Option(..., "--models", help="Folder written by fit-per-group."),
    output: Path = typer.Option(..., "--output", help="Parquet folder: key, time, values, score, label, status, error."),
    key: str = typer.Option(..., "--key", help="Column naming the series."),
    time_column: str = typer.Option(..., "--time", help="Column ordering each series."),
    master: str = MASTER, progress: bool = PROGRESS,
):
    """Score each key's readings with its own model; a key without one gets a failure record."""
    from normalcy import spark as ns

    spark = ns.session(master, "normalcy spark score-per-group", progress)
    ns.write_parquet(ns.score_per_group(ns.read_parquet(spark, input), key, time_column, models), output)
    result = spark.read.parquet(str(output))
    rows, flagged = _counts(result)
    failed = result.filter("status != 'ok'").select(key).distinct().count()
    typer.echo(f"{rows} rows written, {flagged} flagged; {failed} series without scores (see status, error); "
               f"results in {output}")


@app.command()
def bench(
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown report is written beside it (.md)."),
    rows: int = typer.Option(10_000_000, "--rows", help="Tabular rows to score."),
    series: int = typer.Option(10_000, "--series", help="Series for fit-per-group at local[2] (0: only the table job)."),
    points: int = typer.Option(2_000, "--points", help="Readings per series."),
    scaling_series: int = typer.Option(1_000, "--scaling-series",
                                       help="Series for the single-process / local[1] / local[2] comparison of fit-per-group."),
    work: Path = typer.Option(None, "--work", help="Folder for the generated data and models (default: a temporary one)."),
    batch_rows: int = typer.Option(100_000, "--batch-rows", help="Arrow batch size (spark.sql.execution.arrow.maxRecordsPerBatch)."),
    table_detector: str = typer.Option("ecod", "--table-detector", help="Table detector of the scoring job."),
):
    """10M table rows and 10,000 series: single process vs local[1] vs local[2]; rows/s, series/s, scaling."""
    from normalcy.spark.bench import run

    def show(r):
        typer.echo(f"{r['job']:15s} {r['runner']:15s} {r['items']:>10} {r['unit']:6s} {r['seconds']:8.1f} s  "
                   f"{r['per_second']:>12,.0f} {r['unit']}/s  errors {r['errors']}")

    json_out, md_out, _ = run(json_path, rows, series, points, scaling_series, work, batch_rows, show, table_detector)
    typer.echo(f"wrote {json_out} and {md_out}")


def _counts(result) -> tuple[int, int]:
    """Rows and flagged rows of a written result."""
    from pyspark.sql import functions as F

    rows, flagged = result.agg(F.count("*"), F.sum("label")).first()
    return rows, flagged or 0


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
