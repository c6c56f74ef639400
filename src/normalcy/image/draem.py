"""DRAEM (Zavrtanik, Kristan, Skocaj, "DRAEM - A discriminatively trained reconstruction
embedding for surface anomaly detection", ICCV 2021).

Two networks trained together on normal images, half of them with a synthetic Perlin defect
(`normalcy.image.synthetic`, the paper's recipe): a reconstructive autoencoder learns to
return the defect-free image (loss L2 + 1 - SSIM), and a discriminative U-Net, given the
image and its reconstruction, learns the defect's mask (focal loss, gamma 2). The map is the
discriminative network's defect probability; the image score is the largest value of the map
averaged over 21 x 21 pixels (at 256 px). Adam, 8 images a step; the learning rate drops to a
fifth at 80 % and again at 90 % of the budget, as the paper's does at 80 % and 90 % of its epochs.

Departures, for a CPU:

- Network widths are scaled down: the reconstructive network's base width is `width`
  (default 32; the paper's 128) and the discriminative network's width / 2 (the paper's 64):
  about 16 times less work a step. The layout (5 reconstructive levels without skips,
  6 discriminative levels with skips) is the paper's.
- Images are 128 x 128 by default (the paper's 256 is four times the work); maps come back
  at that size, as every detector's come back at its image_size.
- The budget is `max_steps` (default 1000, about 25 minutes here) or `max_minutes`,
  whichever runs out first, not 700 epochs (about 17,500 steps); the learning-rate drops
  come at 80 % and 90 % of it. With 6 % of the paper's steps the learning rate starts at
  3e-4 (the paper's 1e-4 was still far from done at the end of a 28-minute budget). The
  synthetic-defect validation figure (`TrainedImageDetector`) picks the state kept, but
  does not stop training early by default (`patience` None): at the starting learning rate
  it swings by up to 0.1 between passes, and on MVTec AD bottle a patience of 10 passes
  stopped training at step 720, before the drops that settle it. No random rotation of the
  normal images.
- Defect textures are the normal images themselves under strong transforms, or a folder
  (`textures`), as the DTD set the paper used does not download here; defects land on the
  part (foreground-aware placement).
- Maps are Gaussian-smoothed as every image detector's here (sigma 4 px at 256).

DRAEM learns from pixels, so it takes no backbone; image_size must be a multiple of 32 (the
discriminative network halves the image five times).
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from normalcy.core.errors import DataError
from normalcy.core.training import seeded, train
from normalcy.image import synthetic
from normalcy.image.backbone import to_tensor
from normalcy.image.base import is_int
from normalcy.image.trainable import TrainedImageDetector

IMAGES_PER_STEP = 8
DEFECT_SHARE = 0.5  # of training images that get a synthetic defect, as in the paper
POOL = 21  # the image score's averaging window at 256 px
LEARNING_RATE = 3e-4
LR_DROPS = (0.8, 0.9)  # shares of the budget where the learning rate drops to a fifth


class DRAEM(TrainedImageDetector):
    """DRAEM: reconstruct the defect-free image, then segment what differs.

    Parameters:

    - width: base width of the reconstructive network; the discriminative one has half
      (default 32; the paper's 128 and 64).
    - textures: a folder of images to fill synthetic defects with (default None: the normal
      images under strong transforms).
    - max_steps (default 1000), max_minutes (None), patience (None), validation_fraction
      (0.1), seed (0): training, as for every trained image detector (`TrainedImageDetector`).
    - image_size: the working size, a multiple of 32 (default 128).
    - batch_size (8), threads (None) and resize ("squash"): as for every image detector
      (`ImageDetector`).
    """

    name = "draem"
    _fitted_attribute = "net_"
    steps_per_epoch_images = IMAGES_PER_STEP

    def __init__(
        self,
        image_size: int = 128,
        width: int = 32,
        textures: str | None = None,
        max_steps: int = 1000,
        max_minutes: float | None = None,
        patience: int | None = None,
        validation_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 8,
        threads: int | None = None,
        resize: str = "squash",
    ):
        self.image_size = image_size
        self.width = width
        self.textures = textures
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.batch_size = batch_size
        self.threads = threads
        self.resize = resize

    def _check_params(self):
        super()._check_params()
        if self.image_size % 32:
            raise DataError(f"DRAEM's image_size must be a multiple of 32, got {self.image_size}")
        if not (is_int(self.width) and 2 <= self.width <= 256 and self.width % 2 == 0):
            raise DataError(f"width must be an even integer in [2, 256], got {self.width!r}")
        if self.textures is not None and not isinstance(self.textures, str):
            raise DataError(f"textures must be a folder path (a str) or None, got {self.textures!r}")

    def _encode(self, batch):
        return batch

    def _image_score(self, patch):
        k = max(1, round(POOL * self.image_size / 256)) | 1
        pooled = F.avg_pool2d(patch[None, None], k, stride=1, padding=k // 2, count_include_pad=False)
        return float(pooled.max())

    def _train(self, train_images, validation, seconds_left):
        rng = np.random.default_rng([self.seed, 1])
        textures = (synthetic.Textures.from_folder(self.textures) if self.textures is not None
                    else synthetic.Textures(list(train_images)))
        region = synthetic.foreground(train_images)
        val = to_tensor(validation.images)
        with seeded(self.seed):
            net = _build(self.width)
        opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
        n = len(train_images)
        start, seconds = time.monotonic(), None if seconds_left is None else max(seconds_left, 1e-3)

        def step(i):
            spent = max(i / self.max_steps, 0 if seconds is None else (time.monotonic() - start) / seconds)
            for group in opt.param_groups:
                group["lr"] = LEARNING_RATE * 0.2 ** sum(spent >= share for share in LR_DROPS)
            clean = train_images[rng.integers(0, n, min(IMAGES_PER_STEP, n))]
            seen, masks = clean.copy(), np.zeros(clean.shape[:3], dtype=np.float32)
            for k in range(len(clean)):
                if rng.random() < DEFECT_SHARE:
                    seen[k], mask = synthetic.defect(clean[k], "perlin", rng, textures, region)
                    masks[k] = mask
            x, target = _nhwc(to_tensor(seen)), _nhwc(to_tensor(clean))
            recon = net["reconstructive"](x)
            logits = net["discriminative"](torch.cat([recon, x], 1))
            loss = (F.mse_loss(recon, target) + 1 - _ssim((recon + 1) / 2, (target + 1) / 2)
                    + _focal(logits, torch.from_numpy(masks)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        def validate():
            self.net_ = net
            maps = torch.cat([self._score_encoded(val[i : i + 16]) for i in range(0, len(val), 16)])
            return validation.figure(np.array([self._image_score(m) for m in maps]), maps)

        result = train(net, step, validate=validate, **self._engine_args(n, seconds_left))
        self.net_ = net
        return result

    def _score_encoded(self, x):
        x = _nhwc(x)
        with torch.no_grad():
            recon = self.net_["reconstructive"](x)
            return torch.softmax(self.net_["discriminative"](torch.cat([recon, x], 1)), 1)[:, 1]

    def _export_scores(self, x):
        return self._score_encoded(x)  # torch operations only: traced as it is

    def _export_image_score(self, maps):
        """`_image_score` of a batch of maps (N x h x w -> N), for the exported graph."""
        k = max(1, round(POOL * self.image_size / 256)) | 1
        return F.avg_pool2d(maps[:, None], k, stride=1, padding=k // 2, count_include_pad=False).flatten(1).amax(1)

    def _net_state(self):
        return self.net_, {}

    def _load_net(self, arrays, meta):
        self.net_ = _build(self.width)
        return self.net_


def _block(cin: int, cout: int) -> torch.nn.Sequential:
    """Two 3x3 convolutions, each with batch norm and ReLU."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True),
        torch.nn.Conv2d(cout, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True),
    )


