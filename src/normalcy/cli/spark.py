"""`normalcy spark score | fit-per-group | score-per-group | stream | bench | bench-stream |
bench-sequence | bench-graph`: Parquet (or CSV, or log files) in, Parquet out."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM
from normalcy.core.errors import DataError

app = typer.Typer(help="Apache Spark: score DataFrames of every modality, fit one model per key, stream readings "
                       "through one detector per key (needs the spark extra).",
                  no_args_is_help=True)

MASTER = typer.Option(None, "--master", help="Spark master, e.g. local[2] (default: spark-submit's, else local[*]).")
PROGRESS = typer.Option(True, "--progress/--no-progress", help="Spark's console progress bar (stages, tasks).")


@app.command()
def score(
    model: Path = typer.Option(..., "--model", help="Model folder (table, events, image, text, logs or time series)."),
    input: str = typer.Option(..., "--input", help="Parquet file or folder to score; for a log model also a log "
                              "file or folder of them (one line per row)."),
    output: Path = typer.Option(..., "--output", help="Parquet folder to write: the input columns, score, label "
                                "(a log model: group, lines, first_line, score, label)."),
    column: str = typer.Option(None, "--column", help="Image, text or log-line column (default image/path, text, "
                               "line/value)."),
    key: str = typer.Option(None, "--key", help="Time series: the column naming each series (default: one series)."),
    time_column: str = typer.Option(None, "--time", help="Time series: the column ordering the readings."),
    master: str = MASTER, progress: bool = PROGRESS,
    shared: bool = typer.Option(False, "--shared", help="The model folder is on storage every executor reads "
                                "(NFS); read it there instead of shipping it with the job."),
):
    """Score every row (or every log session or window, every series) with a fitted model, on Spark."""
    from normalcy import spark as ns
    from normalcy.core.modelfile import read_manifest
    from normalcy.core.registry import resolve

    manifest = read_manifest(model)  # a missing model folder fails before Spark starts
    cls = resolve(manifest["class"])
    logs = cls is not None and cls.modality == "logs"
    spark = ns.session(master, "normalcy spark score", progress)
    if logs and not _is_parquet(input):
        if not Path(input).exists():
            raise DataError(f"input {input} does not exist")
        frame = spark.read.text(str(input))
    else:
        frame = ns.read_parquet(spark, input)
    scored = ns.score(frame, model, column, ship=not shared, key=key, time=time_column)
    ns.write_parquet(scored, output)
    rows, flagged = _counts(spark.read.parquet(str(output)))
    unit = "groups" if logs else "rows"
    typer.echo(f"{rows} {unit} scored, {flagged} flagged anomalous; results in {output}")


def _is_parquet(path: str) -> bool:
    p = Path(path)
    return p.suffix.lower() in (".parquet", ".pq") or (p.is_dir() and any(p.glob("*.parquet")))


@app.command("fit-per-group")
def fit_per_group(
    input: str = typer.Option(..., "--input", help="Parquet file or folder: key, time and value columns."),
    output: Path = typer.Option(..., "--output", help="Folder for one model per key and index.parquet."),
    key: str = typer.Option(..., "--key", help="Column naming the group (series, shop, host ...)."),
    time_column: str = typer.Option(None, "--time", help="Column ordering each group's rows (timestamps or numbers; "
                                    "required for time series and event streams)."),
    values: str = typer.Option(..., "--values", help="Comma-separated value columns (readings, features, entities "
                               "or event fields)."),
    modality: str = typer.Option("timeseries", "--modality", help="timeseries, tabular, events or logs (an event "
                                 "stream per key, modelled as sessions of events)."),
    detector: str = typer.Option(None, "--model", "--detector",
                                 help="Detector of the modality (default: range-novelty, ensemble, ape, entity-sequence); "
                                      "`normalcy <modality> models` lists them with their parameters."),
    param: list[str] = PARAM,
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on the --holdout), fixed:VALUE, or, for "
                                  "logs, own (the detector's rule)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Fraction that sets each model's threshold (time series: the "
                                  "end of each series; else a random share)."),
    sessions: str = typer.Option(None, "--sessions", help="logs: column naming each key's sessions (default: chunks "
                                 "of --chunk events)."),
    chunk: int = typer.Option(20, "--chunk", help="logs: events per session without --sessions."),
    master: str = MASTER, progress: bool = PROGRESS,
):
    """Fit one model per key; a failing key gets a failure record, the others go on."""
    from normalcy import spark as ns
    from normalcy.core.registry import detector_class, parse_params
    from normalcy.spark.groups import DEFAULTS

    if modality not in DEFAULTS:
        raise DataError(f"--modality must be one of {', '.join(DEFAULTS)}, got {modality!r}")
    detector = detector or DEFAULTS[modality]
    params = parse_params(param, detector_class(modality, detector))  # fails before Spark starts
    spark = ns.session(master, "normalcy spark fit-per-group", progress)
    index = ns.fit_per_group(ns.read_parquet(spark, input), key, time_column, _names(values), output,
                             detector, params, threshold=threshold, holdout=holdout, modality=modality,
                             sessions=sessions, chunk=chunk)
    failed = index[index.status != "ok"]
    warned = index[(index.status == "ok") & index.warning.notna()]
    unit = "series" if modality == "timeseries" else "groups"
    typer.echo(f"{len(index) - len(failed)} of {len(index)} {unit} fitted with {detector}; index in "
               f"{output}/index.parquet"
               + (f"; {len(failed)} failed, first: {failed[key].iloc[0]!r}: {failed.error.iloc[0]}" if len(failed) else ""))
    if len(warned):
        typer.echo(f"warning: {len(warned)} {unit} fitted with a warning (index.parquet's warning column), first: "
                   f"{warned[key].iloc[0]!r}: {warned.warning.iloc[0]}", err=True)


@app.command("score-per-group")
def score_per_group(
    input: str = typer.Option(..., "--input", help="Parquet file or folder: key, time and value columns."),
    models: Path = typer.Option(..., "--models", help="Folder written by fit-per-group."),
    output: Path = typer.Option(..., "--output", help="Parquet folder: key, time, values, score, label, status, error."),
    key: str = typer.Option(..., "--key", help="Column naming the group."),
    time_column: str = typer.Option(None, "--time", help="Column ordering each group's rows (required for time series)."),
    master: str = MASTER, progress: bool = PROGRESS,
):
    """Score each key's data with its own model; a key without one gets a failure record."""
    from normalcy import spark as ns

    spark = ns.session(master, "normalcy spark score-per-group", progress)
    ns.write_parquet(ns.score_per_group(ns.read_parquet(spark, input), key, time_column, models), output)
    result = spark.read.parquet(str(output))
    rows, flagged = _counts(result)
    failed = result.filter("status != 'ok'").select(key).distinct().count()
    from normalcy.spark.groups import Settings

    settings = Settings.read(Path(models))
    unit = "series" if settings is None or settings.modality == "timeseries" else "groups"
    typer.echo(f"{rows} rows written, {flagged} flagged; {failed} {unit} without scores (see status, error); "
               f"results in {output}")


