"""`normalcy image fit | predict | evaluate | benchmark | models`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="Images: a score per image and a defect heatmap per pixel.", no_args_is_help=True)


class Backbone(str, Enum):
    lite0 = "efficientnet-lite0"
    lite1 = "efficientnet-lite1"
    lite2 = "efficientnet-lite2"


THREADS = typer.Option(None, "--threads", help="CPU threads for torch, faiss and BLAS (default: all).")


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Training data: MVTec layout (train/good) or a folder of normal images."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("image", "patchcore")),
    param: list[str] = PARAM,
    backbone: Backbone = typer.Option(None, "--backbone", help="ImageNet-pretrained feature extractor (default efficientnet-lite0)."),
    image_size: int = typer.Option(None, "--image-size", help="Images are resized (whole, no crop) to this square size (default 256)."),
    coreset_ratio: float = typer.Option(None, "--coreset-ratio", help="PatchCore: fraction of patches kept in the memory bank (default 0.01)."),
    weights: Path = typer.Option(None, "--weights", help="Backbone weights file (a state dict) instead of the packaged ones."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (held-out normals), f1 (needs --validation) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of normal images held out to set the threshold."),
    validation: Path = typer.Option(None, "--validation", help="Labelled dataset (with anomalies) to set the threshold on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of the detector (where it has one)."),
    threads: int = THREADS,
):
    """Learn what normal looks like from a folder of good images."""
    import warnings

    from normalcy.cli.common import echo_fit
    from normalcy.core.holdout import CalibrationWarning
    from normalcy.core.threshold import parse_threshold
    from normalcy.image import DEFAULT
    from normalcy.image.workflow import fit_model

    name = model or DEFAULT
    detector = _build(name, param, {
        "backbone": backbone.value if backbone else None, "image_size": image_size, "coreset_ratio": coreset_ratio,
        "weights": str(weights) if weights else None, "threads": threads, "seed": seed,
    })
    strategy = parse_threshold(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # echo_fit says it, once
        fit_model(data, detector, strategy, holdout, validation, seed)
    detector.save(out)
    echo_fit(detector, name, out, "images")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy image fit`."),
    paths: list[Path] = typer.Argument(..., help="Images or folders of images."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv and the overlay PNGs."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in results.csv) instead of failing."),
    threads: int = THREADS,
):
    """Score images: results.csv with score and label, and a heatmap overlay per image."""
    from normalcy.image.workflow import expand_inputs, predict_to_folder

    detector = _load(model_dir, threads)
    rows = predict_to_folder(detector, expand_inputs(paths), out, "skip" if skip_bad else "raise")
    flagged = sum(1 for r in rows if r["label"] == 1)
    typer.echo(f"{len(rows)} images scored, {flagged} flagged anomalous; results in {out / 'results.csv'}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Option(..., "--data", help="Labelled data: MVTec layout or folder layout with anomalies."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    threads: int = THREADS,
):
    """Image AUROC, pixel AUROC, AUPRO and F1-max on a labelled test set."""
    from normalcy.cli.common import echo_metrics
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate as run_evaluation

    detector = _load(model_dir, threads)
    metrics, _, _ = run_evaluation(detector, load_dataset(data))
    echo_metrics({"model": str(model_dir), "detector": type(detector).__name__, "data": str(data), **metrics}, json_path)


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="An MVTec-layout category, or a folder of categories."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one)."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone"),
    image_size: int = typer.Option(256, "--image-size"),
    coreset_ratio: float = typer.Option(0.01, "--coreset-ratio", help="For the detectors that take it (PatchCore)."),
    threads: int = typer.Option(2, "--threads", help="CPU threads per run."),
):
    """Every detector on every category: metrics, fit seconds, images/s, peak memory."""
    from normalcy.image.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    params = {"backbone": backbone.value, "image_size": image_size, "coreset_ratio": coreset_ratio, "threads": threads}
    json_out, md_out, _ = run(data, names or None, params, json_path)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def models():
    """List the image detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("image")


def _build(name: str, params: list[str] | None, options: dict):
    """The detector `name` with the command's options it accepts (only PatchCore has a
    coreset ratio, GaussianAD no seed) and the --param values, which win; an option given
    to a detector without it is an error, a default (None, or the seed) is left out."""
    from normalcy.cli.common import build_detector
    from normalcy.core.registry import detector_class, parameter_names

    accepted = parameter_names(detector_class("image", name))
    options = {k: v for k, v in options.items() if k in accepted or (k != "seed" and v is not None)}
    return build_detector("image", name, params, options)


def _load(model_dir: Path, threads: int | None):
    from normalcy.core.threads import check_threads
    from normalcy.image.base import ImageDetector

    detector = ImageDetector.load(model_dir)
    detector.threads = check_threads(threads)
    return detector
