"""What the trained image detectors (SimpleNet, FastFlow, DRAEM) share, on the training engine
(`normalcy.core.training`).

`fit` reads the training images once into memory (N x S x S x 3 bytes: 39 MB for 200 images
at 256 px), holds out `validation_fraction` of them, draws three synthetic defects
(`normalcy.image.synthetic`: Perlin, CutPaste, scar, placed on the part) on each held-out
image, and hands the rest to the method's `_train`. The figure early stopping watches needs no
real defect: on the held-out images and their synthetic twins it is the mean of the image
AUROC and the pixel AUROC (maps and masks at VALIDATION_SIZE); a method may watch another
figure that needs no defect (FastFlow: its held-out likelihood; `validation_figure` names it).
The best state by that figure is kept; Ctrl-C keeps it too (see `normalcy.core.training`).
The step budget (`max_steps`) and the optional time budget (`max_minutes`, counted from the
start of `fit`, feature extraction included) bound the run; without a time budget a run is
deterministic (same seed, same thread count, same machine: same model).

A method implements `_train(train, validation, seconds_left)` (set its fitted state from the
uint8 training images), `_score_encoded` as any image detector, and `_net_state` /
`_load_net`: the torch module whose state dict the model file keeps, and how to rebuild it.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.core.threads import thread_limit
from normalcy.core.training import TrainResult
from normalcy.image import synthetic
from normalcy.image.backbone import to_tensor
from normalcy.image.base import ImageDetector, _as_items, is_int, load_square

VALIDATION_SIZE = 64  # maps and masks are compared at this size during validation
DEFECTS_PER_IMAGE = 3  # synthetic twins of each held-out image: one of each kind
MIN_VALIDATION = 2  # held-out images, at least
MIN_VALIDATE_EVERY = 10  # steps between validations, however small the training set


@dataclass
class ValidationSet:
    """Held-out normal images and their synthetic twins: `images` (uint8, normals first),
    `labels` (1 = synthetic defect) and `masks` (VALIDATION_SIZE squared)."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def figure(self, scores: np.ndarray, maps: torch.Tensor) -> float:
        """Mean of image AUROC (scores) and pixel AUROC (maps, N x h x w, any h and w)."""
        size = VALIDATION_SIZE
        maps = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
        image = roc_auc_score(self.labels, scores)
        pixel = roc_auc_score(self.masks.ravel(), maps.numpy().ravel()) if self.masks.any() else image
        return float((image + pixel) / 2)


