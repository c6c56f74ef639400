"""`normalcy cloud synthesize | fit | predict | evaluate | benchmark | demo | models`."""

from __future__ import annotations

from pathlib import Path

import typer

from normalcy.cli.common import PARAM, model_help

app = typer.Typer(help="3D point clouds: a score per scanned part and one per point.", no_args_is_help=True)

THREADS = typer.Option(None, "--threads", help="CPU threads for neighbour search, torch, faiss and BLAS (default: all).")


@app.command()
def synthesize(
    out: Path = typer.Option(..., "--out", help="New folder for the dataset: <part>/train/good, test/<kind>, ground_truth/<kind>."),
    parts: str = typer.Option("cylinder,bracket,housing,shaft,flange", "--parts", help="Comma-separated part kinds."),
    defects: str = typer.Option("bulge,concavity,crack,hole,broken", "--defects", help="Comma-separated defect kinds."),
    n_train: int = typer.Option(20, "--train", help="Normal training clouds per part kind."),
    n_good: int = typer.Option(10, "--good", help="Normal test clouds per part kind."),
    n_per_defect: int = typer.Option(6, "--per-defect", help="Test clouds per defect kind and part kind."),
    n_points: int = typer.Option(20000, "--points", help="Points per cloud."),
    seed: int = typer.Option(0, "--seed"),
):
    """Write a synthetic dataset of scanned machined parts with defects and per-point truth."""
    from normalcy.cloud.synth import write_dataset
    from normalcy.core.errors import DataError

    if min(n_train, n_good, n_per_defect) < 0 or not 64 <= n_points <= 1_000_000:
        raise DataError("--train, --good and --per-defect must be >= 0 and --points in [64, 1000000]")
    split = lambda text: [w.strip() for w in text.split(",") if w.strip()]  # noqa: E731
    root = write_dataset(out, split(parts), split(defects), n_train, n_good, n_per_defect, n_points, seed)
    typer.echo(f"wrote a synthetic dataset to {root}")


@app.command()
def fit(
    data: Path = typer.Option(..., "--data", help="Training data: a part folder with train/good, or a folder of normal clouds."),
    out: Path = typer.Option(..., "--out", help="Model folder to write."),
    model: str = typer.Option(None, "--model", help=model_help("cloud", "fpfh")),
    param: list[str] = PARAM,
    n_points: int = typer.Option(None, "--points", help="Points sampled from each cloud to work on (default 2048)."),
    sampling: str = typer.Option(None, "--sampling", help="Which points to keep: fps, voxel or random."),
    threshold: str = typer.Option("fpr:0.01", "--threshold", help="fpr:RATE (held-out normals), f1 (needs --validation) or fixed:VALUE."),
    holdout: float = typer.Option(0.1, "--holdout", help="Fraction of normal clouds held out to set the threshold."),
    validation: Path = typer.Option(None, "--validation", help="Labelled dataset (with anomalies) to set the threshold on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split and of the detector."),
    threads: int = THREADS,
):
    """Learn what a normal part looks like from a folder of normal clouds."""
    import warnings

    from normalcy.cli.common import build_detector, echo_fit
    from normalcy.cloud import DEFAULT
    from normalcy.cloud.workflow import fit_model
    from normalcy.core.holdout import CalibrationWarning
    from normalcy.core.threshold import parse_threshold

    name = model or DEFAULT
    detector = build_detector("cloud", name, param, {"n_points": n_points, "sampling": sampling, "seed": seed,
                                                     "threads": threads})
    strategy = parse_threshold(threshold)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # echo_fit says it, once
        fit_model(data, detector, strategy, holdout, validation, seed)
    detector.save(out)
    echo_fit(detector, name, out, "clouds")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="Model folder written by `normalcy cloud fit`."),
    paths: list[Path] = typer.Argument(..., help="Cloud files or folders of them."),
    out: Path = typer.Option(..., "--out", help="Folder for results.csv and the scored PLY files."),
    views: bool = typer.Option(False, "--views", help="Also a multi-view PNG per cloud, coloured by score."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable clouds (listed in results.csv) instead of failing."),
    threads: int = THREADS,
):
    """Score clouds: results.csv with score and label, and each cloud as a PLY coloured by score."""
    from normalcy.cloud.workflow import expand_inputs, predict_to_folder

    detector = _load(model_dir, threads)
    rows = predict_to_folder(detector, expand_inputs(paths), out, "skip" if skip_bad else "raise", views)
    flagged = sum(1 for r in rows if r["label"] == 1)
    typer.echo(f"{len(rows)} clouds scored, {flagged} flagged anomalous; results in {out / 'results.csv'}")


