"""`normalcy image fit | predict | evaluate | benchmark`."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path

import typer

app = typer.Typer(help="Images: a score per image and a defect heatmap per pixel.", no_args_is_help=True)


class Model(str, Enum):
    patchcore = "patchcore"
    padim = "padim"
    gaussian = "gaussian"


class Backbone(str, Enum):
    lite0 = "efficientnet-lite0"
    lite1 = "efficientnet-lite1"
    lite2 = "efficientnet-lite2"


THREADS = typer.Option(None, "--threads", help="CPU threads for torch, faiss and BLAS (default: all).")


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Training data: MVTec layout (train/good) or a folder of normal images."),
    model: Model = typer.Option(Model.patchcore, "--model", help="Detector."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone", help="ImageNet-pretrained feature extractor."),
    image_size: int = typer.Option(256, "--image-size", help="Images are resized (whole, no crop) to this square size."),
    coreset_ratio: float = typer.Option(0.01, "--coreset-ratio", help="PatchCore: fraction of patches kept in the memory bank."),
    weights: Path = typer.Option(None, "--weights", help="Backbone weights file (a state dict) instead of the packaged ones."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (held-out normals), f1 (needs --validation) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of normal images held out to set the threshold."),
    validation: Path = typer.Option(None, "--validation", help="Labelled dataset (with anomalies) to set the threshold on."),
    threads: int = THREADS,
):
    """Learn what normal looks like from a folder of good images."""
    from normalcy.core.threshold import parse_threshold
    from normalcy.image.workflow import fit_model

    params = {"backbone": backbone.value, "image_size": image_size, "num_threads": threads,
              "weights": str(weights) if weights else None}
    if model is Model.patchcore:
        params["coreset_ratio"] = coreset_ratio
    detector = fit_model(data, model.value, params, parse_threshold(threshold), holdout, validation)
    detector.save(out)
    typer.echo(f"saved {model.value} to {out} (threshold {detector.threshold_:.4f})")


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
    json_path: Path = typer.Option(..., "--json", help="Where to write the metrics as JSON."),
    threads: int = THREADS,
):
    """Image AUROC, pixel AUROC, AUPRO and F1-max on a labelled test set."""
    from normalcy.core.benchmark import write_atomic
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate as run_evaluation

    detector = _load(model_dir, threads)
    metrics, _, _ = run_evaluation(detector, load_dataset(data))
    metrics = {"model": str(model_dir), "detector": type(detector).__name__, "data": str(data), **metrics}
    write_atomic(json_path, json.dumps(metrics, indent=2) + "\n")
    typer.echo(", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float)))


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="An MVTec-layout category, or a folder of categories."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("patchcore,padim,gaussian", "--models", help="Comma-separated detectors."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone"),
    image_size: int = typer.Option(256, "--image-size"),
    coreset_ratio: float = typer.Option(0.01, "--coreset-ratio"),
    threads: int = typer.Option(2, "--threads", help="CPU threads per run."),
):
    """Every detector on every category: metrics, fit seconds, images/s, peak memory."""
    from normalcy.core.errors import DataError
    from normalcy.image import DETECTORS
    from normalcy.image.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    unknown = [m for m in names if m not in DETECTORS]
    if unknown or not names:
        raise DataError(f"unknown model(s) {', '.join(unknown) or '(none)'}; expected some of {', '.join(DETECTORS)}")
    params = {"backbone": backbone.value, "image_size": image_size, "coreset_ratio": coreset_ratio, "num_threads": threads}
    json_out, md_out, _ = run(data, names, params, json_path)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


def _load(model_dir: Path, threads: int | None):
    from normalcy.image.base import ImageDetector

    detector = ImageDetector.load(model_dir)
    detector.num_threads = threads
    return detector
