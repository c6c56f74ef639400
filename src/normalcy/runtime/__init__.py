"""The light runtime: exported image models (`normalcy image export`) scored without torch.

`pip install "normalcy[runtime]"` brings numpy, Pillow and onnxruntime (and `normalcy[openvino]`
OpenVINO); `load(path)` reads an ONNX file or an OpenVINO folder and gives the detector's
`decision_function`, `predict`, `detect` and `explain` with the torch model's scores, labels,
maps and threshold. `normalcy image predict` and `normalcy serve` take exported models too.
"""

from normalcy.runtime.model import ExportedModel, is_exported, load

__all__ = ["ExportedModel", "is_exported", "load"]
