"""`normalcy image benchmark-export`: a fitted detector against its exports (ONNX Runtime,
OpenVINO, and their INT8 forms) on one MVTec-layout category: images/s, latency per image
(p50, p99), peak memory, AUROC, and the largest score and map differences from torch.

Each (backend, threads) pair is scored in a fresh process, so its peak memory is its own; the
exported models run there with torch made unimportable, as in a runtime install. Every pass
reads the image files (decoding and resizing included), as `normalcy image predict` does:
throughput over the whole test set in batches of the model's batch_size, latency one image
per call after one warm-up call; and the model alone ("model_images_per_second"): the same
images decoded and resized beforehand, so only the backbone, scoring and maps are timed.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError

PACKAGES = ("torch", "onnx", "onnxruntime", "openvino", "numpy", "pillow")
COLUMNS = ["detector", "backend", "threads", "images_per_second", "speedup_vs_torch", "model_images_per_second",
           "model_speedup_vs_torch", "latency_p50_ms",
           "latency_p99_ms", "peak_memory_mb", "image_auroc", "pixel_auroc", "max_score_rel_diff", "max_score_abs_diff",
           "max_map_abs_diff", "max_map_rel_diff", "label_differences", "cpu_seconds"]
BACKENDS = ("onnx", "openvino", "onnx-int8", "openvino-int8")
# Prepended to an exported model's worker: `import torch` fails there, as without torch installed.
NO_TORCH = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "faiss"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, _NotInstalled())
"""


