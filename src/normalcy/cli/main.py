"""Entry point: `normalcy <modality> <verb>`, plus `normalcy demo`.

Errors the user can act on print one line and exit with status 2; anything else is a bug in
normalcy and prints one line saying so, exit status 1 (NORMALCY_DEBUG=1 shows the traceback).
Modality commands import their heavy dependencies only when run.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from normalcy import __version__
from normalcy.cli.alerts import app as alerts_app
from normalcy.cli.api import app as api_app
from normalcy.cli.cloud import app as cloud_app
from normalcy.cli.embeddings import app as embeddings_app
from normalcy.cli.events import app as events_app
from normalcy.cli.image import app as image_app
from normalcy.cli.logs import app as logs_app
from normalcy.cli.serve import serve, serve_bench
from normalcy.cli.spark import app as spark_app
from normalcy.cli.study import app as study_app
from normalcy.cli.timeseries import app as ts_app
from normalcy.cli.table import app as table_app
from normalcy.cli.text import app as text_app
from normalcy.core.errors import NormalcyError

app = typer.Typer(help="normalcy: learn what normal looks like, flag and localise what is not.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
app.add_typer(image_app, name="image")
app.add_typer(ts_app, name="ts")
app.add_typer(table_app, name="table")
app.add_typer(text_app, name="text")
app.add_typer(logs_app, name="logs")
app.add_typer(events_app, name="events")
app.add_typer(alerts_app, name="alerts")
app.add_typer(api_app, name="api")
app.add_typer(cloud_app, name="cloud")
app.add_typer(embeddings_app, name="embeddings")
app.add_typer(spark_app, name="spark")
app.add_typer(study_app, name="study")
app.command("serve")(serve)
app.command("serve-bench")(serve_bench)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print the version and exit.")):
    """normalcy: learn what normal looks like, flag and localise what is not."""


@app.command()
def demo(
    out: Path = typer.Option(Path("normalcy-demo"), help="Folder for the data, model and report."),
    threads: int = typer.Option(None, help="CPU threads (default: all)."),
):
    """Make a small image dataset with synthetic defects, fit, evaluate and write an HTML report."""
    from normalcy.core.progress import set_progress
    from normalcy.image import demo as image_demo

    set_progress(None)
    typer.echo(f"building a synthetic dataset and fitting PatchCore in {out} ...")
    report, metrics = image_demo.run(out, threads)
    typer.echo(f"image AUROC {metrics['image_auroc']:.3f}  pixel AUROC {metrics['pixel_auroc']:.3f}  "
               f"AUPRO {metrics['aupro']:.3f}")
    typer.echo(f"report: {report.resolve()}")


def main() -> None:
    try:
        app()
    except NormalcyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except RecursionError:
        print("error: the input is nested too deeply to read", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against a raw traceback
        if os.environ.get("NORMALCY_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (a bug in normalcy {__version__}: please report it; "
              "NORMALCY_DEBUG=1 shows the traceback)", file=sys.stderr)
        sys.exit(1)
