"""`normalcy alerts fit | rank | evaluate | benchmark | models`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="Alert ranking: order a queue of low-level alerts so that true alerts come first; "
                       "analyst verdicts re-rank it.", no_args_is_help=True)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="History of alerts, one per row: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("alerts", "car")),
    param: list[str] = PARAM,
    time_column: str = typer.Option(None, "--time-column", help="Seconds since 1970 or ISO 8601 (default time)."),
    type_column: str = typer.Option(None, "--type-column", help="The alert type: rule, signature ... (default type)."),
    entities: str = typer.Option("", "--entities", help="Comma-separated entity columns (default: the others)."),
    stream: str = typer.Option(None, "--stream", help="The entity whose alerts form a stream (default: the first)."),
    score_column: str = typer.Option(None, "--score-column", help="The raw detector score, higher = more suspicious."),
    source: str = typer.Option(None, "--source", help="The entity naming who raised each alert (detector, sensor): "
                                                      "adds the corroboration part."),
    verdict_column: str = typer.Option(None, "--verdict-column", help="Analyst verdicts 1/0 (default verdict); "
                                                                      "optional, kept as feedback."),
    id_column: str = typer.Option(None, "--id-column", help="An alert id column, never an entity."),
    seed: int = typer.Option(0, "--seed", help="Seed of the content model."),
):
    """Learn each stream's routine and which attributes go together from a history of alerts."""
    from normalcy.cli.common import build_detector
    from normalcy.alerts import DEFAULT

    name = model or DEFAULT
    ranker = build_detector("alerts", name, param, {
        "time_column": time_column, "type_column": type_column, "entity_columns": _names(entities) or None,
        "stream_column": stream, "score_column": score_column, "source_column": source,
        "verdict_column": verdict_column, "id_column": id_column, "seed": seed})
    ranker.fit(data)
    ranker.save(out)
    verdicts = sum(n for _, n in ranker.feedback_["type"].values())
    typer.echo(f"saved {name} to {out}: {ranker.n_alerts_} alerts of {len(ranker.types_)} types from "
               f"{len(ranker.streams_)} {ranker.stream_} stream(s); entities {', '.join(ranker.columns_)}"
               + (f"; raw score {ranker.score_column}" if ranker.scored_ else "")
               + (f"; source {ranker.source_column}" if ranker.source_column else "")
               + (f"; {verdicts} verdicts kept as feedback" if verdicts else ""))


@app.command()
def rank(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy alerts fit`."),
    data: Path = typer.Option(..., "--data", help="The queue of alerts to rank: .csv, .tsv or .parquet."),
    out: Path = typer.Option(..., "--out", help="Ranked queue (.csv, .tsv or .parquet): rank, score, prior, "
                                                "percentiles and reasons, best first."),
    feedback: Path = typer.Option(None, "--feedback", help="Alerts with analyst verdicts (the verdict column) "
                                                           "that re-rank the queue; not kept in the model."),
    top: int = typer.Option(10, "--top", help="Alerts to print."),
):
    """Rank a queue: the alerts most likely true first, with the reasons."""
    from normalcy.alerts.workflow import rank_to_file

    result = rank_to_file(_load(model_dir), data, out, feedback)
    typer.echo(f"{len(result)} alerts ranked; results in {out}")
    for _, row in result.head(max(top, 0)).iterrows():
        typer.echo(f"{row['rank']:>5}  {row['score']:.3f}  {row['reasons'].split(' | ')[0]}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Option(..., "--data", help="Alerts with known verdicts in a column (1 true, 0 false)."),
    truth_column: str = typer.Option("truth", "--truth-column", help="The column of known verdicts."),
    feedback: Path = typer.Option(None, "--feedback", help="Alerts with analyst verdicts, as for rank."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
):
    """Precision at 10 and 50 and NDCG of the ranking against known verdicts."""
    from normalcy.cli.common import echo_metrics
    from normalcy.alerts.workflow import evaluate as run_evaluation

    echo_metrics(run_evaluation(_load(model_dir), data, truth_column, feedback=feedback), json_path)


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="The shared logs folder (bgl_20k/, hdfs_sessions/)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    seeds: int = typer.Option(5, "--seeds", help="Feedback draws (and HDFS replays)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the log detectors that raise the HDFS alerts."),
):
    """Ranking on BGL's alerts and the log detectors' HDFS alerts, before and after feedback."""
    from normalcy.alerts.benchmark import run

    json_out, md_out, records = run(data, json_path, seeds, threads)
    for r in records:
        typer.echo(f"{r['dataset']:5s} {r['ranker']:24s} {r['feedback']:13s} P@10 {r['precision_at_10']:.3f}  "
                   f"P@50 {r['precision_at_50']:.3f}  NDCG {r['ndcg']:.3f}")
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def models():
    """List the alert rankers with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("alerts")


def _load(model_dir: Path):
    from normalcy.alerts.base import AlertRanker

    return AlertRanker.load(model_dir)


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