def run(data: str | Path, detectors: list[str], backends: list[str], threads: list[int], params: dict,
        json_path: str | Path) -> tuple[Path, Path, list[dict]]:
    """Fit each detector on `data` (threshold: 1% false alarms on held-out normals, the CLI's
    default), export it to every backend, and score the test set in each at each thread count."""
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.core.threshold import parse_threshold
    from normalcy.image.datasets import load_dataset
    from normalcy.image.export import export
    from normalcy.image.workflow import fit_model

    unknown = sorted(set(backends) - set(BACKENDS))
    if unknown:
        raise DataError(f"unknown backend(s) {', '.join(unknown)}; expected some of {', '.join(BACKENDS)}")
    dataset = load_dataset(data)
    samples = dataset.test
    paths = [str(s.path) for s in samples]
    labels = np.array([s.label for s in samples])
    records = []
    with tempfile.TemporaryDirectory(prefix="normalcy-export-bench-") as scratch:
        scratch = Path(scratch)
        for name in detectors:
            accepted = parameter_names(detector_class("image", name))
            detector = build("image", name, {k: v for k, v in params.items() if k in accepted and v is not None})
            print(f"benchmark-export: fitting {name} on {Path(data).name} ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            fit_model(data, detector, parse_threshold("fpr:0.01"))
            fit_seconds = time.perf_counter() - start
            folder = detector.save(scratch / f"{name}.model")
            models = {"torch": folder}
            for backend in backends:
                fmt, _, int8 = backend.partition("-")
                out = scratch / (f"{name}-{backend}.onnx" if fmt == "onnx" else f"{name}-{backend}")
                print(f"benchmark-export: exporting {name} to {backend} ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                export(detector, fmt, out, int8=bool(int8), calibration=list(dataset.train) if int8 else None)
                models[backend] = (out, time.perf_counter() - start)
            masks = _masks(samples, detector.image_size) if detector.explains else None
            reference = {}
            for n in threads:
                for backend, model in models.items():
                    path, export_seconds = (model, None) if backend == "torch" else model
                    print(f"benchmark-export: {name} {backend} at {n} thread(s) ...", file=sys.stderr, flush=True)
                    result = _measure(backend, Path(path), paths, n, scratch)
                    scores, maps = result.pop("scores"), result.pop("maps")
                    if backend == "torch":
                        reference[n] = (scores, maps, result["images_per_second"], result["model_images_per_second"])
                    ref_scores, ref_maps, ref_speed, ref_model_speed = reference[n]
                    threshold = detector.threshold_
                    records.append({
                        "detector": name, "backend": backend, "threads": n, **result,
                        "speedup_vs_torch": result["images_per_second"] / ref_speed,
                        "model_speedup_vs_torch": result["model_images_per_second"] / ref_model_speed,
                        "image_auroc": _auroc(labels, scores),
                        "pixel_auroc": _auroc(masks.ravel(), maps.ravel()) if masks is not None else None,
                        "max_score_rel_diff": float(np.max(np.abs(scores - ref_scores) / np.abs(ref_scores))),
                        # the relative figure alone misleads for signed scores near 0 (SimpleNet's)
                        "max_score_abs_diff": float(np.max(np.abs(scores - ref_scores))),
                        "max_map_abs_diff": float(np.abs(maps - ref_maps).max()) if maps is not None else None,
                        "max_map_rel_diff": (float(np.abs(maps - ref_maps).max() / np.abs(ref_maps).max())
                                             if maps is not None else None),
                        "label_differences": int(((scores >= threshold) != (ref_scores >= threshold)).sum()),
                        "fit_seconds": fit_seconds, "export_seconds": export_seconds, "threshold": threshold,
                        "n_test": len(paths),
                    })
    settings = {**params, "data": str(data), "backends": ",".join(backends), "threads": ",".join(map(str, threads))}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Image export benchmark", COLUMNS, settings)
    return json_out, md_out, records


def _measure(backend: str, path: Path, paths: list[str], threads: int, scratch: Path) -> dict:
    """Score `paths` in a fresh process (see the module's notes); its figures, scores and maps."""
    out = scratch / f"scores-{backend}-{threads}.npz"
    call = f"from normalcy.image.export_benchmark import worker; worker({backend!r}, {str(path)!r}, " \
           f"{json.dumps(paths)}, {threads}, {str(out)!r})"
    script = call if backend == "torch" else NO_TORCH + call
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    if done.returncode:
        raise DataError(f"benchmark worker for {backend} failed: {done.stderr.strip()[-800:]}")
    with np.load(out) as saved:
        figures = json.loads(str(saved["figures"]))
        figures["scores"] = saved["scores"]
        figures["maps"] = saved["maps"] if saved["maps"].ndim == 3 else None
    return figures


def worker(backend: str, path: str, paths: list[str], threads: int, out: str) -> None:
    """In the fresh process: load, warm up, time the passes, save scores and maps to `out`."""
    from normalcy.image.preprocess import scores_and_maps

    start = time.perf_counter()
    if backend == "torch":
        from normalcy.image.base import ImageDetector

        model = ImageDetector.load(path)
        model.threads = threads
    else:
        from normalcy.runtime import load

        model = load(path, threads)
    load_seconds = time.perf_counter() - start
    scores_and_maps(model, paths[:1])  # warm-up: the first call builds caches and kernels
    cpu, start = _cpu(), time.perf_counter()
    scores, maps = scores_and_maps(model, paths)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu() - cpu
    latency = []
    for p in paths:
        t = time.perf_counter()
        scores_and_maps(model, [p])
        latency.append(1000 * (time.perf_counter() - t))
    peak = _peak_memory_mb()
    # The model alone: the same images already decoded and resized to the working square.
    from normalcy.image.preprocess import load_square

    squares = np.stack(load_square(paths, model.image_size, "squash")[0])
    start = time.perf_counter()
    scores_and_maps(model, squares)
    model_seconds = time.perf_counter() - start
    figures = {"images_per_second": len(paths) / seconds, "seconds": seconds, "cpu_seconds": cpu_seconds,
               "model_images_per_second": len(paths) / model_seconds,
               "latency_p50_ms": float(np.percentile(latency, 50)), "latency_p99_ms": float(np.percentile(latency, 99)),
               "load_seconds": load_seconds, "peak_memory_mb": peak}
    np.savez(out, scores=scores, maps=maps if maps is not None else np.zeros(0), figures=json.dumps(figures))


def _masks(samples, size: int) -> np.ndarray:
    """Every test image's defect mask at the working size (normal images: all False)."""
    from normalcy.image.io import read_mask

    return np.stack([read_mask(s.mask_path, (size, size)) if s.mask_path is not None else np.zeros((size, size), bool)
                     for s in samples])


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else None


def _peak_memory_mb() -> float:
    """This process's peak resident memory since it started: VmHWM (ru_maxrss would carry the
    parent's peak, which exec does not reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
