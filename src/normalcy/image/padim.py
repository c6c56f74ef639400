"""PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR 2020).

One multivariate Gaussian per patch position of the feature grid, fitted in a single pass
over the normal images; a test patch's score is its Mahalanobis distance to the Gaussian of
its position. The random channel subset of the paper is optional (`n_features`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.image.base import ImageDetector, is_int


class PaDiM(ImageDetector):
    """PaDiM: Mahalanobis distance of each patch to a Gaussian fitted at its grid position.

    Parameters:

    - n_features: how many feature channels to keep, chosen at random as in the paper
      (default None: all of them).
    - regularization: added to each covariance's diagonal so it can be inverted (default
      0.01; must be > 0).
    - seed: seed of the channel subset (default 0).
    - backbone ("efficientnet-lite0"), image_size (256), batch_size (8), threads (None),
      weights (None) and resize ("squash"): as for every image detector (`ImageDetector`).
    """

    name = "padim"
    _fitted_attribute = "mean_"

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        n_features: int | None = None,
        regularization: float = 0.01,
        seed: int = 0,
        batch_size: int = 8,
        threads: int | None = None,
        weights: str | None = None,
        resize: str = "squash",
    ):
        super().__init__(backbone, image_size, batch_size, threads, weights, resize)
        self.n_features = n_features
        self.regularization = regularization
        self.seed = seed

    def _check_params(self):
        super()._check_params()
        if self.n_features is not None and not (is_int(self.n_features) and self.n_features >= 1):
            raise DataError(f"n_features must be a positive integer or None, got {self.n_features!r}")
        reg = self.regularization
        if not (isinstance(reg, (int, float)) and not isinstance(reg, bool) and math.isfinite(reg) and reg > 0):
            raise DataError(f"regularization must be a finite number > 0, got {reg!r}")
        if not is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")

    def _fit_encoded(self, batches, n_images):
        if n_images < 2:
            raise DataError("PaDiM needs at least 2 training images to estimate a covariance")
        total = outer = None
        count = 0
        for feats in batches:
            x = self._select(feats).flatten(2).permute(2, 0, 1).double()  # positions x N x C
            if total is None:
                total = torch.zeros(x.shape[0], x.shape[2], dtype=torch.float64)
                outer = torch.zeros(x.shape[0], x.shape[2], x.shape[2], dtype=torch.float64)
            total += x.sum(1)
            outer += x.transpose(1, 2) @ x
            count += x.shape[1]
        mean = total / count
        cov = (outer - count * mean[:, :, None] * mean[:, None, :]) / (count - 1)
        cov += self.regularization * torch.eye(cov.shape[-1], dtype=torch.float64)
        self.mean_ = mean.float().numpy()
        # numpy's batched inverse: torch 2.13's CPU batched inverse fails in MKL (DLASWP).
        self.precision_ = np.linalg.inv(cov.numpy()).astype(np.float32)
        self.grid_ = np.asarray(feats.shape[-2:])

    def _score_encoded(self, features):
        x = self._select(features)
        n, c, h, w = x.shape
        if (h, w) != tuple(self.grid_) or c != self.mean_.shape[1]:
            raise ModelFileError(
                f"features {c} x {h} x {w} do not match the fitted {self.mean_.shape[1]} x "
                f"{self.grid_[0]} x {self.grid_[1]}; was the model saved with another backbone or size?"
            )
        delta = x.flatten(2).permute(2, 0, 1) - torch.from_numpy(self.mean_)[:, None, :]  # P x N x C
        # A batched matrix product, not a three-operand einsum: OpenVINO expands that einsum into a
        # P x N x C x C product (2.6 GB at bottle's size).
        d2 = (torch.bmm(delta, torch.from_numpy(self.precision_)) * delta).sum(2)
        return d2.clamp_min(0).sqrt().T.reshape(n, h, w)

    def _export_scores(self, features):
        return self._score_encoded(features)  # torch operations only: traced as it is

    def _select(self, feats: torch.Tensor) -> torch.Tensor:
        if self.n_features is None:
            return feats
        if not 1 <= self.n_features <= feats.shape[1]:
            raise DataError(f"n_features must be in [1, {feats.shape[1]}], got {self.n_features}")
        order = torch.randperm(feats.shape[1], generator=torch.Generator().manual_seed(self.seed))
        return feats[:, order[: self.n_features].sort().values]

    def _get_state(self):
        return {"mean": self.mean_, "precision": self.precision_, "grid": self.grid_}, {}

    def _set_state(self, arrays, meta):
        expect_arrays(arrays, {"mean": (None, None), "grid": (2,)})
        p, c = arrays["mean"].shape
        expect_arrays(arrays, {"precision": (p, c, c)})
        if int(np.prod(arrays["grid"])) != p:
            raise ModelFileError(f"grid {arrays['grid'].tolist()} does not match {p} positions")
        self.mean_ = arrays["mean"].astype(np.float32)
        self.precision_ = arrays["precision"].astype(np.float32)
        self.grid_ = arrays["grid"].astype(np.int64)
