"""`normalcy embeddings keygen | sign | verify | fit | score | models | benchmark`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="Embeddings: signed vectors (Ed25519) and detectors of vectors changed after embedding.",
                  no_args_is_help=True)

SHOWN_FAILURES = 20


@app.command()
def keygen(out: Path = typer.Option(..., "--out", help="Private key file to write (mode 0600); the public key goes "
                                                       "to OUT.pub.")):
    """Make an Ed25519 key pair for signing embeddings; never overwrites a file."""
    from normalcy.embeddings import keys
    from normalcy.embeddings.pin import key_id

    private, public = keys.generate(out)
    typer.echo(f"wrote {private} (private, mode 0600) and {public}; key id "
               f"{key_id(keys.load_public(public))}")


@app.command()
def sign(
    data: Path = typer.Argument(..., help="Parquet file: an 'embedding' column of float lists, and a 'content' "
                                          "column (the text) or a 'content_sha256' column (its SHA-256 in hex)."),
    key: Path = typer.Option(..., "--key", help="Private key file from `normalcy embeddings keygen` (mode 0600)."),
    model_id: str = typer.Option(..., "--model-id", help="The model that made the embeddings (signed with each row)."),
    out: Path = typer.Option(..., "--out", help="Signed Parquet file to write: the input columns plus the "
                                                "signature columns."),
    metadata: list[str] = typer.Option(None, "--metadata", help="A column whose values are signed with each row, "
                                                                "e.g. a document id (repeatable)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Rows per signature (default 256; 1: one signature "
                                                              "per row, about 18x slower)."),
):
    """Sign each row's vector, content hash and model id, so any later change fails `verify`."""
    from normalcy.embeddings.workflow import sign_file

    summary = sign_file(data, key, model_id, out, metadata or (), batch_size)
    typer.echo(f"signed {summary['n']} vectors with key {summary['key_id']} ({summary['batches']} signatures); "
               f"wrote {out}")


@app.command()
def verify(
    data: Path = typer.Argument(..., help="Parquet file written by `normalcy embeddings sign`."),
    public_key: Path = typer.Option(..., "--public-key", help="The signer's public key (KEY.pub)."),
    report: Path = typer.Option(None, "--report", help="Write every failing row and why to this .csv file."),
):
    """Check every row's signature: exit 0 when all verify, 1 when any fails (listing which and why)."""
    from normalcy.core.errors import DataError
    from normalcy.embeddings.workflow import verify_file

    if report is not None and report.suffix.lower() != ".csv":
        raise DataError(f"{report}: the report must be a .csv file")
    result = verify_file(data, public_key)
    if report is not None:
        _write_report(result.failures, report)
    if result.ok:
        typer.echo(f"all {result.n_rows} rows of {data} verify")
        return
    if result.problem is not None:
        typer.echo(f"{data}: no row can be verified: {result.problem}")
    else:
        for row, reason in result.failures[:SHOWN_FAILURES]:
            typer.echo(f"row {row}: {reason}")
        more = len(result.failures) - SHOWN_FAILURES
        if more > 0:
            typer.echo(f"... and {more} more" + ("" if report else " (--report FILE lists them all)"))
        counts = "; ".join(f"{n} {reason.split(':')[0]}" for reason, n in result.by_reason().items())
        typer.echo(f"{len(result.failures)} of {result.n_rows} rows fail verification ({counts})")
    raise typer.Exit(1)


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Normal vectors: a .parquet file with an 'embedding' column (and "
                                                  "'content' for the reembed detector)."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("embeddings", "moments")),
    param: list[str] = PARAM,
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (on held-out vectors) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of vectors held out to set the threshold."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
):
    """Learn what normal vectors look like."""
    from normalcy.cli.common import build_detector, echo_fit
    from normalcy.cli.table import echo_warnings
    from normalcy.core.threshold import parse_threshold
    from normalcy.embeddings import DEFAULT
    from normalcy.embeddings.workflow import fit_model

    model = model or DEFAULT
    detector = build_detector("embeddings", model, param)
    detector._check_params()  # before reading the data
    with echo_warnings():
        fit_model(data, detector, parse_threshold(threshold), holdout, seed)
    detector.save(out)
    echo_fit(detector, model, out, "vectors", f" on {detector.dim_}-dimensional vectors")


