"""`normalcy api fit | check | rules | benchmark | models`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="Web API traffic: invariants of endpoints, parameters and call order learned from normal "
                       "access logs; requests that break one, with the rule in plain words.", no_args_is_help=True)

FORMAT_HELP = ("Access-log format: auto, combined (Apache/Nginx), jsonl, openstack, or a regex with named groups "
               "(?P<method>...) and (?P<path>...) (docs/api.md).")


@app.command()
def fit(
    files: list[str] = typer.Argument(..., help="Access logs of normal traffic; - reads stdin."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    log_format: str = typer.Option("auto", "--format", help=FORMAT_HELP),
    model: str = typer.Option(None, "--model", help=model_help("api", "mines")),
    param: list[str] = PARAM,
):
    """Learn the invariants that normal traffic keeps."""
    from normalcy.cli.common import build_detector
    from normalcy.api import DEFAULT
    from normalcy.api.access import read_files

    name = model or DEFAULT
    detector = build_detector("api", name, param, {"log_format": log_format})
    detector._check_params()  # before reading any log
    frame, stats = read_files(files, log_format)
    typer.echo(stats.summary(), err=True)
    detector.fit(frame)
    detector.save(out)
    s = detector.summary_
    typer.echo(f"saved {name} to {out}: {s['rules']} invariants of {s['endpoints']} endpoints from {s['requests']} "
               f"requests ({s['dropped']} dropped: broken by the held-out last {detector.validation:.0%} of the "
               "traffic); a request breaking one is flagged")


@app.command()
def check(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy api fit`."),
    files: list[str] = typer.Argument(..., help="Access logs to check; - reads stdin."),
    out: str = typer.Option("-", "--out", help="Results: .jsonl/.json (JSON lines), .csv, or - for stdout."),
    all_requests: bool = typer.Option(False, "--all", help="Write every request, not only the flagged ones."),
):
    """Check requests: each flagged one with the invariants it breaks, in plain words."""
    from normalcy.api.access import read_files
    from normalcy.api.workflow import check_rows, write_rows

    detector = _load(model_dir)
    frame, stats = read_files(files, detector.log_format)
    typer.echo(stats.summary(), err=True)
    rows, n = check_rows(detector, frame, flagged_only=not all_requests)
    write_rows(rows, out)
    flagged = sum(r["label"] for r in rows)
    typer.echo(f"{n} requests checked, {flagged} break an invariant" + ("" if out == "-" else f"; results in {out}"),
               err=out == "-")


@app.command()
def rules(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    kind: str = typer.Option(None, "--kind", help="Only rules of this kind (endpoint, params, type, range ...)."),
):
    """List the model's invariants, one per line."""
    import json

    for rule in _load(model_dir).rules_:
        if kind is None or rule["kind"] == kind:
            typer.echo(json.dumps(rule)[:1000])


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="The loghub folder (OpenStack/OpenStack_2k.log)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    seeds: int = typer.Option(5, "--seeds", help="Injection draws per corpus."),
):
    """Precision and recall per injected tampering kind, and false alarms on held-out normal traffic."""
    from normalcy.api.benchmark import run

    json_out, md_out, records = run(data, json_path, seeds)
    for r in records:
        typer.echo(f"{r['dataset']:10s} {r['kind']:20s} precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
                   f"false alarms {r['false_alarm_rate']:.4f}")
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def models():
    """List the API detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("api")


def _load(model_dir: Path):
    from normalcy.api.base import ApiDetector

    return ApiDetector.load(model_dir)