@app.command()
def evaluate(
    model_dir: Path = typer.Argument(..., help="Model folder."),
    data: Path = typer.Option(..., "--data", help="Labelled data: a part folder with test/<kind> (and ground_truth/)."),
    json_path: Path = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    report: Path = typer.Option(None, "--report", help="Also write an HTML report with every test cloud, turnable."),
    threads: int = THREADS,
):
    """Object AUROC, point AUROC and AUPRO over points on a labelled test set."""
    from normalcy.cli.common import echo_metrics
    from normalcy.cloud.datasets import load_dataset
    from normalcy.cloud.demo import evaluation_report
    from normalcy.cloud.evaluate import evaluate as run_evaluation

    detector = _load(model_dir, threads)
    dataset = load_dataset(data)
    metrics, scores, per_point = run_evaluation(detector, dataset)
    echo_metrics({"model": str(model_dir), "detector": type(detector).__name__, "data": str(data), **metrics},
                 json_path)
    if report is not None:
        evaluation_report(report, f"normalcy cloud evaluate: {data}", detector, dataset, metrics, scores, per_point)
        typer.echo(f"report: {report}")


@app.command()
def benchmark(
    data: Path = typer.Option(..., "--data", help="A part folder, or a folder of them (as `synthesize` writes)."),
    json_path: Path = typer.Option(..., "--json", help="JSON results; a Markdown table is written beside it (.md)."),
    models: str = typer.Option("", "--models", help="Comma-separated detectors (default: every registered one)."),
    param: list[str] = PARAM,
    threads: int = typer.Option(2, "--threads", help="CPU threads per run."),
    jobs: int = typer.Option(1, "--jobs", help="(detector, part) runs at a time, each in its own process."),
):
    """Every detector on every part kind: object and point AUROC per defect kind, AUPRO, fit
    seconds, clouds/s, with the random and global-shape baselines."""
    from normalcy.cloud.benchmark import run
    from normalcy.core.registry import parse_params

    names = [m.strip() for m in models.split(",") if m.strip()]
    json_out, md_out, _ = run(data, names or None, {**parse_params(param), "threads": threads}, json_path, jobs)
    typer.echo(md_out.read_text())
    typer.echo(f"wrote {json_out} and {md_out}")


@app.command()
def demo(
    out: Path = typer.Option(Path("normalcy-cloud-demo"), "--out", help="Folder for the data, model and report."),
    threads: int = THREADS,
):
    """Make a small synthetic dataset of scanned parts with defects, fit, evaluate and write a report."""
    from normalcy.cloud import demo as cloud_demo
    from normalcy.core.progress import set_progress

    set_progress(None)
    typer.echo(f"synthesizing scanned brackets and fitting the FPFH memory bank in {out} ...")
    report, metrics = cloud_demo.run(out, threads)
    typer.echo(f"object AUROC {metrics['object_auroc']:.3f}  point AUROC {metrics['point_auroc']:.3f}  "
               f"AUPRO {metrics['point_aupro']:.3f} (synthetic data)")
    typer.echo(f"report: {report.resolve()}")


@app.command()
def models():
    """List the cloud detectors with their parameters (for --model and --param)."""
    from normalcy.cli.common import list_models

    list_models("cloud")


def _load(model_dir: Path, threads: int | None):
    from normalcy.cloud.base import CloudDetector
    from normalcy.core.threads import check_threads

    detector = CloudDetector.load(model_dir)
    detector.threads = check_threads(threads)
    return detector
