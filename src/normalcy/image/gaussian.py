"""Gaussian model of pooled pretrained features (Rippel, Mertens, Merhof, "Modeling the
Distribution of Normal Data in Pre-Trained Deep Features for Anomaly Detection", ICPR 2020).

Each backbone level is average-pooled to one vector per image; one Gaussian per level is fitted
with Ledoit-Wolf shrinkage of the covariance; the image score is the sum over levels of the
Mahalanobis distances. The method scores whole images only: it gives no pixel map.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.image.base import ImageDetector


class GaussianAD(ImageDetector):
    """Gaussian AD: Mahalanobis distance of an image's pooled features to the normal ones'.

    Scores whole images only (no pixel map, so no `explain`). Parameters: backbone
    ("efficientnet-lite0"), image_size (256), batch_size (8), threads (None), weights (None)
    and resize ("squash"), as for every image detector (`ImageDetector`).
    """

    name = "gaussian"
    explains = False
    _fitted_attribute = "means_"

    def _encode(self, batch):
        levels = tuple(range(len(self.extractor.channels)))
        # Pooled in float64: a float32 sum over a level's positions is rounded in an order each
        # runtime chooses, and the precision matrices amplify it (onnxruntime's order against
        # torch's moved bottle's scores by 1.2e-4; pooled in float64, 6e-6).
        with torch.inference_mode():
            return torch.cat([f.double().mean(dim=(2, 3)) for f in self.extractor(batch, levels)], dim=1)

    def _fit_encoded(self, batches, n_images):
        if n_images < 2:
            raise DataError("the Gaussian model needs at least 2 training images")
        pooled = torch.cat(list(batches)).double().numpy()
        self.means_, self.precisions_ = [], []
        for block in np.split(pooled, self._splits(), axis=1):
            lw = LedoitWolf().fit(block)
            self.means_.append(lw.location_.astype(np.float64))
            self.precisions_.append(lw.precision_.astype(np.float64))

    def _score_encoded(self, features):
        pooled = features.double().numpy()
        if pooled.shape[1] != sum(len(m) for m in self.means_):
            raise ModelFileError("pooled features do not match the fitted model; another backbone?")
        total = np.zeros(len(pooled))
        for block, mean, precision in zip(np.split(pooled, self._splits(), axis=1), self.means_, self.precisions_):
            delta = block - mean
            total += np.sqrt(np.maximum(np.einsum("nc,cd,nd->n", delta, precision, delta), 0.0))
        return torch.from_numpy(total)

    def _export_scores(self, features):
        """`_score_encoded` in torch (float64) for ONNX."""
        total = 0
        blocks = torch.split(features.double(), list(self.extractor.channels), dim=1)
        for block, mean, precision in zip(blocks, self.means_, self.precisions_):
            delta = block - torch.from_numpy(mean)
            total = total + ((delta @ torch.from_numpy(precision)) * delta).sum(1).clamp_min(0).sqrt()
        return total

    def _splits(self) -> list[int]:
        return list(np.cumsum(self.extractor.channels)[:-1])

    def _get_state(self):
        arrays = {}
        for i, (m, p) in enumerate(zip(self.means_, self.precisions_)):
            arrays[f"mean_{i}"], arrays[f"precision_{i}"] = m, p
        return arrays, {"levels": len(self.means_)}

    def _set_state(self, arrays, meta):
        levels = meta.get("levels")
        if not isinstance(levels, int) or levels < 1:
            raise ModelFileError("Gaussian model state has no valid 'levels' count")
        self.means_, self.precisions_ = [], []
        for i in range(levels):
            expect_arrays(arrays, {f"mean_{i}": (None,)})
            c = len(arrays[f"mean_{i}"])
            expect_arrays(arrays, {f"precision_{i}": (c, c)})
            self.means_.append(arrays[f"mean_{i}"].astype(np.float64))
            self.precisions_.append(arrays[f"precision_{i}"].astype(np.float64))
