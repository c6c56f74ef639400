"""`normalcy image fit | predict | evaluate | synthesize | benchmark | discover | models`."""

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
    data: list[Path] = typer.Option(..., "--data", help="Training data: MVTec layout (train/good) or a folder of normal "
                                                        "images; repeat it for one model of several products (named "
                                                        "by their folders), which routes each image to its product."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("image", "patchcore")),
    param: list[str] = PARAM,
    backbone: Backbone = typer.Option(None, "--backbone", help="ImageNet-pretrained feature extractor (default efficientnet-lite0)."),
    image_size: int = typer.Option(None, "--image-size", help="Images are resized (whole, no crop) to this square size "
                                                               "(default: the detector's own: 256, SimpleNet 288, DRAEM 128)."),
    coreset_ratio: float = typer.Option(None, "--coreset-ratio", help="PatchCore: fraction of patches kept in the memory bank (default 0.01)."),
    weights: Path = typer.Option(None, "--weights", help="Backbone weights file (a state dict) instead of the packaged ones."),
    resize: Resize = typer.Option(None, "--resize", help="How images reach the square: squash (default) or pad (keeps the aspect ratio)."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Trained detectors: time budget of the whole fit; the best state so far is kept."),
    max_steps: int = typer.Option(None, "--max-steps", help="Trained detectors: step budget (default: the method's own)."),
    size: str = typer.Option(None, "--size", help="EfficientAD: s (default) or m, the paper's small or medium network."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (held-out normals), f1 (needs --validation) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of normal images held out to set the threshold."),
    validation: Path = typer.Option(None, "--validation", help="Labelled dataset (with anomalies) to set the threshold on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of the detector (where it has one)."),
    threads: int = THREADS,
    shots: int = typer.Option(None, "--shots", help="Few-shot: fit on K training images drawn by --seed, augmented; "
                                                   "the threshold comes from augmented views (no holdout)."),
    augment: str = typer.Option("auto", "--augment", help="With --shots: auto (rotations only if the shots look the "
                                                         "same turned), rotate, mild (small affine and colour) or none."),
):
    """Learn what normal looks like from a folder of good images.

    Trained detectors (simplenet, fastflow, draem, efficientad) show their training's loss, validation
    figure and time left; Ctrl-C stops training and keeps the best state so far (before the
    first validation it writes nothing)."""
    import warnings

    from normalcy.cli.common import echo_fit
    from normalcy.core.errors import DataError
    from normalcy.core.holdout import CalibrationWarning
    from normalcy.core.threshold import parse_threshold
    from normalcy.image import DEFAULT
    from normalcy.image.workflow import fit_model

    name = model or DEFAULT
    detector = _build(name, param, {
        "backbone": backbone.value if backbone else None, "image_size": image_size, "coreset_ratio": coreset_ratio,
        "weights": str(weights) if weights else None, "threads": threads, "seed": seed,
        "resize": resize.value if resize else None, "max_minutes": max_minutes, "max_steps": max_steps,
        "size": size,
    })
    strategy = parse_threshold(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # echo_fit says it, once
        if len(data) > 1:
            from normalcy.image.multiproduct import fit_products

            if shots is not None or validation is not None:
                raise DataError("several --data products take neither --shots nor --validation")
            detector = fit_products(data, detector, strategy, holdout, seed)
        elif shots is None:
            fit_model(data[0], detector, strategy, holdout, validation, seed)
        else:
            from normalcy.image.fewshot import fit_shots_model

            fit_shots_model(data[0], detector, strategy, shots, augment, seed, validation)
    detector.save(out)
    echo_fit(detector, name, out, "images", _training_note(detector) + _fewshot_note(detector))


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy image fit`."),
    paths: list[Path] = typer.Argument(..., help="Images or folders of images."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv and the overlay PNGs."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images (listed in results.csv) instead of failing."),
    threads: int = THREADS,
):
    """Score images: results.csv with score and label, and a heatmap overlay per image. MODEL_DIR
    may also be an exported model (`normalcy image export`: a .onnx file or an OpenVINO folder),
    scored without torch."""
    from normalcy.image.workflow import expand_inputs, predict_to_folder

    rows = predict_to_folder(_load_scorer(model_dir, threads), expand_inputs(paths), out, "skip" if skip_bad else "raise")
    flagged = sum(1 for r in rows if r["label"] == 1)
    typer.echo(f"{len(rows)} images scored, {flagged} flagged anomalous; results in {out / 'results.csv'}")


@app.command("score-batch")
def score_batch(
    paths: list[Path] = typer.Argument(..., help="The batch: images or folders of images (no training images needed)."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv, the overlay PNGs and report.html."),
    share: float = typer.Option(0.3, "--share", help="Share of the other images (the closest) a patch is compared with."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone"),
    image_size: int = typer.Option(256, "--image-size", help="Images are resized (whole, no crop) to this square size."),
    resize: Resize = typer.Option(Resize.squash, "--resize", help="squash or pad (keeps the aspect ratio)."),
    threads: int = THREADS,
):
    """Zero-shot: score a batch against itself, with no model and no normal images.

    Each image's patches are compared with the patches of the other images of the batch: what
    most images share is normal, what finds no close match in most others is anomalous. This
    assumes defects are a minority of the batch (and any one defect rarer than --share of it);
    use 10 images or more. Labels come from a robust outlier rule on the batch's scores
    (above median + 3 x 1.4826 x MAD), since no threshold exists without normal images."""
    from normalcy.cli.common import echo_warnings
    from normalcy.image.workflow import expand_inputs
    from normalcy.image.zeroshot import BatchScorer, score_batch_to_folder

    scorer = BatchScorer(share, backbone.value, image_size, resize.value, threads=threads)
    with echo_warnings():
        rows = score_batch_to_folder(scorer, expand_inputs(paths), out)
    flagged = sum(r["label"] for r in rows)
    typer.echo(f"{len(rows)} images scored against each other, {flagged} flagged as outliers of the batch; results "
               f"in {out / 'results.csv'}, report in {out / 'report.html'}")


class ExportFormat(str, Enum):
    onnx = "onnx"
    openvino = "openvino"


@app.command()
def export(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy image fit`."),
    format: ExportFormat = typer.Option(..., "--format", help="onnx (one .onnx file) or openvino (a folder)."),
    out: Path = typer.Option(..., "--out", help="The .onnx file, or the OpenVINO folder, to write."),
    int8: bool = typer.Option(False, "--int8", help="Quantise the backbone's convolutions to 8 bits (needs --calibration)."),
    calibration: list[Path] = typer.Option(None, "--calibration", help="Normal images or folders to calibrate --int8 on "
                                                                      "(e.g. the training images; repeatable)."),
    threads: int = THREADS,
):
    """One graph from the resized image to its score and map, for `normalcy.runtime`
    (`pip install normalcy[runtime]`: no torch), `normalcy image predict` and `normalcy serve`."""
    from normalcy.image.export import export as run_export
    from normalcy.image.workflow import expand_inputs

    detector = _load(model_dir, threads)
    images = expand_inputs(calibration) if calibration else None
    path = run_export(detector, format.value, out, int8, images)
    note = f", int8 calibrated on {len(images)} images" if int8 else ""
    typer.echo(f"exported {detector.name} to {path} ({format.value}{note}; threshold {detector.threshold_})")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder, or an exported model (.onnx file or OpenVINO folder)."),
    data: Path = typer.Option(..., "--data", help="Labelled data: MVTec layout or folder layout with anomalies."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    threads: int = THREADS,
):
    """Image AUROC, pixel AUROC, AUPRO and F1-max on a labelled test set, for a model folder or
    an exported model."""
    from normalcy.cli.common import echo_metrics
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate as run_evaluation
    from normalcy.runtime import ExportedModel

    detector = _load_scorer(model_dir, threads)
    metrics, _ = run_evaluation(detector, load_dataset(data))
    exported = isinstance(detector, ExportedModel)
    about = {"detector": detector.class_name, "exported": True} if exported else {"detector": type(detector).__name__}
    echo_metrics({"model": str(model_dir), **about, "data": str(data), **metrics}, json_path)


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
    data: Path = typer.Option(None, "--data", help="An MVTec-layout category, or a folder of categories."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one)."),
    backbone: Backbone = typer.Option(Backbone.lite0, "--backbone"),
    image_size: int = typer.Option(None, "--image-size", help="Working size (default: each detector's own: 256, "
                                                               "SimpleNet 288, DRAEM 128)."),
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
    elpv: Path = typer.Option(None, "--elpv", help="Instead of --data: the ELPV severity protocol on this folder (the "
                                                   "unzipped elpv-dataset wheel's elpv_dataset/data/)."),
    products: bool = typer.Option(False, "--products", help="One model for several products against separate ones: the "
                                                            "--data categories, ELPV mono and poly (with --elpv) and the "
                                                            "demo's discs; the first of --models (default patchcore)."),
    cap: int = typer.Option(None, "--cap", help="With --products: at most this many training and test images per "
                                                "product, drawn by seed 0 (default: all)."),
    discover: bool = typer.Option(False, "--discover", help="Defect-type discovery (PatchCore maps) on the --data "
                                                            "categories and the demo's discs: NMI and ARI."),
    shots: str = typer.Option(None, "--shots", help="Few-shot protocol: K[,K...] random training images, --seeds "
                                                    "seeds each, mean and std (first detector of --models, default "
                                                    "patchcore)."),
    seeds: int = typer.Option(5, "--seeds", help="With --shots: seeds (draws of K images) per K."),
    augment: str = typer.Option("auto", "--augment", help="With --shots: the few-shot augmentation (auto, rotate, mild, "
                                                         "none; see `image fit --augment`)."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Zero-shot protocol: every test image scored as one "
                                                              "batch against the others, no training image."),
):
    """Every detector on every category: metrics, fit seconds, images/s, peak memory; beside
    them the synthetic-defect AUROC, the peers' records and a per-defect table."""
    from normalcy.core.errors import DataError
    from normalcy.image.benchmark import run

    names = [m.strip() for m in models.split(",") if m.strip()]
    params = {"backbone": backbone.value, "image_size": image_size, "coreset_ratio": coreset_ratio,
              "threads": threads, "resize": resize.value if resize else None, "max_minutes": max_minutes}
    if products or discover:
        import tempfile

        from normalcy.image.tasks_benchmark import discovery, multi_product

        with tempfile.TemporaryDirectory(prefix="normalcy-bench-") as scratch:
            if products:
                json_out, md_out = multi_product(data, elpv, names, params, json_path, cap, scratch)
            else:
                json_out, md_out = discovery(data, params, json_path, scratch)
        typer.echo(md_out.read_text())
        typer.echo(f"wrote {json_out} and {md_out}")
        return
    if elpv is not None:
        from normalcy.image.elpv import benchmark as elpv_benchmark

        json_out, md_out, _ = elpv_benchmark(elpv, names or None, params, json_path)
        typer.echo(md_out.read_text())
        typer.echo(f"wrote {json_out} and {md_out}")
        return
    if data is None:
        raise DataError("--data is needed: an MVTec-layout category or a folder of them (or --elpv DIR)")
    if shots is not None or zero_shot:
        from normalcy.image import fewshot_benchmark

        if zero_shot:
            json_out, md_out, _ = fewshot_benchmark.run_zero_shot(data, params, json_path)
        else:
            ks = _shot_counts(shots)
            json_out, md_out, _ = fewshot_benchmark.run_shots(data, ks, params, json_path, (names or ["patchcore"])[0],
                                                              seeds, augment)
        typer.echo(md_out.read_text())
        typer.echo(f"wrote {json_out} and {md_out}")
        return
    peers = {}
    for spec in peer or []:
        library, sep, python = spec.partition("=")
        if not sep or not python.strip():
            raise DataError(f"--peer {spec!r} not understood; expected LIBRARY=PYTHON")
        peers[library.strip()] = python.strip()
    json_out, md_out, _ = run(data, names or None, params, json_path, peers, peer_arg or [], synthetic)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command("benchmark-export")
