"""What every modality's commands share: the detector choice from the registry, `--param`,
the fit summary with its calibration, and the evaluate report."""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer

PARAM = typer.Option(None, "--param", help="A detector parameter NAME=VALUE (repeatable); VALUE is read as JSON "
                                           "when it parses, else as text. `normalcy <modality> models` lists them.")


def model_help(modality: str, default: str) -> str:
    """The --model help: computed from the registry only when help is shown."""
    return f"Detector (default {default}); `normalcy {cli_name(modality)} models` lists every one with its parameters."


def cli_name(modality: str) -> str:
    return {"timeseries": "ts", "tabular": "table"}.get(modality, modality)


def build_detector(modality: str, model: str, params: list[str] | None, fixed: dict | None = None):
    """A detector from the registry by name, with `--param` values and the command's own
    options (`fixed`, those that are not None), each checked against its constructor."""
    from normalcy.core.registry import build, detector_class, parse_params

    cls = detector_class(modality, model)
    given = parse_params(params, cls)
    return build(modality, model, {**{k: v for k, v in (fixed or {}).items() if v is not None}, **given})


def list_models(modality: str) -> None:
    """Print each detector's name, its parameters with defaults, and the first line of its docs."""
    import inspect

    from normalcy.core.registry import detectors

    for name, cls in detectors(modality).items():
        signature = inspect.signature(cls.__init__)
        params = ", ".join(f"{p.name}={p.default!r}" for p in signature.parameters.values()
                           if p.name != "self" and p.default is not inspect.Parameter.empty)
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0].replace("\n", " ")
        typer.echo(f"{name}: {doc}\n    parameters: {params or '(none)'}")


def echo_fit(detector, name: str, out: Path, unit: str, detail: str = "") -> None:
    """`saved NAME to OUT (threshold T: RULE from N held-out UNIT; flags X% of them)` and, when
    the calibration has a caveat, a warning line."""
    calibration = detector.calibration_
    how = f": {calibration.describe(unit)}" if calibration is not None else ""
    typer.echo(f"saved {name}{detail} to {out} (threshold {detector.threshold_:.6g}{how})")
    if calibration is not None and calibration.note:
        typer.echo(f"warning: {calibration.note}", err=True)


def echo_metrics(metrics: dict, json_path: Path | None) -> None:
    """The evaluate report of every modality: `NAME VALUE` per figure on one line, the
    figures' names as the JSON has them, then where the JSON went."""
    from normalcy.core.benchmark import write_atomic

    figures = [f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    typer.echo("  ".join(figures))
    if json_path is not None:
        write_atomic(Path(json_path), json.dumps(metrics, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")


@contextmanager
def echo_warnings():
    """normalcy's own warnings raised in the block as `warning: ...` lines on stderr, once each
    (others as Python shows them); a calibration caveat is left to `echo_fit`, which says it
    with the threshold."""
    from normalcy.core.holdout import CalibrationWarning

    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            yield
    finally:
        shown = set()
        for w in caught:
            if not w.category.__module__.startswith("normalcy."):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            elif not issubclass(w.category, CalibrationWarning) and str(w.message) not in shown:
                shown.add(str(w.message))
                typer.echo(f"warning: {w.message}", err=True)
