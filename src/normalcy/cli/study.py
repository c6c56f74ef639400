"""`normalcy study thresholds`: the measurements behind the library's rules (benchmarks, not tests)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Studies: the measurements that chose the library's rules.", no_args_is_help=True)


@app.callback()
def _study():
    """Studies: the measurements that chose the library's rules (benchmarks, not tests)."""


@app.command()
def thresholds(
    data: Path = typer.Option(..., "--data", help="The reference data folder (../shared/data, see its README)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table (.md) and a summary "
                                                        "(.summary.md) are written beside it."),
    corpus: list[str] = typer.Option(None, "--corpus", help="A corpus to measure (repeatable; default all): adbench, "
                                                            "odds, nab, msl, hdfs, bgl, mvtec-bottle, bgl-text."),
    reps: int = typer.Option(500, "--reps", help="Random held-out draws per dataset, held-out size and rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fit/pool splits and of the draws."),
    cache: Path = typer.Option(None, "--cache", help="Folder for the detectors' scores, reused by later runs "
                                                     "(default: normalcy-study-scores in the temporary folder)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Score every corpus afresh and keep nothing."),
):
    """False-alarm-rate thresholds from 5-200 held-out normal items: every candidate rule's achieved
    rate on new normal items and recall, per corpus, and the rule picked by its worst corpus."""
    from normalcy.core.errors import DataError
    from normalcy.study.thresholds import CORPORA, DEFAULT_CACHE, run

    if reps < 1:
        raise DataError(f"--reps must be at least 1, got {reps}")
    json_out, md_out, summary_out, _ = run(
        data, json_path, tuple(corpus) if corpus else CORPORA, reps=reps, seed=seed,
        cache=None if no_cache else (cache or DEFAULT_CACHE))
    typer.echo(summary_out.read_text())
    typer.echo(f"wrote {json_out}, {md_out} and {summary_out}")
