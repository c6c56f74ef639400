"""Serving image detectors: input `image`, BYTES [n], each element an encoded file (PNG, JPEG,
...): raw bytes in binary tensor data, base64 in JSON (`normalcy.serve.codec` decodes it).
Outputs `score` FP64 [n], `label` BOOL [n] (with a threshold), `anomaly_map` FP32 [n, S, S]
at the working size S (detectors that localise), and, when the request's parameters say
``"overlay": true``, `overlay` BYTES [n]: PNGs of the heatmap over each image (base64 in
JSON).

Decoding is the file reader's (`normalcy.image.io`): the pixel count is checked from the
header before any pixel is decoded, and a truncated, corrupt or oversized file is a
DataError, never a crash.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from normalcy.image.io import MAX_PIXELS, decode_image
from normalcy.image.overlay import color_range, overlay
from normalcy.image.preprocess import scores_and_maps
from normalcy.runtime import ExportedModel
from normalcy.serve.codec import Codec, Limits, Output, RequestError, TensorSpec


class ImageCodec(Codec):
    modality = "image"
    concurrent = True  # scoring only reads the detector (faiss search, a torch forward)

    def __init__(self, detector, limits: Limits):
        super().__init__(detector, limits)
        self.max_pixels = limits.max_image_pixels or MAX_PIXELS
        # Threads are the server's to set for the whole process; a per-call limit would
        # change torch's process-wide setting under concurrent requests.
        detector.threads = None
        size = detector.image_size
        # One prediction at load builds the backbone, so the first request is not slow.
        scores_and_maps(detector, np.full((1, size, size, 3), 128, dtype=np.uint8))
        self.localises = detector.explains
        self.inputs = [TensorSpec("image", ("BYTES",), (-1,), raw=True)]
        self.outputs = self.score_outputs()
        if self.localises:
            self.outputs.append(TensorSpec("anomaly_map", ("FP32",), (-1, size, size)))
            self.outputs.append(TensorSpec("overlay", ("BYTES",), (-1,)))

    def parameters(self) -> dict:
        exported = {}
        if isinstance(self.detector, ExportedModel):  # named by the exported detector's class
            exported = {"detector": self.detector.class_name, "exported": True}
        return {**super().parameters(), "image_size": self.detector.image_size,
                "max_image_pixels": self.max_pixels, **exported}

    def decode(self, tensors, parameters) -> list[np.ndarray]:
        encoded = tensors["image"].data
        if len(encoded) > self.limits.max_images:
            raise RequestError(f"input 'image' has {len(encoded)} images, over the limit of {self.limits.max_images} "
                               "per request")
        if not encoded:
            raise RequestError("input 'image' has no images")
        images, pixels = [], 0
        for i, data in enumerate(encoded):
            images.append(decode_image(data, f"input 'image'[{i}]", self.max_pixels))
            # The limit also holds for all the images of a request together, so at most one
            # image's worth of memory is ever decoded past it.
            pixels += images[-1].shape[0] * images[-1].shape[1]
            if pixels > self.max_pixels:
                raise RequestError(f"the images of this request have over {pixels} pixels together, over the "
                                   f"limit of {self.max_pixels}; send fewer per request")
        return images

    def predict(self, images, parameters) -> list[Output]:
        scores, maps = scores_and_maps(self.detector, images)
        out = self.scored(scores)
        if maps is not None:
            out.append(Output("anomaly_map", "FP32", maps.astype(np.float32)))
            if parameters.get("overlay") is True:
                vmin, vmax = color_range(self.detector.threshold_, maps)
                out.append(Output("overlay", "BYTES", [_png(overlay(image, m, vmin, vmax))
                                                       for image, m in zip(images, maps)]))
        return out


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


# Exported models are served in the light runtime too, where torch (and so ImageDetector) is absent.
CODECS = {ExportedModel: ImageCodec}
try:
    from normalcy.image.base import ImageDetector
except ModuleNotFoundError as exc:
    if exc.name != "torch":
        raise
else:
    CODECS[ImageDetector] = ImageCodec
