"""`normalcy image benchmark --shots K,... | --zero-shot`: the few-shot and zero-shot protocols.

Few-shot: for each K, SEEDS runs, each on K training images drawn by its seed
(`fewshot.pick_shots`) and fitted by `fewshot.fit_few_shot` with the default augmentation;
evaluated on the whole test set, whose backbone features are computed once per category and
scored by each run's detector as `explain` would (same steps, same figures). Records carry
the mean and standard deviation over the seeds (population standard deviation, ddof 0) and
every seed's figures.

Zero-shot: every test image of the category (normal and defective, no training image) is
scored as one batch by `zeroshot.BatchScorer`; the metrics are those of `evaluate`.

Both records note the load average before and after the run, since the machines they run on
are often shared.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from normalcy.core.benchmark import write_results
from normalcy.core.results import Explanation
from normalcy.core.threads import thread_limit
from normalcy.image.base import _crop
from normalcy.image.benchmark import PACKAGES, categories

SEEDS = 5
FIGURES = ("image_auroc", "pixel_auroc", "aupro")
SHOT_COLUMNS = ["detector", "dataset", "shots", "seeds", "augment", "image_auroc_mean", "image_auroc_std", "pixel_auroc_mean",
                "pixel_auroc_std", "aupro_mean", "aupro_std", "rotate_chosen", "fit_seconds_mean",
                "fit_cpu_seconds_mean", "load_before", "load_after"]
ZERO_COLUMNS = ["detector", "dataset", "n_images", "image_auroc", "pixel_auroc", "aupro", "image_f1_max",
                "seconds", "cpu_seconds", "load_before", "load_after"]


def run_shots(root: str | Path, shots: list[int], params: dict, json_path: str | Path, detector: str = "patchcore",
              seeds: int = SEEDS, augment: str = "auto") -> tuple[Path, Path, list[dict]]:
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.image.base import load_square
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate
    from normalcy.image.fewshot import fit_few_shot, pick_shots

    accepted = parameter_names(detector_class("image", detector))
    records = []
    for category in categories(Path(root)):
        dataset = load_dataset(category)
        test = None
        for k in shots:
            load_before, runs = os.getloadavg()[0], []
            for seed in range(seeds):
                print(f"benchmark: {detector} on {category.name}, {k} shots, seed {seed} ...", file=sys.stderr,
                      flush=True)
                settings = {p: v for p, v in params.items() if p in accepted and v is not None}
                model = build("image", detector, {**settings, **({"seed": seed} if "seed" in accepted else {})})
                cpu, start = _cpu(), time.perf_counter()
                images, _ = load_square(pick_shots(dataset.train, k, seed), model.image_size, model.resize)
                fit_few_shot(model, images, None, augment, seed)
                fit_seconds, fit_cpu = time.perf_counter() - start, _cpu() - cpu
                test = test or _encoded(model, dataset)
                metrics, _ = evaluate(_scored_by(model, *test), dataset)
                runs.append({"seed": seed, **{f: metrics[f] for f in FIGURES}, "rotate": model.fewshot_["rotate"],
                             "orientation_ratio": model.fewshot_["orientation_ratio"],
                             "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu})
            record = {"detector": detector, "dataset": category.name, "shots": k, "seeds": seeds, "augment": augment}
            for f in FIGURES:
                values = np.array([r[f] for r in runs if r[f] is not None], dtype=float)
                record[f"{f}_mean"] = float(values.mean()) if values.size else None
                record[f"{f}_std"] = float(values.std()) if values.size else None
            record.update({"rotate_chosen": sum(r["rotate"] for r in runs),
                           "fit_seconds_mean": float(np.mean([r["fit_seconds"] for r in runs])),
                           "fit_cpu_seconds_mean": float(np.mean([r["fit_cpu_seconds"] for r in runs])),
                           "load_before": load_before, "load_after": os.getloadavg()[0], "runs": runs})
            records.append(record)
    settings = {**params, "detector": detector, "shots": shots, "seeds": seeds, "augment": augment}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Image benchmark: few-shot", SHOT_COLUMNS,
                                     settings)
    return json_out, md_out, records


def run_zero_shot(root: str | Path, params: dict, json_path: str | Path) -> tuple[Path, Path, list[dict]]:
    from normalcy.image.datasets import load_dataset
    from normalcy.image.evaluate import evaluate
    from normalcy.image.zeroshot import BatchScorer

    scorer = BatchScorer(**{k: v for k, v in params.items() if k in _scorer_params() and v is not None})
    records = []
    for category in categories(Path(root)):
        dataset = load_dataset(category)
        paths = [s.path for s in dataset.test]
        print(f"benchmark: zero-shot on {category.name}'s {len(paths)} test images ...", file=sys.stderr, flush=True)
        load_before, cpu, start = os.getloadavg()[0], _cpu(), time.perf_counter()
        scores, maps = scorer.score(paths)
        seconds, cpu_seconds = time.perf_counter() - start, _cpu() - cpu
        metrics, _ = evaluate(_Scored(paths, scores, maps), dataset)
        records.append({"detector": "zero-shot (mutual scoring)", "dataset": category.name, "n_images": len(paths),
                        **{k: metrics[k] for k in (*FIGURES, "image_f1_max")}, "seconds": seconds,
                        "cpu_seconds": cpu_seconds, "load_before": load_before, "load_after": os.getloadavg()[0],
                        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                        "per_defect": metrics["per_defect"]})
    settings = {k: getattr(scorer, k) for k in _scorer_params()}
    json_out, md_out = write_results(records, json_path, PACKAGES, "Image benchmark: zero-shot batch scoring",
                                     ZERO_COLUMNS, settings)
    return json_out, md_out, records


def _encoded(model, dataset) -> tuple[list, list, list]:
    """The test images' paths, encoded batches and boxes: the same for every run of a
    category, so they are computed once (the detector's own reading and backbone)."""
    paths = [s.path for s in dataset.test]
    with thread_limit(model.threads):
        batches = list(model._batches(paths, "test features"))
    return paths, [f for f, _ in batches], [b for _, b in batches]


def _scored_by(model, paths, features, boxes) -> "_Scored":
    """What `model.explain(paths)` gives, from the encoded batches: the base class's own steps."""
    scores, maps = [], []
    with thread_limit(model.threads):
        for feats, box in zip(features, boxes):
            out = model._score_encoded(feats)
            scores.extend(model._image_score(_crop(p, b, model.image_size)) for p, b in zip(out, box))
            maps.append(model._smooth(out, box))
    return _Scored(paths, np.array(scores, dtype=np.float64), np.concatenate(maps))


class _Scored:
    """Scores and maps computed for a whole batch, handed to `evaluate` as a detector would
    give them, chunk by chunk."""

    explains = True
    threshold_ = None

    def __init__(self, paths, scores, maps):
        self._at = {str(p): i for i, p in enumerate(paths)}
        self._scores, self._maps = scores, maps

    def explain(self, paths) -> Explanation:
        rows = [self._at[str(p)] for p in paths]
        return Explanation(self._scores[rows], localization=self._maps[rows])


def _scorer_params() -> tuple[str, ...]:
    return ("share", "backbone", "image_size", "resize", "batch_size", "threads", "weights")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
