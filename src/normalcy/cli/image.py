"""`normalcy image fit | predict | evaluate | synthesize | benchmark | models`."""

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


class Resize(str, Enum):
    squash = "squash"
    pad = "pad"


class Kind(str, Enum):
    perlin = "perlin"
    cutpaste = "cutpaste"
    scar = "scar"
    mix = "mix"


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
    resize: Resize = typer.Option(None, "--resize", help="How images reach the square: squash (default) or pad (keeps the aspect ratio)."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Trained detectors: time budget of the whole fit; the best state so far is kept."),
    max_steps: int = typer.Option(None, "--max-steps", help="Trained detectors: step budget (default: the method's own)."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (held-out normals), f1 (needs --validation) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of normal images held out to set the threshold."),
    validation: Path = typer.Option(None, "--validation", help="Labelled dataset (with anomalies) to set the threshold on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of the detector (where it has one)."),
    threads: int = THREADS,
):
    """Learn what normal looks like from a folder of good images.

    Trained detectors (simplenet, fastflow, draem) show their training's loss, validation
    figure and time left; Ctrl-C stops training and keeps the best state so far (before the
    first validation it writes nothing)."""
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
        "resize": resize.value if resize else None, "max_minutes": max_minutes, "max_steps": max_steps,
    })
    strategy = parse_threshold(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # echo_fit says it, once
        fit_model(data, detector, strategy, holdout, validation, seed)
    detector.save(out)
    echo_fit(detector, name, out, "images", _training_note(detector))


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
    metrics, _ = run_evaluation(detector, load_dataset(data))
    echo_metrics({"model": str(model_dir), "detector": type(detector).__name__, "data": str(data), **metrics}, json_path)


@app.command()
def synthesize(
    data: Path = typer.Option(..., "--data", help="Normal images: an MVTec-layout dataset (its test/good, else train/good) or a folder."),
    out: Path = typer.Option(..., "--out", help="New folder for the MVTec-layout test set (test/, ground_truth/)."),
    count: int = typer.Option(..., "--count", help="How many defective images to draw."),
    kind: Kind = typer.Option(Kind.mix, "--kind", help="perlin (DRAEM), cutpaste, scar, or mix (all three in turn)."),
    textures: Path = typer.Option(None, "--textures", help="Folder of texture images for perlin defects (default: the normal images, strongly transformed)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the defects."),
):
    """Draw synthetic defects with masks on normal images: a test set to validate a model and
    check its threshold without one real defect."""
    from normalcy.image.synthetic import write_test_set

    summary = write_test_set(data, out, count, kind.value, seed, textures)
    kinds = ", ".join(f"{n} {k}" for k, n in summary["per_kind"].items())
    typer.echo(f"wrote {summary['n_anomalous']} defective images ({kinds}) with masks and the {summary['n_normal']} "
               f"{summary['bases']} they were drawn on to {out} in {summary['seconds']:.1f} s")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="An MVTec-layout category, or a folder of categories."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one)."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone"),
    image_size: int = typer.Option(256, "--image-size"),
    coreset_ratio: float = typer.Option(0.01, "--coreset-ratio", help="For the detectors that take it (PatchCore)."),
    resize: Resize = typer.Option(None, "--resize", help="squash or pad (default: each detector's own)."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Time budget of each trained detector's fit."),
    threads: int = typer.Option(2, "--threads", help="CPU threads per run."),
    synthetic: int = typer.Option(100, "--synthetic", help="Synthetic defects drawn on each category's normal test "
                                                            "images to score every detector on too (0: none)."),
    peer: list[str] = typer.Option(None, "--peer", help="LIBRARY=PYTHON: run a peer library with the Python of its own "
                                                        "environment, e.g. anomalib=/tmp/peers/anomalib/venv/bin/python."),
    peer_arg: list[str] = typer.Option(None, "--peer-arg", help="An argument for the peer's runner (repeatable), e.g. "
                                                                "--peer-arg=--max-minutes=60."),
):
    """Every detector on every category: metrics, fit seconds, images/s, peak memory; beside
    them the synthetic-defect AUROC, the peers' records and a per-defect table."""
    from normalcy.core.errors import DataError
    from normalcy.image.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    params = {"backbone": backbone.value, "image_size": image_size, "coreset_ratio": coreset_ratio,
              "threads": threads, "resize": resize.value if resize else None, "max_minutes": max_minutes}
    peers = {}
    for spec in peer or []:
        library, sep, python = spec.partition("=")
        if not sep or not python.strip():
            raise DataError(f"--peer {spec!r} not understood; expected LIBRARY=PYTHON")
        peers[library.strip()] = python.strip()
    json_out, md_out, _ = run(data, names or None, params, json_path, peers, peer_arg or [], synthetic)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def models():
    """List the image detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("image")


def _training_note(detector) -> str:
    """` (trained N steps in S s, stopped: WHY, kept step M, synthetic-defect validation X)`
    for trained detectors."""
    training = getattr(detector, "training_", None)
    if not training:
        return ""
    best = "" if training["validation"] is None else f", synthetic-defect validation {training['validation']:.4f}"
    return (f" (trained {training['steps']} steps in {training['seconds']:.0f} s, stopped: {training['stopped']}, "
            f"kept step {training['best_step']}{best})")


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