def _up(cin: int, cout: int) -> torch.nn.Sequential:
    """Bilinear x2 upsampling, then a 3x3 convolution with batch norm and ReLU."""
    return torch.nn.Sequential(
        torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        torch.nn.Conv2d(cin, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True),
    )


def _decoder_block(cin: int, mid: int, cout: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(
        torch.nn.Conv2d(cin, mid, 3, padding=1), torch.nn.BatchNorm2d(mid), torch.nn.ReLU(inplace=True),
        torch.nn.Conv2d(mid, cout, 3, padding=1), torch.nn.BatchNorm2d(cout), torch.nn.ReLU(inplace=True),
    )


class _Reconstructive(torch.nn.Module):
    """The paper's reconstructive subnetwork: 5 encoder levels, a decoder without skips."""

    def __init__(self, w: int):
        super().__init__()
        self.encoder = torch.nn.ModuleList([_block(3, w), _block(w, 2 * w), _block(2 * w, 4 * w),
                                            _block(4 * w, 8 * w), _block(8 * w, 8 * w)])
        self.decoder = torch.nn.Sequential(
            _up(8 * w, 8 * w), _decoder_block(8 * w, 8 * w, 4 * w),
            _up(4 * w, 4 * w), _decoder_block(4 * w, 4 * w, 2 * w),
            _up(2 * w, 2 * w), _decoder_block(2 * w, 2 * w, w),
            _up(w, w), _decoder_block(w, w, w),
            torch.nn.Conv2d(w, 3, 3, padding=1),
        )

    def forward(self, x):
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
        return self.decoder(x)


class _Discriminative(torch.nn.Module):
    """The paper's discriminative subnetwork: a U-Net of 6 levels on (reconstruction, image)."""

    def __init__(self, w: int):
        super().__init__()
        widths = [w, 2 * w, 4 * w, 8 * w, 8 * w, 8 * w]
        self.encoder = torch.nn.ModuleList(_block(cin, cout) for cin, cout in zip([6, *widths[:-1]], widths))
        ups = [(8 * w, 8 * w), (8 * w, 4 * w), (4 * w, 2 * w), (2 * w, w), (w, w)]
        self.ups = torch.nn.ModuleList(_up(cin, cout) for cin, cout in ups)
        skips = widths[-2::-1]  # 8w, 8w, 4w, 2w, w
        self.blocks = torch.nn.ModuleList(_decoder_block(cout + skip, cout, cout) for (_, cout), skip in zip(ups, skips))
        self.out = torch.nn.Conv2d(w, 2, 3, padding=1)

    def forward(self, x):
        levels = []
        for i, block in enumerate(self.encoder):
            x = block(F.max_pool2d(x, 2) if i else x)
            levels.append(x)
        for up, block, skip in zip(self.ups, self.blocks, levels[-2::-1]):
            x = block(torch.cat([up(x), skip], 1))
        return self.out(x)


def _build(width: int) -> torch.nn.ModuleDict:
    """Both networks, channels-last in memory: oneDNN's convolutions run about 1.6 times
    faster so on a CPU (measured, a training step at 128 px and width 32)."""
    net = torch.nn.ModuleDict({"reconstructive": _Reconstructive(width), "discriminative": _Discriminative(width // 2)})
    return net.to(memory_format=torch.channels_last)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of images in [0, 1] (Gaussian window, as the paper's loss)."""
    g = torch.exp(-((torch.arange(window) - window // 2) ** 2) / (2 * sigma**2))
    g = (g / g.sum())[:, None] * (g / g.sum())[None, :]
    kernel = g.expand(a.shape[1], 1, window, window).contiguous()

    def blur(t):
        return F.conv2d(t, kernel, padding=window // 2, groups=a.shape[1])

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean()


def _focal(logits: torch.Tensor, mask: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) of the two-class softmax against the defect mask."""
    log_p = torch.log_softmax(logits, 1)
    target = mask.round().long()[:, None]
    log_pt = log_p.gather(1, target)[:, 0]
    return (-(1 - log_pt.exp()) ** gamma * log_pt).mean()
