"""`normalcy logs fit | score | evaluate | benchmark | models | formats`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="System logs: template mining, sessions or time windows, a score per group.",
                  no_args_is_help=True)

FORMAT_HELP = ("Header layout: a preset (`normalcy logs formats` lists them: raw, hdfs, bgl, syslog, syslog-iso, "
               "apache-access, apache-error, nginx-error, jsonl ...) or a regex with (?P<content>...).")
YEAR_HELP = ("Year of time stamps that carry none (syslog); default: the latest year not after the file's "
             "modification time.")


@app.command()
def fit(
    files: list[str] = typer.Argument(..., help="Log files of normal operation; - reads stdin."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    log_format: str = typer.Option("raw", "--format", help=FORMAT_HELP),
    group_by: str = typer.Option(None, "--group-by", help="Regex of the session id, e.g. 'blk_-?\\d+'."),
    window: str = typer.Option(None, "--window", help="Time windows of this length, e.g. 60s, 5m, 1h."),
    step: str = typer.Option(None, "--step", help="Step between window starts (default: the window: fixed windows)."),
    model: str = typer.Option(None, "--model", "--detector", help=model_help("logs", "invariants")),
    param: list[str] = PARAM,
    parser: str = typer.Option("drain", "--parser", help="drain (mine templates) or masked (no mining: each "
                                                          "distinct masked line is an event)."),
    threshold: str = typer.Option("own", "--threshold",
                                  help="own (the detector's label-free rule), fpr:RATE on held-out groups, fixed:VALUE, "
                                       "or history: level weights and threshold learned from labelled groups "
                                       "(--alert-regex or --labels; semantic detectors)."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of groups held out to set an fpr threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split (history: of the folds)."),
    alert_regex: str = typer.Option(None, "--alert-regex",
                                    help="history: lines matching this are alerts (BGL: '^[^-]')."),
    labels: Path = typer.Option(None, "--labels", help="history: CSV of group,label (0/1 or Normal/Anomaly)."),
    folds: int = typer.Option(10, "--folds", help="history: folds of the cross-fitting."),
    year: int = typer.Option(None, "--year", help=YEAR_HELP),
):
    """Mine templates, group the lines and learn what normal groups look like (with --threshold
    history, from logs whose anomalous groups are labelled: it fits on the normal ones)."""
    import warnings

    from normalcy.cli.common import echo_fit
    from normalcy.core.errors import DataError
    from normalcy.core.holdout import CalibrationWarning
    from normalcy.core.registry import detector_class, parse_params
    from normalcy.core.threshold import F1Optimal, parse_threshold
    from normalcy.logs import DEFAULT
    from normalcy.logs.formats import read_logs
    from normalcy.logs.model import LogModel
    from normalcy.logs.semantic import SemanticDetector
    from normalcy.logs.sessions import parse_duration
    from normalcy.logs.workflow import labels_of

    name = model or DEFAULT
    params = parse_params(param, detector_class("logs", name))
    detector = LogModel(name, log_format, group_by, parse_duration(window) if window is not None else None,
                        parse_duration(step) if step is not None else None, params or None, parser=parser)
    detector._check_params()  # before reading any log
    history = threshold == "history"
    if not history and (alert_regex is not None or labels is not None):
        raise DataError("--alert-regex and --labels label the groups for --threshold history; fit on normal logs "
                        "without them")
    if history and (alert_regex is None) == (labels is None):
        raise DataError("--threshold history needs exactly one of --alert-regex or --labels")
    if history and not issubclass(detector_class("logs", name), SemanticDetector):
        raise DataError(f"--threshold history learns how much a semantic detector's unseen templates weigh: it "
                        f"needs a semantic detector (semantic-seq, semantic-bag), not {name}")
    strategy = None if threshold in ("own", "history") else parse_threshold(threshold)
    if isinstance(strategy, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies; fit on normal logs with own, fpr:RATE or fixed:VALUE")
    records = read_logs(files, _format(log_format), year=year)
    typer.echo(records.stats.summary(), err=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # echo_fit says it, once
        if history:
            detector.fit_history(records, lambda rec, groups: labels_of(rec, groups, alert_regex, labels), folds, seed)
        elif strategy is None:
            detector.fit(records)
        else:
            detector.fit_holdout(records, holdout, strategy, seed)
    detector.save(out)
    unit = detector.unit
    how = {"sessions": " (by --group-by)", "windows": f" of {window}" + (f" every {step}" if step else ""),
           "lines": ""}[unit]
    echo_fit(detector, name, out, unit,
             f" trained on {detector.n_groups_} {unit}{how} from {detector.n_lines_} lines (an event is one line's "
             f"template: {detector.parser_.n_templates} templates mined, {len(detector.detector_.vocab_)} of them "
             f"in the training {unit})")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy logs fit`."),
    files: list[str] = typer.Argument(..., help="Log files to score; - reads stdin."),
    out: str = typer.Option("-", "--out", help="Results: .jsonl/.json (JSON lines), .csv, or - for stdout."),
    max_lines: int = typer.Option(10, "--max-lines", help="Evidence lines listed per group at most."),
    year: int = typer.Option(None, "--year", help=YEAR_HELP),
):
    """A score, a 0/1 label and the evidence (lines, templates, reasons) per group."""
    from normalcy.logs.formats import read_logs
    from normalcy.logs.workflow import output_kind, result_rows, write_rows

    output_kind(out)
    model = _load(model_dir)
    records = read_logs(files, _format(model.log_format), year=year)
    typer.echo(records.stats.summary(), err=True)
    analysis = model.analyse(records)
    write_rows(result_rows(model, analysis, max_lines), out)
    flagged = int(analysis.labels.sum()) if analysis.labels is not None else 0
    ungrouped = f" ({analysis.groups.ungrouped} lines in no group)" if analysis.groups.ungrouped else ""
    typer.echo(f"{len(analysis.scores)} {model.unit} scored{ungrouped}, {flagged} flagged anomalous"
               + ("" if out == "-" else f"; results in {out}"), err=True)


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy logs fit`."),
    files: list[str] = typer.Argument(..., help="Labelled log files; - reads stdin."),
    alert_regex: str = typer.Option(None, "--alert-regex", help="Lines matching this are alerts (BGL: '^[^-]')."),
    labels: Path = typer.Option(None, "--labels", help="CSV of group,label (0/1 or Normal/Anomaly)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    year: int = typer.Option(None, "--year", help=YEAR_HELP),
):
    """Precision, recall and F1 at the model's threshold, AUROC and AUPRC, against known labels."""
    from normalcy.cli.common import echo_metrics
    from normalcy.logs.formats import read_logs
    from normalcy.logs.workflow import evaluate as evaluate_groups, group_labels

    model = _load(model_dir)
    records = read_logs(files, _format(model.log_format), year=year)
    typer.echo(records.stats.summary(), err=True)
    analysis = model.analyse(records, explain=False)
    echo_metrics(evaluate_groups(model, analysis, group_labels(analysis, alert_regex, labels)), json_path)


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="The shared logs folder (hdfs_sessions/, bgl_20k/, loghub/)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads of the detectors that take them (torch)."),
    parts: str = typer.Option("hdfs,bgl,parsing,embedding", "--parts",
                              help="Which parts to run: hdfs, bgl, parsing (loghub grouping accuracy, parser "
                                   "speed), embedding (template embedding throughput)."),
    embedding_cache: Path = typer.Option(None, "--embedding-cache",
                                         help="Folder keeping template embeddings between runs (default: "
                                              "normalcy-log-embeddings in the temporary folder)."),
):
    """HDFS sessions and BGL windows: precision, recall, F1 per detector beside a random
    baseline; grouping accuracy on the loghub systems; parser and embedding throughput."""
    from normalcy.core.registry import detector_class, detectors
    from normalcy.logs.benchmark import CACHE_DIR, run

    names = [m.strip() for m in models.split(",") if m.strip()] or list(detectors("logs"))
    for name in names:
        detector_class("logs", name)  # unknown names fail before any work
    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    json_out, md_out, png, records = run(data, names, json_path, threads, embedding_cache or CACHE_DIR, chosen)
    for r in records:
        figures = "  ".join(f"{k} {r[k]:.4f}" for k in ("precision", "recall", "f1", "grouping_accuracy")
                            if r.get(k) is not None)
        extra = f"  lines/s {r['lines_per_second']:.0f}" if r.get("lines_per_second") else ""
        typer.echo(f"{r['detector']:13s} {r['dataset']:18s} {r.get('threshold_rule', ''):9s} {figures}{extra}")
    typer.echo(f"wrote {json_out} and {md_out}" + (f" and {png}" if png else ""))


@app.command()
def models():
    """List the log detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("logs")


@app.command()
def formats():
    """List the preset header formats (for --format) with an example line of each."""
    from normalcy.logs.formats import ALIASES, FORMATS

    for name, fmt in FORMATS.items():
        aliases = [a for a, target in ALIASES.items() if target == name]
        typer.echo(f"{name}{' (= ' + ', '.join(aliases) + ')' if aliases else ''}: {fmt.description}")


def _format(spec: str):
    from normalcy.logs.formats import get_format

    return get_format(spec)


def _load(model_dir: Path):
    from normalcy.logs.model import LogModel

    return LogModel.load(model_dir)
