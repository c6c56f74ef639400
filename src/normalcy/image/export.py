"""Exporting a fitted image detector to one ONNX graph (and from it to OpenVINO), for the light
runtime (`normalcy.runtime`, no torch).

The graph takes the images as the runtime reads them, ``images``: uint8 N x S x S x 3 (RGB,
already brought to the working square by `normalcy.image.preprocess.load_square`; N is free),
and does the rest: the backbone's normalisation ((x - 127) / 128), the backbone, the detector's
patch scores (PatchCore's nearest-neighbour search included: a matrix product and a minimum
over the memory bank), the image score, and the map's bilinear upsampling and Gaussian blur
(scipy's ``gaussian_filter``: 'reflect' edges, truncate 4.0, written as two 1-D convolutions
over a reflected index). Outputs: ``score`` (N), and for detectors with maps ``map``
(N x S x S, before the padding crop) and ``patch`` (N x h x w patch scores): under
``resize="pad"`` the runtime takes the image's region of both, as `ImageDetector._score` does.

What the runtime needs rides in the ONNX file's metadata (``metadata_props``, key
``normalcy``: JSON with the format version, the library version, detector name and
parameters, image size, resize mode, input layout and normalisation, threshold). An OpenVINO
export is a folder: ``model.xml`` + ``model.bin`` (FP32 weights) and that JSON as
``normalcy.json``.

A detector is exportable when it implements `_export_scores(features)`: its `_score_encoded`
in torch operations only (traceable; no numpy, faiss or Python branching on values). Its
`_encode` must be traceable too (the default patch features are); a detector that replaces
`_image_score` gives `_export_image_score(patch)` (N x h x w -> N) as well.

Legacy TorchScript exporter (``dynamo=False``, opset 17): the dynamo exporter also works but
needs onnxscript and takes ~15x longer. The backbone's TensorFlow 'same' padding is computed
from the input's size at run time, which this exporter records wrongly (measured: features off
by 25); export therefore replaces it with fixed padding for the working size.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from normalcy import __version__
from normalcy.core.errors import DataError
from normalcy.core.registry import class_path
from normalcy.core.threads import thread_limit
from normalcy.image.backbone import _MEAN, _STD, EfficientNetLiteFeatures
from normalcy.image.base import MAP_SIGMA, ImageDetector
from normalcy.image.preprocess import load_square
# Names the runtime reads back: one definition, in the torch-free runtime.
from normalcy.runtime.model import FORMAT, METADATA_KEY, OPENVINO_META, OPENVINO_MODEL, OUTPUTS

FORMATS = ("onnx", "openvino")
FORMAT_VERSION = 1
OPSET = 17
TRUNCATE = 4.0  # scipy's gaussian_filter default, as ImageDetector._smooth uses it


def export(detector: ImageDetector, fmt: str, out: str | Path, int8: bool = False,
           calibration: list | None = None) -> Path:
    """Write `detector` as an ONNX file or an OpenVINO folder at `out`; returns `out`.

    int8: quantise the backbone's convolutions to 8 bits (onnxruntime's static QDQ
    quantisation, per channel), calibrated on `calibration` (normal images: paths or arrays);
    the patch scoring, the search and the blur stay in float32.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not isinstance(detector, ImageDetector):
        raise DataError(f"only image detectors can be exported, got {type(detector).__name__}")
    detector._check_fitted(detector._fitted_attribute)
    if not hasattr(detector, "_export_scores"):
        raise DataError(f"{type(detector).__name__} cannot be exported: it has no ONNX form (`_export_scores`)")
    custom_score = type(detector)._image_score is not ImageDetector._image_score
    if custom_score and detector.resize == "pad":
        raise DataError(f"{type(detector).__name__} exports with resize='squash' only: its image score under "
                        "padding is not computed in the graph")
    if int8 and not calibration:
        raise DataError("int8 export needs calibration images (normal ones, e.g. the training images)")
    out = Path(out)
    if fmt == "onnx" and out.suffix.lower() != ".onnx":
        raise DataError(f"an ONNX export is one file ending in .onnx, got {out}")
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent if out.parent.exists() else None) as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        with thread_limit(detector.threads), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constants and shapes
            _write_onnx(detector, onnx_path)
            if int8:
                onnx_path = _quantize(onnx_path, detector, calibration)
        meta = metadata(detector, int8)
        if fmt == "onnx":
            import onnx

            model = onnx.load(str(onnx_path))
            entry = model.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, json.dumps(meta)
            staged = Path(tmp) / "final.onnx"
            onnx.save(model, str(staged))
            out.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, out)
        else:
            staged = Path(tmp) / "openvino"
            _write_openvino(onnx_path, staged, meta)
            _replace_folder(staged, out)
    return out


