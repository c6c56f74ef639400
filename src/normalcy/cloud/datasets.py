"""Point-cloud datasets in the layout `normalcy cloud synthesize` writes (MVTec-like):

    ROOT/train/good/*.ply               normal clouds to fit on (any supported format)
    ROOT/test/good/*, ROOT/test/<defect>/*
    ROOT/ground_truth/<defect>/<stem>.npy   uint8 per point, 1 = defect (optional), in the
                                            cloud file's point order

A folder of normal clouds without train/ is read as training data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from normalcy.cloud.io import is_cloud_file
from normalcy.core.errors import DataError


@dataclass(frozen=True)
class CloudSample:
    path: Path
    defect: str  # "good" or the defect kind (the folder name)
    truth_path: Path | None = None

    @property
    def label(self) -> int:
        return 0 if self.defect == "good" else 1


@dataclass
class CloudDataset:
    root: Path
    train: list[Path] = field(default_factory=list)
    test: list[CloudSample] = field(default_factory=list)


def cloud_files(folder: Path) -> list[Path]:
    """The cloud files directly in `folder`, sorted; hidden ones skipped."""
    return sorted(f for f in folder.iterdir() if f.is_file() and is_cloud_file(f) and not f.name.startswith("."))


def load_dataset(root: str | Path) -> CloudDataset:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"cloud dataset {root} is not a directory")
    dataset = CloudDataset(root)
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        dataset.train = cloud_files(root)
        if not dataset.train:
            raise DataError(f"{root} has no train/ or test/ folder and no point-cloud files")
        return dataset
    if (root / "train").is_dir():
        good = root / "train" / "good"
        dataset.train = cloud_files(good if good.is_dir() else root / "train")
    if (root / "test").is_dir():
        for folder in sorted(p for p in (root / "test").iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in cloud_files(folder):
                truth = root / "ground_truth" / folder.name / f"{path.stem}.npy"
                dataset.test.append(CloudSample(path, folder.name, truth if truth.is_file() else None))
    return dataset


def read_truth(sample: CloudSample, n_points: int) -> np.ndarray | None:
    """The per-point labels of a sample (all 0 for a good one), checked against its point
    count; None for a defective sample without ground truth."""
    if sample.label == 0:
        return np.zeros(n_points, dtype=bool)
    if sample.truth_path is None:
        return None
    try:
        truth = np.load(sample.truth_path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read ground truth {sample.truth_path}: {exc}") from None
    if truth.shape != (n_points,) or truth.dtype.kind not in "biu" or not np.isin(truth, (0, 1)).all():
        raise DataError(f"ground truth {sample.truth_path} must be {n_points} values of 0/1 (one per point of "
                        f"{sample.path.name}), got shape {truth.shape} of {truth.dtype}")
    return truth.astype(bool)