@app.command()
def score(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy embeddings fit`."),
    data: Path = typer.Option(..., "--data", help="Vectors to score: a .parquet file with an 'embedding' column."),
    out: Path = typer.Option(..., "--out", help="Output .parquet (every column, plus score and label) or .csv "
                                                "(every column but the vectors, plus score and label)."),
):
    """Score vectors: each gets an anomaly score and a 0/1 label at the model's threshold."""
    from normalcy.embeddings.base import EmbeddingDetector
    from normalcy.embeddings.workflow import score_to_file

    summary = score_to_file(EmbeddingDetector.load(model_dir), data, out)
    typer.echo(f"{summary['n']} vectors scored, {summary['flagged']} flagged anomalous; results in {out}")


@app.command()
def models():
    """Every embedding detector: its name for --model, its parameters for --param, what it does."""
    from normalcy.cli.common import list_models

    list_models("embeddings")


@app.command()
def benchmark(
    data: Path = typer.Option(None, "--data", help="The logs folder of the reference data (bgl_20k/ and loghub/)."),
    json_path: Path = typer.Option(..., "--json", help="Summary JSON; a Markdown table beside it (.md) and the "
                                                       "per-corpus figures in .corpora.json."),
    detectors: str = typer.Option(",".join(("norm", "moments", "dims", "reembed", "table:knn", "table:iforest",
                                            "table:pca", "table:ecod")), "--detectors",
                                  help="Comma-separated detectors; table:NAME puts a table detector on the vectors."),
    families: str = typer.Option(None, "--families", help="Comma-separated perturbation families (default: all)."),
    max_lines: int = typer.Option(5000, "--max-lines", help="Distinct lines per corpus at most (sampled)."),
    cache: Path = typer.Option(Path("/tmp/normalcy-embeddings-cache"), "--cache",
                               help="Folder for the corpora's embeddings (computed once per model and texts)."),
    throughput_vectors: int = typer.Option(20000, "--throughput-vectors", help="Vectors to sign and verify for "
                                                                                "the throughput figure."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling, splits and perturbations."),
    threads: int = typer.Option(1, "--threads", help="torch threads for the embedding."),
    throughput_only: bool = typer.Option(False, "--throughput-only", help="Only sign and verify "
                                         "--throughput-vectors random 384-float vectors (no --data needed)."),
):
    """Perturb real embeddings (noise, rotation, scaling, offset, fragments, combinations):
    retrieval change, each detector's AUROC, and the signatures' detection rate and speed."""
    from normalcy.core.errors import DataError
    from normalcy.embeddings.benchmark import run, run_throughput
    from normalcy.embeddings.perturb import FAMILIES

    if max_lines < 20 or throughput_vectors < 1:
        raise DataError("--max-lines must be at least 20 and --throughput-vectors at least 1")
    if throughput_only:
        json_out, md_out, speed = run_throughput(json_path, throughput_vectors, seed=seed)
        _echo_speed(speed)
        typer.echo(f"wrote {json_out} and {md_out}")
        return
    if data is None:
        raise DataError("--data is required (the logs folder of the reference data), unless --throughput-only")
    names = tuple(n.strip() for n in detectors.split(",") if n.strip())
    chosen = FAMILIES if families is None else tuple(f.strip() for f in families.split(",") if f.strip())
    json_out, md_out, summary, speed = run(data, json_path, names, chosen, max_lines, seed, threads, cache,
                                           throughput_vectors)
    for r in summary:
        if r["family"].startswith("none"):
            continue
        aurocs = "  ".join(f"{n.partition(':')[2] or n} {r[n.partition(':')[2] or n]:.3f}" for n in names)
        typer.echo(f"{r['family']:13s} {r['strength']:<6g} recall@10 {r['recall_at_10']:.3f}  signatures caught "
                   f"{_share(r['vectorpin_detected'])}  worst AUROC: {aurocs}")
    _echo_speed(speed)
    typer.echo(f"wrote {json_out} and {md_out}")


def _echo_speed(speed: dict) -> None:
    typer.echo(f"sign {speed['sign_per_s']:.0f}/s, verify {speed['verify_per_s']:.0f}/s, sign+verify "
               f"{speed['sign_verify_per_s']:.0f} vectors/s ({speed['sign_verify_per_cpu_s']:.0f} per CPU second; "
               f"through Parquet files {speed['file_sign_verify_per_s']:.0f}/s, "
               f"{speed['file_sign_verify_per_cpu_s']:.0f} per CPU second); load {speed['load_before']} -> "
               f"{speed['load_after']}")


def _share(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _write_report(failures: list[tuple[int, str]], report: Path) -> None:
    import csv
    import io

    from normalcy.core.benchmark import write_atomic

    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["row", "reason"])
    writer.writerows(failures)
    write_atomic(report, text.getvalue())
