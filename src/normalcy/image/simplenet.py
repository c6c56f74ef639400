"""SimpleNet (Liu, Zhou, Liu, Zheng, "SimpleNet: A Simple Network for Image Anomaly Detection
and Localization", CVPR 2023).

Frozen pretrained patch features pass a feature adaptor (one fully connected layer); anomalous
features are made by adding Gaussian noise to adapted normal ones; a discriminator (a 2-layer
MLP) learns to tell them apart with the truncated L1 loss (margin 0.5). A test patch's score
is minus the discriminator's output; the image score is the largest patch score. Adam, with
the paper's learning rates (1e-4 adaptor, 2e-4 discriminator) and weight decay (1e-5).

Departures, each for the CPU or for the shared detector design:

- Features are the locally aware patch features every image detector here uses (the
  EfficientNet-Lite stride-8 and stride-16 stages, 3x3-averaged, 152 values at lite0) instead
  of WideResNet-50's projected to 1536, at the paper's 288 x 288 (a 36 x 36 grid; the other
  detectors here work at 256; the whole image is resized, not a 288 crop of 329). Of 256,
  288 and 320 px (and 256 px with a stride-4 stage added), 288 gave the best
  synthetic-defect validation figure on MVTec AD bottle's training images (0.978 against
  0.962-0.969). The features are computed once for the whole training set, not every
  epoch, and standardised per channel (training mean and deviation), so the noise scale
  `noise_std` is in units of each channel's deviation (the paper's 0.015 is in WideResNet
  units). Its default, 0.5, was chosen by the synthetic-defect validation figure alone (no
  real defect) on MVTec AD bottle's training images (at 256 px) after 240 steps: 0.1 0.946,
  0.25 0.962, 0.5 0.963 (reached 0.95 a pass sooner), 1.0 0.954.
- The discriminator's hidden layer has `hidden` units (default 256; the paper's 1024 is for
  1536 inputs).
- A step draws its patches at random from the whole training set (as many as 8 images have)
  rather than taking 8 whole images, so a step sees more images' worth of variety.
- Training stops early on the synthetic-defect validation figure (`TrainedImageDetector`),
  not after a fixed 160 epochs; the paper picks its epoch on the test set.
"""

from __future__ import annotations

import numpy as np
import torch

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.training import seeded, train
from normalcy.image.base import is_int
from normalcy.image.trainable import TrainedImageDetector

IMAGES_PER_STEP = 8  # the paper's batch, in patches: 8 images' worth
MARGIN = 0.5  # the truncated L1 loss's margin


class SimpleNet(TrainedImageDetector):
    """SimpleNet: a discriminator trained against noise-perturbed adapted patch features.

    Parameters:

    - noise_std: the Gaussian noise that makes anomalous features, in units of each feature
      channel's deviation on the training images (default 0.5).
    - hidden: hidden units of the discriminator (default 256).
    - max_steps (default 4000: about 160 passes over 200 images, the paper's length),
      max_minutes (None), patience (5), validation_fraction (0.1), seed (0): training, as for
      every trained image detector (`TrainedImageDetector`).
    - image_size: the working size (default 288, the paper's).
    - backbone ("efficientnet-lite0"), batch_size (8), threads (None),
      weights (None) and resize ("squash"): as for every image detector (`ImageDetector`).
    """

    name = "simplenet"
    _fitted_attribute = "net_"
    steps_per_epoch_images = IMAGES_PER_STEP

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 288,
        noise_std: float = 0.5,
        hidden: int = 256,
        max_steps: int = 4000,
        max_minutes: float | None = None,
        patience: int | None = 5,
        validation_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 8,
        threads: int | None = None,
        weights: str | None = None,
        resize: str = "squash",
    ):
        super().__init__(backbone, image_size, batch_size, threads, weights, resize)
        self.noise_std = noise_std
        self.hidden = hidden
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _check_params(self):
        super()._check_params()
        s = self.noise_std
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s < float("inf")):
            raise DataError(f"noise_std must be a positive number, got {s!r}")
        if not (is_int(self.hidden) and self.hidden >= 1):
            raise DataError(f"hidden must be a positive integer, got {self.hidden!r}")

    def _train(self, train_images, validation, seconds_left):
        rows = _rows(self._encode_all(train_images, "features"))
        val_feats = self._encode_all(validation.images, "validation features")
        self.mean_ = rows.mean(0)
        self.std_ = rows.std(0).clamp_min(1e-6)
        rows = (rows - self.mean_) / self.std_
        with seeded(self.seed):
            net = _build(rows.shape[1], self.hidden)
        opt = torch.optim.Adam([{"params": net["adaptor"].parameters(), "lr": 1e-4},
                                {"params": net["discriminator"].parameters(), "lr": 2e-4}], weight_decay=1e-5)
        per_step = IMAGES_PER_STEP * val_feats.shape[-2] * val_feats.shape[-1]

        def step(i):
            batch = rows[torch.randint(0, len(rows), (per_step,))]
            true = net["adaptor"](batch)
            fake = true + self.noise_std * torch.randn_like(true)
            out = net["discriminator"](torch.cat([true, fake]))[:, 0]
            loss = (MARGIN - out[:per_step]).clamp_min(0).mean() + (out[per_step:] + MARGIN).clamp_min(0).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        def validate():
            self.net_ = net
            patch = self._score_encoded(val_feats)
            return validation.figure(patch.flatten(1).amax(1).numpy(), patch)

        result = train(net, step, validate=validate, **self._engine_args(len(train_images), seconds_left))
        self.net_ = net
        return result

    def _score_encoded(self, features):
        n, c, h, w = features.shape
        if c != len(self.mean_):
            raise ModelFileError(f"the model was trained on {len(self.mean_)} feature channels but {self.backbone} "
                                 f"gives {c}")
        with torch.no_grad():
            x = (_rows(features) - self.mean_) / self.std_
            return -self.net_["discriminator"](self.net_["adaptor"](x))[:, 0].reshape(n, h, w)

    def _export_scores(self, features):
        return self._score_encoded(features)  # torch operations only: traced as it is

    def _net_state(self):
        return self.net_, {"mean": self.mean_.numpy(), "std": self.std_.numpy()}

    def _load_net(self, arrays, meta):
        from normalcy.core.detector import expect_arrays

        expect_arrays(arrays, {"mean": (None,)})
        c = len(arrays["mean"])
        expect_arrays(arrays, {"std": (c,)})
        if not (arrays["std"] > 0).all():
            raise ModelFileError("SimpleNet feature deviations must be positive")
        self.mean_ = torch.from_numpy(arrays["mean"].astype(np.float32))
        self.std_ = torch.from_numpy(arrays["std"].astype(np.float32))
        self.net_ = _build(c, self.hidden)
        return self.net_


def _build(channels: int, hidden: int) -> torch.nn.ModuleDict:
    """The adaptor (one linear layer) and the discriminator (linear, batch norm, leaky ReLU,
    linear), Xavier-initialised as in the paper's code."""
    adaptor = torch.nn.Linear(channels, channels)
    discriminator = torch.nn.Sequential(
        torch.nn.Linear(channels, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.LeakyReLU(0.2),
        torch.nn.Linear(hidden, 1, bias=False),
    )
    for module in (adaptor, discriminator[0], discriminator[3]):
        torch.nn.init.xavier_normal_(module.weight)
    return torch.nn.ModuleDict({"adaptor": adaptor, "discriminator": discriminator})


def _rows(features: torch.Tensor) -> torch.Tensor:
    """N x C x h x w -> (N*h*w) x C."""
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