class TrainedImageDetector(ImageDetector):
    """Base of the trained image detectors. Parameters, beside the shared image ones:

    - max_steps: the step budget (each method's default allows the paper's length).
    - max_minutes: a time budget for the whole fit, feature extraction included (default None:
      none); training stops at the first step past it, keeping the best state.
    - patience: validations without improvement before training stops (default 5; None: never).
    - validation_fraction: share of the training images held out for the validation figure
      (default 0.1, at least 2 images).
    - seed: seed of the split, the synthetic defects and the networks (default 0).
    """

    # Set by each method: steps between validations, as a function of the training set size.
    steps_per_epoch_images: int = 8
    # What the method's validation figure is (the training record and the CLI name it).
    validation_figure: str = "synthetic-defect validation"

    def fit(self, X, y=None) -> "TrainedImageDetector":
        self._check_params()
        start = time.monotonic()
        items = _as_items(X)
        if len(items) < MIN_VALIDATION + 1:
            raise DataError(f"{type(self).__name__} needs at least {MIN_VALIDATION + 1} training images "
                            f"({MIN_VALIDATION} are held out for validation), got {len(items)}")
        with thread_limit(self.threads):
            images = self._load(items)
            rng = np.random.default_rng(self.seed)
            order = rng.permutation(len(images))
            n_val = min(len(images) - 1, max(MIN_VALIDATION, round(self.validation_fraction * len(images))))
            train, held = images[np.sort(order[n_val:])], images[np.sort(order[:n_val])]
            validation = self._validation_set(train, held, rng)
            left = None if self.max_minutes is None else self.max_minutes * 60 - (time.monotonic() - start)
            result = self._train(train, validation, left)
        self.training_ = {"steps": result.steps, "best_step": result.best_step, "validation": result.best,
                          "stopped": result.stopped, "seconds": round(time.monotonic() - start, 3),
                          "figure": self.validation_figure}
        return self

    def _check_params(self) -> None:
        super()._check_params()
        if not (is_int(self.max_steps) and self.max_steps >= 1):
            raise DataError(f"max_steps must be a positive integer, got {self.max_steps!r}")
        m = self.max_minutes
        if m is not None and not (isinstance(m, (int, float)) and not isinstance(m, bool) and 0 < m < float("inf")):
            raise DataError(f"max_minutes must be a positive number or None, got {m!r}")
        if self.patience is not None and not (is_int(self.patience) and self.patience >= 1):
            raise DataError(f"patience must be a positive integer or None, got {self.patience!r}")
        f = self.validation_fraction
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1):
            raise DataError(f"validation_fraction must be a number in (0, 1), got {f!r}")
        if not is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")

    # --- hooks ----------------------------------------------------------------------------
    @abstractmethod
    def _train(self, train: np.ndarray, validation: ValidationSet, seconds_left: float | None) -> TrainResult:
        """Train on the uint8 N x S x S x 3 images, set the fitted state, return the result."""

    @abstractmethod
    def _net_state(self) -> tuple[torch.nn.Module, dict[str, np.ndarray]]:
        """The trained module and any other arrays the model file keeps."""

    @abstractmethod
    def _load_net(self, arrays: dict[str, np.ndarray], meta: dict) -> torch.nn.Module:
        """Rebuild the module (untrained) for a model file's arrays and set the other state."""

    def _fit_encoded(self, batches, n_images):  # fit is the method's own: never called
        raise NotImplementedError

    # --- shared machinery -------------------------------------------------------------------
    def _engine_args(self, n_train: int, seconds_left: float | None) -> dict:
        """The `train` settings every method passes: budgets, patience, one validation per pass
        over the training images (at least MIN_VALIDATE_EVERY steps apart), seed, threads."""
        every = max(MIN_VALIDATE_EVERY, -(-n_train // self.steps_per_epoch_images))
        return {"max_steps": self.max_steps, "validate_every": every, "patience": self.patience,
                "max_seconds": None if seconds_left is None else max(seconds_left, 1e-3),
                "seed": self.seed, "threads": self.threads, "desc": f"{self.name}: training"}

    def _load(self, items: list) -> np.ndarray:
        """Every training image as one uint8 N x S x S x 3 array."""
        chunks = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        out = []
        for chunk in progress(chunks, desc=f"{self.name}: reading", unit="batch"):
            out.extend(load_square(chunk, self.image_size, self.resize)[0])
        return np.stack(out)

    def _validation_set(self, train: np.ndarray, held: np.ndarray, rng: np.random.Generator) -> ValidationSet:
        region = synthetic.foreground(train)
        anomalous, masks = synthetic.anomalies(held, DEFECTS_PER_IMAGE, rng, synthetic.Textures(list(train)), region)
        small = F.adaptive_avg_pool2d(torch.from_numpy(masks[:, None].astype(np.float32)), VALIDATION_SIZE)[:, 0]
        all_masks = np.concatenate([np.zeros((len(held), VALIDATION_SIZE, VALIDATION_SIZE), bool),
                                    small.numpy() >= 0.5])
        labels = np.r_[np.zeros(len(held)), np.ones(len(anomalous))].astype(int)
        return ValidationSet(np.concatenate([held, anomalous]), labels, all_masks)

    def _encode_all(self, images: np.ndarray, what: str):
        """The method's `_encode` of uint8 images, batch_size at a time, concatenated (a tensor,
        or a list of tensors for a method that encodes to several)."""
        parts = []
        for i in progress(range(0, len(images), self.batch_size), desc=f"{self.name}: {what}", unit="batch"):
            parts.append(self._encode(to_tensor(images[i : i + self.batch_size])))
        if isinstance(parts[0], torch.Tensor):
            return torch.cat(parts)
        return [torch.cat(level) for level in zip(*parts)]

    def _get_state(self):
        net, extra = self._net_state()
        # Scalars (batch norm's step counts) are kept as 1 x 1: the model file stores arrays of
        # at least one dimension.
        arrays = {f"net.{k}": v.detach().numpy().reshape(tuple(v.shape) or (1,)) for k, v in net.state_dict().items()}
        return {**arrays, **extra}, {"training": self.training_}

    def _set_state(self, arrays, meta):
        training = meta.get("training")
        if not isinstance(training, dict):
            raise ModelFileError(f"{type(self).__name__} model state has no training record")
        net = self._load_net(arrays, meta)
        expected = net.state_dict()
        unknown = sorted(k for k in arrays if k.startswith("net.") and k[4:] not in expected)
        if unknown:
            raise ModelFileError(f"{type(self).__name__} model has unknown network arrays: {', '.join(unknown[:5])}")
        expect_arrays(arrays, {f"net.{k}": tuple(v.shape) or (1,) for k, v in expected.items()})
        try:
            net.load_state_dict({k: torch.from_numpy(np.array(arrays[f"net.{k}"], dtype=v.numpy().dtype)
                                                     .reshape(v.shape)) for k, v in expected.items()}, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{type(self).__name__} network weights do not fit: {exc}") from exc
        net.eval()
        self.training_ = training