def benchmark_export(
    data: Path = typer.Option(..., "--data", help="One MVTec-layout category."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("patchcore", "--models", help="Comma-separated detectors that can be exported."),
    backends: str = typer.Option("onnx,openvino,onnx-int8", "--backends",
                                 help="Comma-separated: onnx, openvino, onnx-int8, openvino-int8 (torch always runs)."),
    threads: str = typer.Option("1,2", "--threads", help="Comma-separated thread counts to score at."),
    image_size: int = typer.Option(None, "--image-size", help="Working size (default: each detector's own: 256, "
                                                               "SimpleNet 288, DRAEM 128)."),
    max_minutes: float = typer.Option(None, "--max-minutes", help="Time budget of each trained detector's fit."),
    fit_threads: int = typer.Option(2, "--fit-threads", help="CPU threads for fitting and exporting."),
):
    """Torch against ONNX Runtime and OpenVINO (and INT8): images/s, latency p50/p99, peak
    memory, AUROC, and the largest score and map differences, on one category."""
    from normalcy.core.errors import DataError
    from normalcy.image.export_benchmark import run

    try:
        counts = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        raise DataError(f"--threads {threads!r}: expected comma-separated integers, e.g. 1,2") from None
    names = [m.strip() for m in models.split(",") if m.strip()]
    chosen = [b.strip() for b in backends.split(",") if b.strip()]
    params = {"image_size": image_size, "max_minutes": max_minutes, "threads": fit_threads}
    json_out, md_out, _ = run(data, names, chosen, counts, params, json_path)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def discover(
    model_dir: Path = typer.Argument(..., help="Model folder (a detector with maps, e.g. patchcore)."),
    paths: list[Path] = typer.Argument(..., help="Images or folders of images."),
    out: Path = typer.Option(..., "--out", help="Folder for regions.csv, crops/ and one cluster_K.html per cluster."),
    all_images: bool = typer.Option(False, "--all", help="Every image, not only those flagged at the model's threshold."),
    max_clusters: int = typer.Option(8, "--max-clusters", help="Largest number of defect types tried (2..this)."),
    threads: int = THREADS,
):
    """Which kinds of defect are there? Each flagged image's anomalous regions, cropped,
    embedded and clustered into defect types, with a contact sheet per cluster."""
    from normalcy.core.errors import DataError
    from normalcy.image.discover import discover as run_discovery
    from normalcy.image.workflow import expand_inputs

    if max_clusters < 2:
        raise DataError(f"--max-clusters must be at least 2, got {max_clusters}")
    detector = _load(model_dir, threads)
    regions = run_discovery(detector, expand_inputs(paths), out, not all_images, max_clusters=max_clusters)
    clusters = sorted({r.cluster for r in regions})
    sizes = ", ".join(f"{k}: {sum(r.cluster == k for r in regions)}" for k in clusters)
    typer.echo(f"{len(regions)} regions in {len({r.path for r in regions})} images, {len(clusters)} clusters "
               f"({sizes or 'none'}); regions in {out / 'regions.csv'}, contact sheets {out}/cluster_K.html")


@app.command()
def models():
    """List the image detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("image")


def _training_note(detector) -> str:
    """` (trained N steps in S s, stopped: WHY, kept step M, synthetic-defect validation X)`
    for trained detectors (FastFlow's figure is its held-out log-likelihood)."""
    training = getattr(detector, "training_", None)
    if not training:
        return ""
    figure = training.get("figure", "synthetic-defect validation")  # model files from before the name was kept
    best = "" if training["validation"] is None else f", {figure} {training['validation']:.4f}"
    return (f" (trained {training['steps']} steps in {training['seconds']:.0f} s, stopped: {training['stopped']}, "
            f"kept step {training['best_step']}{best})")


def _shot_counts(spec: str) -> list[int]:
    from normalcy.core.errors import DataError

    try:
        counts = [int(k) for k in spec.split(",") if k.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise DataError(f"--shots {spec!r} not understood; expected positive integers such as 1,2,4,8")
    return counts


def _fewshot_note(detector) -> str:
    """` (K shots + N augmented views, rotations on|off)` after a few-shot fit."""
    info = getattr(detector, "fewshot_", None)
    if not info:
        return ""
    why = "" if info["orientation_ratio"] is None else f" by the orientation check, ratio {info['orientation_ratio']:.2f}"
    return (f" ({info['shots']} shot{'s' * (info['shots'] != 1)} + {info['views']} augmented views, augment "
            f"{info['augment']}: rotations {'on' if info['rotate'] else 'off'}{why})")


def _build(name: str, params: list[str] | None, options: dict):
    """The detector `name` with the command's options it accepts (only PatchCore has a
    coreset ratio, GaussianAD no seed) and the --param values, which win; an option given
    to a detector without it is an error, a default (None, or the seed) is left out."""
    from normalcy.cli.common import build_detector
    from normalcy.core.registry import detector_class, parameter_names

    accepted = parameter_names(detector_class("image", name))
    options = {k: v for k, v in options.items() if k in accepted or (k != "seed" and v is not None)}
    return build_detector("image", name, params, options)


def _load_scorer(path: Path, threads: int | None):
    """A model folder's detector, or an exported model (scored without torch)."""
    from normalcy.runtime import is_exported

    if is_exported(path):
        from normalcy.runtime import load

        return load(path, threads)
    return _load(path, threads)


def _load(model_dir: Path, threads: int | None):
    from normalcy.core.threads import check_threads
    from normalcy.image.base import ImageDetector

    detector = ImageDetector.load(model_dir)
    detector.threads = check_threads(threads)
    return detector