def metadata(detector: ImageDetector, int8: bool) -> dict:
    """What the runtime needs to read images and judge scores as the torch model does."""
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "normalcy_version": __version__,
        "model": detector.name, "class": class_path(type(detector)),
        "params": {k: v for k, v in detector.get_params(deep=False).items()},
        "image_size": detector.image_size, "resize": detector.resize, "batch_size": detector.batch_size,
        "input": {"name": "images", "dtype": "uint8", "layout": "NHWC", "channels": "RGB",
                  "normalisation": {"mean": _MEAN, "std": _STD, "in_graph": True}},
        "explains": bool(detector.explains), "threshold": detector.threshold_, "int8": int8, "opset": OPSET,
    }


class ExportGraph(torch.nn.Module):
    """uint8 N x S x S x 3 images -> score (N), and map (N x S x S) and patch (N x h x w)."""

    def __init__(self, detector: ImageDetector):
        super().__init__()
        self.detector = detector
        # The detector's networks (attributes that are modules) as submodules: the tracer keeps
        # their weights as the graph's initialisers (it refuses trainable tensors as constants).
        self.networks = torch.nn.ModuleList(v for v in vars(detector).values() if isinstance(v, torch.nn.Module))
        self.maps = detector.explains
        self.smooth = Smooth(detector.image_size)

    def forward(self, images: torch.Tensor):
        x = (images.permute(0, 3, 1, 2).float() - _MEAN) / _STD
        out = self.detector._export_scores(self.detector._encode(x))
        if not self.maps:
            return out.float()
        image_score = getattr(self.detector, "_export_image_score", None)
        score = image_score(out) if image_score is not None else out.flatten(1).amax(1)
        return score.float(), self.smooth(out.float()), out.float()


class Smooth(torch.nn.Module):
    """`ImageDetector._smooth` before the padding crop: bilinear upsampling to S x S, then
    scipy's gaussian_filter (sigma MAP_SIGMA * S / 256, truncate 4, 'reflect' edges)."""

    def __init__(self, size: int):
        super().__init__()
        sigma = MAP_SIGMA * size / 256
        radius = int(TRUNCATE * sigma + 0.5)
        x = np.arange(-radius, radius + 1)
        kernel = np.exp(-0.5 / sigma**2 * x**2)
        self.size = size
        self.register_buffer("kernel", torch.from_numpy(kernel / kernel.sum()).float())
        self.register_buffer("index", torch.from_numpy(reflect_index(size, radius)))

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        k = len(self.kernel)
        up = F.interpolate(patch[:, None], size=(self.size, self.size), mode="bilinear", align_corners=False)
        up = F.conv2d(up[:, :, self.index], self.kernel.view(1, 1, k, 1))
        up = F.conv2d(up[:, :, :, self.index], self.kernel.view(1, 1, 1, k))
        return up[:, 0]


def reflect_index(size: int, radius: int) -> np.ndarray:
    """Indices of positions -radius .. size + radius - 1 under scipy's 'reflect' mode
    (d c b a | a b c d | d c b a), any radius."""
    j = np.arange(-radius, size + radius) % (2 * size)
    return np.where(j >= size, 2 * size - 1 - j, j).astype(np.int64)


