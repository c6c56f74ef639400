"""`normalcy logs fit | score | evaluate | benchmark`."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="System logs: template mining, sessions or time windows, a score per group.",
                  no_args_is_help=True)

MODELS = "invariants, pca, clustering, deeplog, unseen"
FORMAT_HELP = "Header layout: raw, hdfs, bgl, syslog (= openssh, linux), or a regex with (?P<content>...)."


@app.command()
def fit(
    files: list[str] = typer.Argument(..., help="Log files of normal operation; - reads stdin."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    log_format: str = typer.Option("raw", "--format", help=FORMAT_HELP),
    group_by: str = typer.Option(None, "--group-by", help="Regex of the session id, e.g. 'blk_-?\\d+'."),
    window: str = typer.Option(None, "--window", help="Time windows of this length, e.g. 60s, 5m, 1h."),
    step: str = typer.Option(None, "--step", help="Step between window starts (default: the window: fixed windows)."),
    model: str = typer.Option("invariants", "--model", help=f"Detector: {MODELS}."),
    threshold: str = typer.Option("own", "--threshold",
                                  help="own (the detector's label-free rule), fpr:RATE on held-out groups, or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of groups held out to set an fpr threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
):
    """Mine templates, group the lines and learn what normal groups look like."""
    from normalcy.core.threshold import F1Optimal, Fixed, parse_threshold
    from normalcy.core.errors import DataError
    from normalcy.logs.formats import get_format, read_logs

    detector = _model(model, log_format, group_by, window, step)
    records = read_logs(files, get_format(log_format))
    typer.echo(records.stats.summary(), err=True)
    if threshold == "own":
        detector.fit(records)
    else:
        strategy = parse_threshold(threshold)
        if isinstance(strategy, F1Optimal):
            raise DataError("threshold f1 needs labelled anomalies; fit on normal logs with own, fpr:RATE or fixed:VALUE")
        if isinstance(strategy, Fixed):
            detector.fit(records)
            detector.threshold_ = strategy.compute()
        else:
            detector.fit_holdout(records, holdout, strategy, seed)
    detector.save(out)
    typer.echo(f"saved {model} with {detector.parser_.n_templates} templates and "
               f"{len(detector.detector_.vocab_)} events to {out} (threshold {detector.threshold_:.4g})")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy logs fit`."),
    files: list[str] = typer.Argument(..., help="Log files to score; - reads stdin."),
    out: str = typer.Option("-", "--out", help="Results: .jsonl/.json (JSON lines), .csv, or - for stdout."),
    max_lines: int = typer.Option(10, "--max-lines", help="Evidence lines listed per group at most."),
):
    """A score, a 0/1 label and the evidence (lines, templates, reasons) per group."""
    from normalcy.logs.formats import get_format, read_logs
    from normalcy.logs.workflow import output_kind, result_rows, write_rows

    output_kind(out)
    model = _load(model_dir)
    records = read_logs(files, get_format(model.log_format))
    typer.echo(records.stats.summary(), err=True)
    analysis = model.analyse(records)
    write_rows(result_rows(model, analysis, max_lines), out)
    flagged = int(analysis.labels.sum()) if analysis.labels is not None else 0
    ungrouped = f" ({analysis.groups.ungrouped} lines in no group)" if analysis.groups.ungrouped else ""
    typer.echo(f"{len(analysis.scores)} groups scored{ungrouped}, {flagged} flagged anomalous"
               + ("" if out == "-" else f"; results in {out}"), err=True)


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy logs fit`."),
    files: list[str] = typer.Argument(..., help="Labelled log files; - reads stdin."),
    alert_regex: str = typer.Option(None, "--alert-regex", help="Lines matching this are alerts (BGL: '^[^-]')."),
    labels: Path = typer.Option(None, "--labels", help="CSV of group,label (0/1 or Normal/Anomaly)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
):
    """Precision, recall and F1 at the model's threshold, AUROC and AUPRC, against known labels."""
    import json

    from normalcy.core.benchmark import write_atomic
    from normalcy.logs.formats import get_format, read_logs
    from normalcy.logs.workflow import evaluate as evaluate_groups, group_labels

    model = _load(model_dir)
    records = read_logs(files, get_format(model.log_format))
    typer.echo(records.stats.summary(), err=True)
    analysis = model.analyse(records, explain=False)
    result = evaluate_groups(analysis, group_labels(analysis, alert_regex, labels))
    typer.echo("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
    if json_path is not None:
        write_atomic(json_path, json.dumps(result, indent=2) + "\n")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="The shared logs folder (hdfs_sessions/, bgl_20k/)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("invariants,pca,clustering,deeplog,unseen", "--models", help="Comma-separated detectors."),
    threads: int = typer.Option(1, "--threads", help="torch threads for DeepLog."),
):
    """HDFS sessions and BGL windows: precision, recall, F1 per detector; BGL parsing throughput."""
    from normalcy.core.errors import DataError
    from normalcy.logs import DETECTORS
    from normalcy.logs.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in DETECTORS]
    if unknown or not names:
        raise DataError(f"unknown model(s) {', '.join(unknown) or '(none)'}; expected some of {MODELS}")
    json_out, md_out, records = run(data, names, json_path, threads)
    for r in records:
        figures = "  ".join(f"{k} {r[k]:.4f}" for k in ("precision", "recall", "f1") if r.get(k) is not None)
        extra = f"  lines/s {r['lines_per_second']:.0f}" if r.get("lines_per_second") else ""
        typer.echo(f"{r['detector']:11s} {r['dataset']:14s} {r.get('threshold_rule', ''):9s} {figures}{extra}")
    typer.echo(f"wrote {json_out} and {md_out}")


def _model(model: str, log_format: str, group_by: str | None, window: str | None, step: str | None):
    from normalcy.core.errors import DataError
    from normalcy.logs import DETECTORS
    from normalcy.logs.formats import get_format
    from normalcy.logs.model import LogModel
    from normalcy.logs.sessions import parse_duration

    if model not in DETECTORS:
        raise DataError(f"unknown model {model!r}; expected one of {MODELS}")
    if group_by and window:
        raise DataError("give either --group-by or --window, not both")
    if step and not window:
        raise DataError("--step needs --window")
    get_format(log_format)
    return LogModel(model, log_format, group_by, parse_duration(window) if window else None,
                    parse_duration(step) if step else None)


def _load(model_dir: Path):
    from normalcy.logs.model import LogModel

    return LogModel.load(model_dir)
