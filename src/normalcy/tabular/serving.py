"""Serving table detectors: one input per fitted column, named as the column, all shape [n]:
numeric columns FP64 (or FP32, INT32, INT64), categorical columns BYTES. Outputs `score` FP64
[n] and `label` BOOL [n] (with a threshold).

Every fitted column is a required input (the request is refused naming the missing ones, as
for a table file). A missing value is sent in the column: `null` in a numeric input, an
empty string in a categorical one, as an empty cell in a CSV file."""

from __future__ import annotations

import numpy as np
import pandas as pd

from normalcy.serve.codec import NUMBERS, Codec, Limits, RequestError, TensorSpec
from normalcy.tabular.base import TabularDetector
from normalcy.tabular.data import NUMERIC


def column_specs(columns: list[str], kinds: list[str]) -> list[TensorSpec]:
    return [TensorSpec(c, NUMBERS if kind == NUMERIC else ("BYTES",), (-1,)) for c, kind in zip(columns, kinds)]


def frame_from(tensors, columns: list[str]) -> pd.DataFrame:
    """The columns as a frame; every input must have the same number of rows."""
    sizes = {c: len(tensors[c].data) for c in columns}
    if len(set(sizes.values())) > 1:
        raise RequestError("every column input needs the same number of rows, got "
                           + ", ".join(f"{c!r}: {n}" for c, n in sizes.items()))
    if not next(iter(sizes.values()), 0):
        raise RequestError("the inputs have no rows")
    return pd.DataFrame({c: (tensors[c].data.astype(np.float64) if isinstance(tensors[c].data, np.ndarray)
                             else np.array(tensors[c].data, dtype=object)) for c in columns})


class TableCodec(Codec):
    modality = "tabular"

    def __init__(self, detector: TabularDetector, limits: Limits):
        super().__init__(detector, limits)
        encoder = detector.encoder_
        self.inputs = column_specs(encoder.columns_, encoder.kinds_)
        self.outputs = self.score_outputs()

    def decode(self, tensors, parameters) -> pd.DataFrame:
        frame = frame_from(tensors, self.detector.columns)
        categorical = [c for c, kind in zip(self.detector.encoder_.columns_, self.detector.encoder_.kinds_)
                       if kind != NUMERIC]
        # An empty string is an empty cell: a missing value, as when reading a CSV file.
        return frame.assign(**{c: frame[c].where(frame[c] != "", None) for c in categorical})

    def predict(self, frame, parameters):
        return self.scored(self.detector.decision_function(frame))


CODECS = {TabularDetector: TableCodec}