def fixed_padding(extractor: EfficientNetLiteFeatures, size: int) -> EfficientNetLiteFeatures:
    """A copy of the extractor whose 'same' convolutions pad by the amounts an input of
    size x size needs, fixed: the exporter records the run-time computation wrongly."""
    from efficientnet_lite_pytorch.utils import Conv2dDynamicSamePadding

    fixed = copy.deepcopy(extractor)
    shapes = {}
    convs = [m for m in fixed.modules() if isinstance(m, Conv2dDynamicSamePadding)]
    hooks = [m.register_forward_pre_hook(lambda m, args: shapes.__setitem__(m, tuple(args[0].shape[-2:])))
             for m in convs]
    with torch.no_grad():
        fixed(torch.zeros(1, 3, size, size), tuple(range(len(fixed.channels))))
    for h in hooks:
        h.remove()
    for parent in list(fixed.modules()):
        for name, conv in list(parent.named_children()):
            if isinstance(conv, Conv2dDynamicSamePadding):
                parent._modules[name] = _padded(conv, shapes[conv])
    return fixed.eval()


def _padded(conv, shape: tuple[int, int]) -> torch.nn.Sequential:
    """Conv2dDynamicSamePadding's padding for one input shape, then a plain convolution."""
    pads = []
    for i, s, k, d in zip(shape, conv.stride, conv.weight.shape[-2:], conv.dilation):
        total = max((math.ceil(i / s) - 1) * s + (k - 1) * d + 1 - i, 0)
        pads.append((total // 2, total - total // 2))
    plain = torch.nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                            conv.groups, conv.bias is not None)
    plain.load_state_dict(conv.state_dict())
    (top, bottom), (left, right) = pads
    return torch.nn.Sequential(torch.nn.ZeroPad2d((left, right, top, bottom)), plain).eval().requires_grad_(False)


def _write_onnx(detector: ImageDetector, path: Path) -> None:
    twin = copy.copy(detector)  # the caller's detector keeps the shared extractor
    if "backbone" in detector.get_params(deep=False):
        twin._fixed_extractor = fixed_padding(detector.extractor, detector.image_size)
    graph = ExportGraph(twin).eval()
    size = detector.image_size
    sample = torch.full((2, size, size, 3), 127, dtype=torch.uint8)
    outputs = list(OUTPUTS) if detector.explains else ["score"]
    with torch.no_grad():
        torch.onnx.export(graph, (sample,), str(path), dynamo=False, opset_version=OPSET, input_names=["images"],
                          output_names=outputs, dynamic_axes={name: {0: "n"} for name in ["images", *outputs]})


def _quantize(path: Path, detector: ImageDetector, calibration: list) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    size, resize = detector.image_size, detector.resize

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.chunks = iter([calibration[i : i + 8] for i in range(0, len(calibration), 8)])

        def get_next(self):
            chunk = next(self.chunks, None)
            return None if chunk is None else {"images": np.stack(load_square(chunk, size, resize)[0])}

    out = path.with_name("model.int8.onnx")
    root = logging.getLogger()  # the quantiser advises pre-processing on the root logger, every call
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_static(str(path), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


def _write_openvino(onnx_path: Path, folder: Path, meta: dict) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise DataError("OpenVINO export needs the openvino package: pip install 'normalcy[openvino]'") from None
    folder.mkdir()
    # FP32 weights: save_model's default FP16 compression would move scores past 1e-4.
    ov.save_model(ov.convert_model(str(onnx_path)), str(folder / OPENVINO_MODEL), compress_to_fp16=False)
    (folder / OPENVINO_META).write_text(json.dumps(meta, indent=2))


def _replace_folder(staged: Path, out: Path) -> None:
    """Move the finished folder into place; an existing export there is replaced only whole."""
    if out.exists() and not (out / OPENVINO_META).is_file():
        raise DataError(f"{out} exists and is not an OpenVINO export of normalcy; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    final = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    shutil.move(str(staged), final / "new")
    if out.exists():
        old = final / "old"
        os.replace(out, old)
    os.replace(final / "new", out)
    shutil.rmtree(final, ignore_errors=True)
