"""`normalcy text fit | score | evaluate | models | benchmark`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM

app = typer.Typer(help="Text: a score per text from sentence embeddings (all-MiniLM-L6-v2, offline).",
                  no_args_is_help=True)

COLUMN = typer.Option("text", "--column", help="Text column of a .csv/.tsv/.jsonl file (plain text: one text a line).")
ENCODING_ERRORS = typer.Option("strict", "--encoding-errors",
                               help="strict: stop at a byte that is not UTF-8; replace: keep the line with U+FFFD.")
THREADS = typer.Option(1, "--threads", help="torch threads for the embedding (1 is fastest on a busy 2-core machine).")


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal texts: .csv, .tsv, .jsonl, or plain text (one a line)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    column: str = COLUMN,
    model: str = typer.Option("knn", "--model", help="The table detector on the embeddings (default knn); "
                                                     "`normalcy text models` lists them with their parameters."),
    param: list[str] = PARAM,
    embedder: str = typer.Option("all-MiniLM-L6-v2", "--embedder",
                                 help="all-MiniLM-L6-v2 (installed package) or a local sentence-transformers folder."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Truncate texts to this many tokens (default: the model's, 256)."),
    weak_distance: float = typer.Option(1.2, "--weak-distance", help="kNN evidence is marked weak beyond this "
                                                                     "distance to the nearest training text."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out texts) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of texts held out to set the threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
    encoding_errors: str = ENCODING_ERRORS,
    threads: int = THREADS,
):
    """Learn what normal texts look like."""
    from normalcy.cli.common import echo_fit
    from normalcy.cli.common import echo_warnings
    from normalcy.core.registry import detector_class, parse_params
    from normalcy.core.threshold import parse_threshold
    from normalcy.text.data import read_texts
    from normalcy.text.detector import TextDetector
    from normalcy.text.workflow import fit_model

    options = parse_params(param, detector_class("tabular", model)) or None
    detector = TextDetector(model=model, embedder=embedder, max_tokens=max_tokens, options=options, threads=threads,
                            weak_distance=weak_distance)
    detector._check_params()  # before reading and embedding
    texts, _ = read_texts(data, column, errors=encoding_errors)
    with echo_warnings():
        fit_model(texts, detector, parse_threshold(threshold), holdout, seed, name=str(data))
    detector.save(out)
    skipped = f", {detector.n_empty_skipped_} empty skipped" if detector.n_empty_skipped_ else ""
    echo_fit(detector, model, out, "texts", f" on {len(texts)} texts{skipped}")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy text fit`."),
    data: Path = typer.Option(..., "--data", help="Texts to score: .csv, .tsv, .jsonl or plain text."),
    out: Path = typer.Option(..., "--out", help="Output .csv or .jsonl: text, score, label (and, for kNN, nearest "
                                                "and nearest_weak)."),
    column: str = COLUMN,
    encoding_errors: str = ENCODING_ERRORS,
    threads: int = THREADS,
):
    """Score texts: each gets a score, a 0/1 label at the model's threshold and, for kNN, the
    nearest training text as evidence (nearest_weak = 1 where it is too far to explain anything)."""
    from normalcy.text.data import read_texts
    from normalcy.text.workflow import check_output, score_to_file

    check_output(out)
    texts, _ = read_texts(data, column, errors=encoding_errors)
    detector = _load(model_dir, threads)
    summary = score_to_file(detector, texts, out)
    typer.echo(f"{summary['n']} texts scored, {summary['flagged']} flagged anomalous; results in {out}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Option(..., "--data", help="Labelled texts: .csv, .tsv or .jsonl."),
    label_column: str = typer.Option(..., "--label-column", help="Column with 1 = anomaly, 0 = normal."),
    json_path: Path = typer.Option(None, "--json", help="Write the metrics to this JSON file."),
    column: str = COLUMN,
    encoding_errors: str = ENCODING_ERRORS,
    threads: int = THREADS,
):
    """AUROC, AUPRC, best F1, and precision, recall and F1 at the model's threshold."""
    from normalcy.cli.common import echo_metrics
    from normalcy.text.workflow import evaluate as run_evaluation

    detector = _load(model_dir, threads)
    result = run_evaluation(detector, data, column, label_column, encoding_errors)
    echo_metrics({"model": str(model_dir), "detector": detector.model, "data": str(data), **result}, json_path)


@app.command()
def models():
    """The text detector, and the table detectors it can put on the embeddings (--model, --param)."""
    from normalcy.cli.common import list_models

    list_models("text")
    typer.echo("\ndetectors on the embeddings (--model NAME, --param NAME=VALUE):")
    list_models("tabular")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="A BGL log (first token '-' = normal line, else an alert)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("knn,iforest,ensemble", "--models", help="Comma-separated detectors on the embeddings."),
    train_fraction: float = typer.Option(0.5, "--train-fraction", help="Chronological share of lines to train on (normal ones only)."),
    fields: str = typer.Option("message", "--fields", help="message: type, component, level and content; content: content only."),
    threads: int = THREADS,
):
    """BGL lines as text: fit on the normal lines of the first part, AUROC and AUPRC on the
    rest, for each detector and for a TF-IDF + kNN baseline; lines per second."""
    from normalcy.text.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    json_out, md_out, records = run(data, names, json_path, train_fraction, threads, fields)
    for r in records:
        typer.echo(f"{r['detector']:18s} AUROC {r['auroc']:.4f}  AUPRC {r['auprc']:.4f}  "
                   f"{r['lines_per_second']:.0f} lines/s")
    typer.echo(f"wrote {json_out} and {md_out}")


def _load(model_dir: Path, threads: int):
    from normalcy.core.threads import check_threads
    from normalcy.text.detector import TextDetector

    detector = TextDetector.load(model_dir)
    detector.threads = check_threads(threads)
    return detector