@app.command()
def stream(
    model: Path = typer.Option(..., "--model", help="Time-series model folder (every key starts from it) or a "
                               "fit-per-group folder (each key from its own)."),
    input: Path = typer.Option(..., "--input", help="Folder the Parquet or CSV files of readings arrive in."),
    output: Path = typer.Option(..., "--output", help="Folder for the Parquet output: key, time, score, label, status."),
    key: str = typer.Option(..., "--key", help="Column naming the series."),
    time_column: str = typer.Option(..., "--time", help="Column with each reading's time (timestamp or number)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="Folder for the query's offsets and per-key state; "
                                    "start again with the same one to resume."),
    trigger: str = typer.Option("10 seconds", "--trigger", help="'once': process the files there and exit; "
                                "else the interval between micro-batches (e.g. '10 seconds')."),
    watermark: str = typer.Option(None, "--watermark", help="Event-time delay (e.g. '1 minute'): readings up to "
                                  "this late are put back in order; needs a timestamp time column."),
    fmt: str = typer.Option(None, "--format", help="parquet or csv (default: from the files' names)."),
    max_files: int = typer.Option(None, "--max-files", help="Files per micro-batch (default: all new ones)."),
    master: str = MASTER, progress: bool = PROGRESS,
):
    """Score readings as they arrive, one detector per key kept in Spark's state store."""
    from normalcy.spark.session import session
    from normalcy.spark.stream import run_files

    once = trigger.strip().lower() == "once"
    spark = session(master, "normalcy spark stream", progress)

    def show(p):
        typer.echo(f"batch {p['batchId']}: {p['numInputRows']} readings, {p.get('processedRowsPerSecond', 0):,.0f}/s",
                   err=True)

    run_files(spark, model, input, output, key, time_column, checkpoint, once=once, trigger=None if once else trigger,
              watermark=watermark, fmt=fmt, max_files=max_files, on_progress=None if once else show)
    from pyspark.sql import functions as F

    if not (output / "_spark_metadata").is_dir():
        typer.echo(f"no new files in {input}; nothing written")
        return
    counts = spark.read.parquet(str(output)).groupBy().agg(
        F.count("*"), F.sum("label"), F.sum((F.col("status") == "late").cast("int")),
        F.sum(F.col("status").startswith("failed").cast("int"))).first()
    rows, flagged, late, failed = (int(v or 0) for v in counts)
    typer.echo(f"{rows} readings written in all, {flagged} flagged, {late} late, {failed} failed (see status); "
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


def _show(r: dict) -> None:
    typer.echo("  ".join(f"{k}={v:,.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()
                         if v is not None and k not in ("params", "protocol")))


@app.command("bench-stream")
def bench_stream(
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown report is written beside it (.md)."),
    keys: int = typer.Option(10_000, "--keys", help="Keys (series)."),
    readings: int = typer.Option(1_000, "--readings", help="Readings per key."),
    files: int = typer.Option(10, "--files", help="Input files (one micro-batch each)."),
    master: str = typer.Option("local[2]", "--master", help="Spark master."),
    work: Path = typer.Option(None, "--work", help="Folder for the generated files, model and output."),
):
    """Readings through `normalcy spark stream`: readings/s overall and per micro-batch."""
    from normalcy.spark.benchmarks import stream as run

    json_out, md_out = run(json_path, keys, readings, files, master, work, on_record=_show)
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command("bench-sequence")
def bench_sequence(
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown report is written beside it (.md)."),
    data: Path = typer.Option(..., "--data", help="The shared logs folder (hdfs_sessions/, loghub/)."),
    master: str = typer.Option("local[2]", "--master", help="Spark master."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds of the loghub injections."),
    systems: str = typer.Option(None, "--systems", help="Comma-separated loghub systems (default: all ten; "
                                "'none' for HDFS only)."),
):
    """entity-sequence against DeepLog on HDFS (in process and fit per group on Spark), and per
    entity against one global model on loghub streams."""
    from normalcy.spark.benchmarks import sequence as run

    chosen = None if systems is None else [] if systems.strip().lower() == "none" else _names(systems)
    json_out, md_out = run(json_path, data, master, seeds, chosen, on_record=_show)
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command("bench-graph")
def bench_graph(
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown report is written beside it (.md)."),
    data: Path = typer.Option(None, "--data", help="The shared logs folder (loghub/) for the AUROC comparison "
                              "with APE; without it only the scaling runs."),
    sizes: str = typer.Option("100000,1000000,10000000", "--sizes", help="Edges of the generated graphs."),
    one_core: str = typer.Option(None, "--one-core", help="Sizes also run on local[1] (default: the largest)."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds of the loghub injections."),
    part_edges: int = typer.Option(None, "--part-edges", help="Edges per part (default 2,000,000)."),
    work: Path = typer.Option(None, "--work", help="Folder for the generated graphs."),
):
    """Graph embeddings: edge AUROC beside APE on the loghub injection benchmark, and scaling
    from 10^5 to 10^7 edges, local[1] against local[2]."""
    from normalcy.spark.benchmarks import graph as run

    numbers = [int(s) for s in _names(sizes)]
    json_out, md_out = run(json_path, data, tuple(numbers), seeds, work, part_edges,
                           None if one_core is None else [int(s) for s in _names(one_core)], on_record=_show)
    typer.echo(f"wrote {json_out} and {md_out}")


def _counts(result) -> tuple[int, int]:
    """Rows and flagged rows of a written result."""
    from pyspark.sql import functions as F

    rows, flagged = result.agg(F.count("*"), F.sum("label")).first()
    return rows, flagged or 0


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
