"""EfficientAD (Batzner, Heckler, Koenig, "EfficientAD: Accurate Visual Anomaly Detection at
Millisecond-Level Latencies", WACV 2024).

A student patch description network (PDN: four or six plain convolutions, two average
poolings, a 33-pixel receptive field) learns to reproduce a frozen teacher's features on the
normal images; an autoencoder learns the same features through a 1 x 1 bottleneck, and a
second half of the student's output channels learns to predict the autoencoder's output.
Where the student fails to imitate the teacher, a patch is structurally anomalous; where the
student and the autoencoder disagree, something is logically wrong (a missing or misplaced
part), as the autoencoder sees the whole image. Losses, all from the paper:

- student: the hard-feature loss, the mean of the squared differences to the teacher at or
  above their 0.999 quantile, plus a penalty that keeps the student's output near zero on
  images unlike the training set;
- autoencoder: mean squared difference to the teacher's features of a colour-jittered
  training image (brightness, contrast or saturation by a factor in [0.8, 1.2]);
- the student's second half: mean squared difference to the autoencoder's output on the same
  jittered image.

Adam (learning rate 1e-4, weight decay 1e-5, divided by 10 at 95 % of the steps), one image a
step. The two maps, mean over channels of the squared differences, are normalised by their
0.9 and 0.995 quantiles on held-out normal images (q_a -> 0, q_b -> 0.1) and averaged; the
image score is the largest value. Sizes: "s" (PDN-S student) and "m" (PDN-M).

Departures, because the paper's teacher and penalty images are not available offline, and for
the CPU; what each costs is in docs/images.md:

- The teacher is not a PDN distilled from WideResNet-101 on ImageNet but the frozen
  ImageNet-pretrained EfficientNet-Lite patch features every image detector here uses
  (stride-8 and stride-16 stages, 3 x 3-averaged, 152 channels at lite0), normalised per
  channel on the training images as the paper normalises its teacher. So the student's
  output has that many channels (twice), not 384 (twice).
- The student's imitation loss is taken on the step's jittered image too (the paper takes it
  on the plain image and runs the student a third time): two student passes a step, not
  three. The teacher's features are therefore drawn per step, for the jittered image, and
  not stored: a forward pass of the backbone to its stride-16 stage, 1.1 % of a step's
  arithmetic at size s (0.64 of 58 GFLOP, torch's FLOP counter; the student is most of it).
- The student and the autoencoder see the image at half the working size (2 x 2 average), and
  the PDN and the decoder are padded (anomalib's `padding=True` variant) so that their output
  has exactly the teacher's stride-8 grid: at image_size 256 the student works on 128 pixels
  (a 66-pixel receptive field at 256) and the maps are 32 x 32 (the paper's 56 x 56). The
  autoencoder's bottleneck convolution takes the encoder's whole output (its kernel is
  image_size / 64: 4 at 256, the paper's 8 at its 256-pixel input) and the decoder's
  upsampling sizes scale with the input as in the paper.
- The penalty images are not ImageNet's but the training images under strong transforms
  (`normalcy.image.synthetic.strong_transform`: rotated, zoomed, three of nine colour
  transforms), a pool of PENALTY_POOL drawn once.
- Training is far shorter than the paper's 70 000 steps (max_steps, default 1000: set to fit
  in 20 minutes on two CPU threads; see docs/images.md for what it costs) and stops
  early on the synthetic-defect validation figure (`TrainedImageDetector`); the map
  quantiles are set on the held-out normal images of that split at each validation, so a
  kept state carries the quantiles of its own maps.
- Maps are Gaussian-smoothed as every image detector's here (sigma 4 px at 256).

The scoring path from a normalised image tensor to the patch map is plain torch, so it is
exported as one graph (`normalcy image export`, `_export_scores`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.training import seeded, train
from normalcy.image import synthetic
from normalcy.image.backbone import patch_features, to_tensor
from normalcy.image.trainable import TrainedImageDetector

SIZES = ("s", "m")
HARD_QUANTILE = 0.999  # the hard-feature loss keeps the squared differences at or above it
Q_A, Q_B = 0.9, 0.995  # map normalisation: q_a -> 0, q_b -> 0.1
PENALTY_POOL = 64  # strongly transformed training images for the penalty term
JITTER = 0.2  # colour jitter factor in [1 - JITTER, 1 + JITTER]
IMAGES_PER_STEP = 1  # the paper's batch size
LR_DROP = 0.95  # learning rate / 10 at this share of max_steps


class EfficientAD(TrainedImageDetector):
    """EfficientAD: a student network imitating a frozen teacher, and an autoencoder for the
    global context; the combined imitation errors are the map.

    Parameters:

    - size: "s" (default: the PDN-S student) or "m" (PDN-M, about three times the work).
    - max_steps (default 1000), max_minutes (None), patience (5), validation_fraction (0.1),
      seed (0): training, as for every trained image detector (`TrainedImageDetector`).
    - image_size: the working size, a multiple of 64 (default 256).
    - backbone ("efficientnet-lite0": the teacher), batch_size (8), threads (None), weights
      (None) and resize ("squash"): as for every image detector (`ImageDetector`).
    """

    name = "efficientad"
    _fitted_attribute = "net_"
    steps_per_epoch_images = IMAGES_PER_STEP

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        image_size: int = 256,
        size: str = "s",
        max_steps: int = 1000,
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
        self.size = size
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.seed = seed

    def _check_params(self):
        super()._check_params()
        if self.size not in SIZES:
            raise DataError(f"size must be one of {', '.join(SIZES)}, got {self.size!r}")
        if self.image_size % 64:
            raise DataError(f"EfficientAD's image_size must be a multiple of 64, got {self.image_size}")

    def _encode(self, batch):
        return batch

    def _train(self, train_images, validation, seconds_left):
        rng = np.random.default_rng([self.seed, 1])
        n = len(train_images)
        # The teacher's channel mean and deviation on the training images, the paper's
        # normalisation; its features themselves are drawn per step, of the jittered image.
        count, total, squares = 0, 0.0, 0.0
        for i in range(0, n, self.batch_size):
            t = self._teacher_features(to_tensor(train_images[i : i + self.batch_size])).double()
            count += t.shape[0] * t.shape[2] * t.shape[3]
            total, squares = total + t.sum((0, 2, 3)), squares + t.pow(2).sum((0, 2, 3))
        mean = total / count
        std = (squares / count - mean.pow(2)).clamp_min(1e-12).sqrt()
        penalty = to_tensor(np.stack([synthetic.strong_transform(train_images[k], rng)
                                      for k in rng.integers(0, n, min(PENALTY_POOL, 4 * n))]))
        val = to_tensor(validation.images)
        c = len(mean)
        with seeded(self.seed):
            net = _build(self.size, c, self.image_size)
        net.mean.copy_(mean.float())
        net.std.copy_(std.float().clamp_min(1e-6))
        opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-5)
        drop = int(LR_DROP * self.max_steps)
        b = IMAGES_PER_STEP

        def step(i):
            if i == drop:
                for group in opt.param_groups:
                    group["lr"] *= 0.1
            jittered = to_tensor(_jitter(train_images[rng.integers(0, n, b)], rng))
            target = net.normalise(self._teacher_features(jittered)).clone()  # a leaf, not an inference tensor
            pick = penalty[rng.integers(0, len(penalty), b)]
            out = net.student(_half(torch.cat([jittered, pick])))
            d = (target - out[:b, :c]).pow(2)
            hard = d[d >= torch.quantile(d, HARD_QUANTILE)].mean()
            ae = net.autoencoder(_half(jittered))
            loss = hard + out[b:, :c].pow(2).mean() + (target - ae).pow(2).mean() + (ae - out[:b, c:]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        def validate():
            self.net_ = net
            maps = [net.raw_maps(self._teacher_features(x), _half(x)) for x in val.split(self.batch_size)]
            st, ae = (torch.cat(m) for m in zip(*maps))
            normal = torch.from_numpy(validation.labels == 0)
            net.set_quantiles(st[normal], ae[normal])
            patch = net.combine(st, ae)
            return validation.figure(patch.flatten(1).amax(1).numpy(), patch)

        result = train(net, step, validate=validate, **self._engine_args(n, seconds_left))
        self.net_ = net
        return result

    def _teacher_features(self, x: torch.Tensor) -> torch.Tensor:
        return patch_features(self.extractor, x)

    def _score_encoded(self, x):
        channels = self.net_.mean.shape[0]
        with torch.no_grad():
            t = self._teacher_features(x)
            if t.shape[1] != channels:
                raise ModelFileError(f"the model was trained on {channels} teacher channels but {self.backbone} "
                                     f"gives {t.shape[1]}")
            return self.net_.combine(*self.net_.raw_maps(t, _half(x)))

    def _export_scores(self, x):
        return self._score_encoded(x)  # torch operations only: traced as it is (normalcy.image.export)

    def _net_state(self):
        return self.net_, {}

    def _load_net(self, arrays, meta):
        expect_arrays(arrays, {"net.mean": (None,)})
        self.net_ = _build(self.size, arrays["net.mean"].shape[0], self.image_size)
        return self.net_


class _Net(torch.nn.Module):
    """The student, the autoencoder, and the buffers scoring needs: the teacher's channel
    mean and deviation, and the maps' normalising quantiles."""

    def __init__(self, student: torch.nn.Module, autoencoder: torch.nn.Module, channels: int):
        super().__init__()
        self.student, self.autoencoder = student, autoencoder
        self.register_buffer("mean", torch.zeros(channels))
        self.register_buffer("std", torch.ones(channels))
        # q_a and q_b of the student-teacher map, then of the autoencoder-student map.
        self.register_buffer("quantiles", torch.tensor([0.0, 1.0, 0.0, 1.0]))

    def normalise(self, teacher: torch.Tensor) -> torch.Tensor:
        return (teacher - self.mean[:, None, None]) / self.std[:, None, None]

    def raw_maps(self, teacher: torch.Tensor, half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The student-teacher and autoencoder-student maps (N x h x w) before normalisation."""
        c = self.mean.shape[0]
        s = self.student(half)
        ae = self.autoencoder(half)
        st_map = (self.normalise(teacher) - s[:, :c]).pow(2).mean(1)
        ae_map = (ae - s[:, c:]).pow(2).mean(1)
        return st_map, ae_map

    def set_quantiles(self, st_map: torch.Tensor, ae_map: torch.Tensor) -> None:
        q = torch.tensor([Q_A, Q_B])
        self.quantiles.copy_(torch.cat([torch.quantile(st_map.flatten(), q), torch.quantile(ae_map.flatten(), q)]))

    def combine(self, st_map: torch.Tensor, ae_map: torch.Tensor) -> torch.Tensor:
        q = self.quantiles
        st = 0.1 * (st_map - q[0]) / (q[1] - q[0]).clamp_min(1e-12)
        ae = 0.1 * (ae_map - q[2]) / (q[3] - q[2]).clamp_min(1e-12)
        return 0.5 * st + 0.5 * ae


def _pdn(size: str, out: int) -> torch.nn.Sequential:
    """The paper's patch description network, padded: N x 3 x s x s -> N x out x s/4 x s/4."""
    relu = torch.nn.ReLU
    if size == "s":
        layers = [torch.nn.Conv2d(3, 128, 4, padding=3), relu(), torch.nn.AvgPool2d(2, 2, padding=1),
                  torch.nn.Conv2d(128, 256, 4, padding=3), relu(), torch.nn.AvgPool2d(2, 2, padding=1),
                  torch.nn.Conv2d(256, 256, 3, padding=1), relu(), torch.nn.Conv2d(256, out, 4)]
    else:
        layers = [torch.nn.Conv2d(3, 256, 4, padding=3), relu(), torch.nn.AvgPool2d(2, 2, padding=1),
                  torch.nn.Conv2d(256, 512, 4, padding=3), relu(), torch.nn.AvgPool2d(2, 2, padding=1),
                  torch.nn.Conv2d(512, 512, 1), relu(), torch.nn.Conv2d(512, 512, 3, padding=1), relu(),
                  torch.nn.Conv2d(512, out, 4), relu(), torch.nn.Conv2d(out, out, 1)]
    return torch.nn.Sequential(*layers)


class _AutoEncoder(torch.nn.Module):
    """The paper's autoencoder: five stride-2 convolutions and one over the whole remaining
    grid down to 1 x 1 x 64, then eight convolutions between bilinear upsamplings (dropout
    0.2) back to the student's output grid."""

    def __init__(self, out: int, image_size: int):
        super().__init__()
        s = image_size // 2  # its input: the half-size image
        enc = [torch.nn.Conv2d(3, 32, 4, 2, 1), torch.nn.Conv2d(32, 32, 4, 2, 1), torch.nn.Conv2d(32, 64, 4, 2, 1),
               torch.nn.Conv2d(64, 64, 4, 2, 1), torch.nn.Conv2d(64, 64, 4, 2, 1)]
        self.encoder = torch.nn.ModuleList(enc)
        self.bottleneck = torch.nn.Conv2d(64, 64, s // 32)
        self.decoder = torch.nn.ModuleList([torch.nn.Conv2d(64, 64, 4, padding=2) for _ in range(6)])
        self.dropout = torch.nn.Dropout(0.2)
        self.head = torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(64, out, 3, padding=1))
        # The paper's upsampling sizes for its 256-pixel input (3, 8, 15, 32, 63, 127), scaled.
        self.sizes = [max(1, s // 64 - 1), s // 32, s // 16 - 1, s // 8, s // 4 - 1, s // 2 - 1]
        self.out_size = s // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.encoder:
            x = F.relu(conv(x))
        x = self.bottleneck(x)
        for conv, size in zip(self.decoder, self.sizes):
            x = F.interpolate(x, size=(size, size), mode="bilinear")
            x = self.dropout(F.relu(conv(x)))
        x = F.interpolate(x, size=(self.out_size, self.out_size), mode="bilinear")
        return self.head(x)


def _build(size: str, channels: int, image_size: int) -> _Net:
    return _Net(_pdn(size, 2 * channels), _AutoEncoder(channels, image_size), channels)


def _half(x: torch.Tensor) -> torch.Tensor:
    """What the student and the autoencoder see: the image at half the working size."""
    return F.avg_pool2d(x, 2)


def _jitter(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's autoencoder augmentation: per image, one of brightness, contrast or
    saturation, by a factor in [1 - JITTER, 1 + JITTER] (torchvision's ColorJitter blends)."""
    out = []
    for image in images:
        x = image.astype(np.float32)
        f = rng.uniform(1 - JITTER, 1 + JITTER)
        kind = rng.integers(3)
        grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if kind == 0:
            x = x * f
        elif kind == 1:
            x = grey.mean() + f * (x - grey.mean())
        else:
            x = grey[..., None] + f * (x - grey[..., None])
        out.append(np.clip(x, 0, 255).round().astype(np.uint8))
    return np.stack(out)
