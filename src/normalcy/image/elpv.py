"""The ELPV solar-cell set (Buerhop-Lutz et al. 2018; Deitsch et al. 2019) read where it lies.

2,624 grey 300 x 300 electroluminescence crops of solar cells, each with a defect
probability (0, 1/3, 2/3 or 1: the grade) and a cell type (mono or poly). It installs from
the package index as a wheel (`pip download --no-deps elpv-dataset -d DIR`, then unzip it);
the folder to give is the wheel's `elpv_dataset/data/`, holding `labels.csv` (path, grade,
type, whitespace-separated) and `images/`. Nothing is downloaded or copied here.

`load_elpv(folder)` lists the cells; `split(cells, type, seed)` gives the protocol of issue 15:
train on TRAIN_SHARE of the grade-0 cells of one type, drawn by seed, test on the rest of
that type (every graded cell and the other grade-0 ones). The images are greyscale:
`normalcy.image.io.read_image` turns them into RGB like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError

LABELS = "labels.csv"
TYPES = ("mono", "poly")
GRADES = (0.0, 1 / 3, 2 / 3, 1.0)
TRAIN_SHARE = 0.7


@dataclass(frozen=True)
class ElpvCells:
    """Parallel lists: each cell's image path, grade (one of GRADES) and type (mono or poly)."""

    paths: list[Path]
    grades: np.ndarray
    types: list[str]


@dataclass(frozen=True)
class ElpvSplit:
    train: list[Path]
    test: list[Path]
    test_grades: np.ndarray


def load_elpv(folder: str | Path) -> ElpvCells:
    """The cells listed in `folder/labels.csv`, with grades snapped to 0, 1/3, 2/3, 1."""
    folder = Path(folder)
    labels = folder / LABELS
    if not labels.is_file():
        raise DataError(f"{folder} is not the ELPV data folder: {labels} is missing (expected the unzipped "
                        "wheel's elpv_dataset/data/, holding labels.csv and images/)")
    paths, grades, types = [], [], []
    for n, line in enumerate(labels.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 3:
            raise DataError(f"{labels} line {n}: expected 'path probability type', got {line.strip()!r}")
        path, prob, kind = fields
        try:
            grade = float(prob)
        except ValueError:
            raise DataError(f"{labels} line {n}: probability {prob!r} is not a number") from None
        nearest = min(GRADES, key=lambda g: abs(g - grade))
        if abs(nearest - grade) > 1e-3:
            raise DataError(f"{labels} line {n}: probability {prob} is not one of 0, 1/3, 2/3, 1")
        if kind not in TYPES:
            raise DataError(f"{labels} line {n}: type {kind!r} is not one of {', '.join(TYPES)}")
        image = folder / path
        if not image.is_file():
            raise DataError(f"{labels} line {n}: image {image} does not exist")
        paths.append(image)
        grades.append(nearest)
        types.append(kind)
    if not paths:
        raise DataError(f"{labels} lists no cells")
    return ElpvCells(paths, np.array(grades), types)


def split(cells: ElpvCells, cell_type: str, seed: int = 0, share: float = TRAIN_SHARE) -> ElpvSplit:
    """Train on `share` of the grade-0 cells of `cell_type` (drawn by `seed`), test on the
    remaining cells of that type."""
    if cell_type not in TYPES:
        raise DataError(f"cell type must be one of {', '.join(TYPES)}, got {cell_type!r}")
    idx = np.array([i for i, t in enumerate(cells.types) if t == cell_type])
    if not len(idx):
        raise DataError(f"no {cell_type} cells in the ELPV labels")
    good = idx[cells.grades[idx] == 0]
    n_train = int(round(share * len(good)))
    if n_train < 2 or n_train == len(good):
        raise DataError(f"{len(good)} grade-0 {cell_type} cells are too few to split {share:.0%} for training")
    train = set(np.random.default_rng(seed).choice(good, n_train, replace=False).tolist())
    test = [i for i in idx if i not in train]
    return ElpvSplit([cells.paths[i] for i in sorted(train)], [cells.paths[i] for i in test], cells.grades[test])


COLUMNS = ["detector", "dataset", "auroc_top_vs_0", "auroc_any_vs_0", "spearman", "auroc_0_vs_1/3",
           "auroc_1/3_vs_2/3", "auroc_2/3_vs_1", "fit_seconds", "fit_cpu_seconds", "score_seconds", "n_train", "n_test"]


def benchmark(folder: str | Path, detectors: list[str] | None, params: dict, json_path: str | Path,
              seed: int = 0) -> tuple[Path, Path, list[dict]]:
    """Every detector named (default: every registered image detector) on each cell type by
    `split`: the severity figures (`normalcy.image.severity`) of its test scores, with fit and
    scoring times; JSON + Markdown as every benchmark."""
    import time

    from normalcy.core.benchmark import write_results
    from normalcy.core.registry import build, detector_class, parameter_names
    from normalcy.core.registry import detectors as registered
    from normalcy.image.benchmark import PACKAGES, _cpu
    from normalcy.image.severity import severity_figures

    cells = load_elpv(folder)
    names = list(detectors or registered("image"))
    for name in names:
        detector_class("image", name)
    records = []
    for cell_type in TYPES:
        part = split(cells, cell_type, seed)
        for name in names:
            accepted = parameter_names(detector_class("image", name))
            detector = build("image", name, {k: v for k, v in params.items() if k in accepted and v is not None})
            cpu, start = _cpu(), time.perf_counter()
            detector.fit(part.train)
            fit_seconds, fit_cpu = time.perf_counter() - start, _cpu() - cpu
            start = time.perf_counter()
            scores = detector.decision_function(part.test)
            score_seconds = time.perf_counter() - start
            fig = severity_figures(scores, part.test_grades)
            adjacent = {f"auroc_{_grade(a['low'])}_vs_{_grade(a['high'])}": a["auroc"] for a in fig["adjacent"]}
            records.append({"detector": name, "dataset": f"elpv-{cell_type}", **{k: fig[k] for k in (
                "auroc_top_vs_0", "auroc_any_vs_0", "spearman")}, **adjacent, "adjacent": fig["adjacent"],
                "fit_seconds": fit_seconds, "fit_cpu_seconds": fit_cpu, "score_seconds": score_seconds,
                "n_train": len(part.train), "n_test": len(part.test)})
    settings = {**params, "protocol": f"train on {TRAIN_SHARE:.0%} of the grade-0 cells of each type (seed {seed})"}
    json_out, md_out = write_results(records, json_path, PACKAGES, "ELPV severity benchmark", COLUMNS, settings)
    return json_out, md_out, records


def _grade(value: float) -> str:
    return {0.0: "0", 1.0: "1"}.get(round(value, 6), f"{round(value * 3)}/3")
