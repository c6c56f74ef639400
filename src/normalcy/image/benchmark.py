"""`normalcy image benchmark`: every detector on every MVTec-layout category under a folder.

Each (detector, category) pair runs in a fresh process so that its peak memory is its own.
Beside the real defects, every detector is also scored on a synthetic test set drawn on the
category's normal test images (`normalcy.image.synthetic`, SYNTHETIC_COUNT defects, seed 0):
how well the synthetic check stands in for real defects. Peers (`--peer anomalib=PYTHON`)
run in their own environment (`normalcy.image.peer_anomalib`) and their records, with
"library": "anomalib", join the same table. The Markdown also gets a per-defect table.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from normalcy.core.benchmark import write_atomic, write_results
from normalcy.core.errors import DataError

PACKAGES = ("torch", "faiss-cpu", "numpy", "scikit-learn", "scipy", "pillow")
COLUMNS = ["detector", "library", "dataset", "image_auroc", "pixel_auroc", "aupro", "image_f1_max",
           "pixel_f1_max", "synthetic_image_auroc", "synthetic_pixel_auroc", "fit_seconds", "fit_cpu_seconds",
           "predict_images_per_second", "peak_memory_mb", "n_train", "n_test"]
DEFECT_COLUMNS = ["detector", "library", "dataset", "defect", "n_images", "image_auroc", "pixel_auroc", "aupro"]
SYNTHETIC_COUNT = 100
PEERS = {"anomalib": "peer_anomalib.py"}


def categories(root: Path) -> list[Path]:
    """root itself when it is one category (has train/), else its subfolders that are."""
    if not root.is_dir():
        raise DataError(f"benchmark data {root} is not a directory")
    if (root / "train").is_dir():
        return [root]
    found = sorted(p for p in root.iterdir() if (p / "train").is_dir())
    if not found:
        raise DataError(f"no MVTec-layout category (a folder with train/) in {root}")
    return found


def run(root: str | Path, detectors: list[str] | None, params: dict, json_path: str | Path,
        peers: dict[str, str] | None = None, peer_args: list[str] | None = None,
        synthetic: int = SYNTHETIC_COUNT) -> tuple[Path, Path, list[dict]]:
    """Every detector named (default: every registered image detector) on every category, and
    each peer's (library -> its Python) records from `<json_path>.<library>.json`, which
    keeps them between runs (a peer's training can take hours)."""
    from normalcy.core.registry import detector_class
    from normalcy.core.registry import detectors as registered

    detectors = list(detectors or registered("image"))
    for name in detectors:
        detector_class("image", name)  # an unknown name fails here, before any run
    for library in peers or {}:
        if library not in PEERS:
            raise DataError(f"unknown peer {library!r}; expected one of {', '.join(PEERS)}")
    records = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="normalcy-bench-") as scratch:
        for category in categories(Path(root)):
            synthetic_set = _synthetic_set(category, Path(scratch), synthetic)
            for name in detectors:
                print(f"benchmark: {name} on {category.name} ...", file=sys.stderr, flush=True)
                pool = context.Pool(1)
                try:
                    records.append(pool.apply(_one, (str(category), name, params, synthetic_set)))
                finally:
                    pool.close()  # the worker exits normally, so its libraries clean up after themselves
                    pool.join()
            for library, python in (peers or {}).items():
                records.extend(_peer(library, python, category, Path(json_path), params, peer_args or []))
    json_out, md_out = write_results(records, json_path, PACKAGES, "Image benchmark", COLUMNS, params)
    write_atomic(md_out, md_out.read_text() + _defect_table(records))
    return json_out, md_out, records


def _synthetic_set(category: Path, scratch: Path, count: int) -> str | None:
    if not count:
        return None
    from normalcy.image.synthetic import write_test_set

    out = scratch / f"synthetic-{category.name}"
    print(f"benchmark: drawing {count} synthetic defects on {category.name} ...", file=sys.stderr, flush=True)
    write_test_set(category, out, count, "mix", seed=0)
    return str(out)


def _one(category: str, name: str, params: dict, synthetic_set: str | None) -> dict:
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate

    dataset = load_dataset(category)
    # Settings shared by the run (e.g. coreset_ratio) go to the detectors that take them.
    accepted = parameter_names(detector_class("image", name))
    detector = build("image", name, {k: v for k, v in params.items() if k in accepted and v is not None})
    cpu, start = _cpu(), time.perf_counter()
    detector.fit(dataset.train)
    fit_seconds, fit_cpu = time.perf_counter() - start, _cpu() - cpu
    metrics, _ = evaluate(detector, dataset)
    synthetic = evaluate(detector, load_dataset(synthetic_set))[0] if synthetic_set else {}
    training = getattr(detector, "training_", None) or {}
    return {
        "detector": name,
        "library": "normalcy",
        "dataset": Path(category).name,
        **{k: metrics[k] for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")},
        "synthetic_image_auroc": synthetic.get("image_auroc"),
        "synthetic_pixel_auroc": synthetic.get("pixel_auroc"),
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu,
        "predict_images_per_second": metrics["images_per_second"],
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "n_train": len(dataset.train),
        "n_test": metrics["n_images"],
        **({"training": training} if training else {}),
        "per_defect": metrics["per_defect"],
    }


def _peer(library: str, python: str, category: Path, json_path: Path, params: dict, extra: list[str]) -> list[dict]:
    """The peer's records for this category: run what is not yet in its cache file."""
    cache = json_path.with_name(f"{json_path.stem}.{library}.json")
    script = Path(__file__).with_name(PEERS[library])
    textures = _textures(category, json_path.with_name(f"{json_path.stem}.textures-{category.name}"))
    args = [python, str(script), str(category), str(cache), "--threads", str(params.get("threads") or 2),
            "--textures", str(textures), *extra]
    print(f"benchmark: {library} on {category.name} (cached in {cache}) ...", file=sys.stderr, flush=True)
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode:
        raise DataError(f"peer {library} failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    records = [r for r in json.loads(cache.read_text()) if r.get("dataset") == category.name]
    return [{k: v for k, v in r.items() if k not in ("history", "stderr_tail")} for r in records]


def _textures(category: Path, folder: Path, n: int = 40) -> Path:
    """The texture images a peer's DRAEM draws defects from: normalcy's own source (the
    category's normal training images under `synthetic.strong_transform`), written once."""
    if folder.is_dir():
        return folder
    import numpy as np
    from PIL import Image

    from normalcy.image.datasets import load_dataset
    from normalcy.image.io import read_image
    from normalcy.image.synthetic import strong_transform

    rng = np.random.default_rng(0)
    train = load_dataset(category).train
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    for i, k in enumerate(rng.choice(len(train), min(n, len(train)), replace=False)):
        Image.fromarray(strong_transform(read_image(train[k]), rng)).save(staging / f"{i:03d}.png")
    staging.rename(folder)
    return folder


def _defect_table(records: list[dict]) -> str:
    rows = [{"detector": r["detector"], "library": r.get("library"), "dataset": r["dataset"], "defect": defect, **fig}
            for r in records for defect, fig in (r.get("per_defect") or {}).items()]
    if not rows:
        return ""
    lines = ["", "## Per defect kind (each against the normal test images)", "",
             "| " + " | ".join(DEFECT_COLUMNS) + " |", "|" + "---|" * len(DEFECT_COLUMNS)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in DEFECT_COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
