"""An exported image model, read by onnxruntime or OpenVINO (see `normalcy.image.export` for
the graph and its metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError, NotFittedError
from normalcy.core.results import Explanation, Prediction
from normalcy.core.threads import check_threads
from normalcy.image.preprocess import ImageInput, as_items, crop, load_square, upsample_map

FORMAT = "normalcy-image-export"
FORMAT_VERSION = 1  # the newest `normalcy.image.export.FORMAT_VERSION` this runtime reads
METADATA_KEY = "normalcy"
OPENVINO_MODEL = "model.xml"
OPENVINO_META = "normalcy.json"
OUTPUTS = ("score", "map", "patch")  # the export graph's outputs


def is_exported(path: str | Path) -> bool:
    """An ONNX file, or a folder holding an OpenVINO export (not a model folder)."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" or (path.is_dir() and (path / OPENVINO_META).is_file())


def load(path: str | Path, threads: int | None = None) -> "ExportedModel":
    """An exported model from an ONNX file (onnxruntime) or an OpenVINO folder (OpenVINO);
    `threads`: CPU threads of each call (default None: the runtime's own choice)."""
    path = Path(path)
    check_threads(threads)
    if not path.exists():
        raise DataError(f"exported model {path} not found")
    if path.is_dir():
        if not (path / OPENVINO_META).is_file() or not (path / OPENVINO_MODEL).is_file():
            raise DataError(f"{path} is not an OpenVINO export: expected {OPENVINO_MODEL} and {OPENVINO_META} in it")
        try:
            meta = json.loads((path / OPENVINO_META).read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read {path / OPENVINO_META}: {exc}") from None
        runner = _OpenVINO(path / OPENVINO_MODEL, threads)
    else:
        runner = _OnnxRuntime(path, threads)
        meta = runner.metadata(path)
    return ExportedModel(path, _check_meta(meta, path), runner, threads)


def _check_meta(meta, path: Path) -> dict:
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{path} is not a normalcy image export (no '{METADATA_KEY}' metadata of format {FORMAT})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"{path} is export format {version!r}; this normalcy reads up to {FORMAT_VERSION}: upgrade it")
    for key, kind in (("image_size", int), ("resize", str), ("model", str), ("class", str), ("explains", bool)):
        if not isinstance(meta.get(key), kind):
            raise DataError(f"{path}: export metadata field {key!r} is missing or not a {kind.__name__}")
    threshold = meta.get("threshold")
    if threshold is not None and not isinstance(threshold, (int, float)):
        raise DataError(f"{path}: export metadata threshold must be a number or null, got {threshold!r}")
    return meta


class ExportedModel:
    """An exported image detector: the torch model's public scoring methods, without torch.

    Attributes as the detector's: `name`, `image_size`, `resize`, `explains`, `threshold_`;
    `class_name` is the exported detector's class (e.g. "PatchCore"); `meta` holds the whole
    export metadata (parameters, versions, input layout)."""

    modality = "image"

    def __init__(self, path: Path, meta: dict, runner, threads: int | None = None):
        self.path, self.meta, self._runner, self.threads = path, meta, runner, threads
        self.name = meta["model"]
        self.class_name = meta["class"].rsplit(".", 1)[-1]
        self.image_size, self.resize, self.explains = meta["image_size"], meta["resize"], meta["explains"]
        self.batch_size = meta.get("batch_size") or 8
        self.threshold_ = None if meta["threshold"] is None else float(meta["threshold"])

    def __repr__(self) -> str:
        return f"ExportedModel({self.name!r}, {str(self.path)!r})"

    def decision_function(self, X: ImageInput) -> np.ndarray:
        return self._score(X, maps=False)[0]

    def predict(self, X: ImageInput) -> np.ndarray:
        return Prediction.from_scores(self.decision_function(X), self._require_threshold()).labels

    def detect(self, X: ImageInput) -> Prediction:
        """Scores, labels and maps (N x S x S, or None), as the detector's `detect`."""
        threshold = self._require_threshold()
        scores, maps = self._score(X, maps=True)
        return Prediction.from_scores(scores, threshold, maps)

    def explain(self, X: ImageInput) -> Explanation:
        if not self.explains:
            raise DataError(f"{self.name} scores whole images only: it has no pixel map to explain a score")
        scores, maps = self._score(X, maps=True)
        return Explanation(scores, localization=maps)

    def _require_threshold(self) -> float:
        if self.threshold_ is None:
            raise NotFittedError(f"the exported {self.name} model {self.path} has no threshold; export a "
                                 "calibrated model")
        return self.threshold_

    def _score(self, X: ImageInput, maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """`ImageDetector._score`: the graph scores the square; under padding the image's
        region of the patch scores gives the score, and of the map, stretched back, the map."""
        items = as_items(X)
        size = self.image_size
        scores, smoothed = [], []
        for start in range(0, len(items), self.batch_size):
            images, boxes = load_square(items[start : start + self.batch_size], size, self.resize)
            out = self._runner.run(np.stack(images))
            score = out["score"].astype(np.float64)
            for i, box in enumerate(boxes):
                if box is not None and self.explains:
                    score[i] = float(crop(out["patch"][i], box, size).max())
            scores.append(score)
            if maps and self.explains:
                batch_maps = out["map"]
                for i, box in enumerate(boxes):
                    if box is not None:
                        top, left, h, w = box
                        batch_maps[i] = upsample_map(batch_maps[i, top : top + h, left : left + w], (size, size))
                smoothed.append(batch_maps.astype(np.float32))
        return np.concatenate(scores), np.concatenate(smoothed) if smoothed else None


class _OnnxRuntime:
    def __init__(self, path: Path, threads: int | None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DataError("scoring an ONNX export needs onnxruntime: pip install 'normalcy[runtime]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: onnxruntime's own choice
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
            raise DataError(f"cannot read {path} as an ONNX model: {str(exc).splitlines()[0][:300]}") from None
        self.outputs = [o.name for o in self.session.get_outputs()]

    def metadata(self, path: Path):
        text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if text is None:
            raise DataError(f"{path} is an ONNX model but not a normalcy export (no '{METADATA_KEY}' metadata)")
        try:
            return json.loads(text)
        except ValueError as exc:
            raise DataError(f"{path}: unreadable normalcy metadata ({exc})") from None

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.outputs, self.session.run(self.outputs, {"images": images})))


class _OpenVINO:
    def __init__(self, path: Path, threads: int | None):
        try:
            import openvino as ov
        except ImportError:
            raise DataError("scoring an OpenVINO export needs openvino: pip install 'normalcy[openvino]'") from None
        config = {"INFERENCE_NUM_THREADS": threads} if threads else {}
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", config)
        except RuntimeError as exc:
            raise DataError(f"cannot read {path} as an OpenVINO model: {str(exc).splitlines()[0][:300]}") from None

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        # A request per call: one shared request is not safe under concurrent serving.
        result = self.compiled.create_infer_request().infer({"images": images})
        return {_output_name(port): np.array(value) for port, value in result.items()}


def _output_name(port) -> str:
    """The graph's output name of an OpenVINO port: a tensor can carry an inner name too
    (e.g. {'score', '/ReduceMax_output_0'}), and `get_any_name` may give either."""
    names = port.get_names()
    return next((name for name in OUTPUTS if name in names), port.get_any_name())
