"""The embedding jobs behind the CLI: sign and verify files, fit with a calibrated threshold,
score a file into a file. Outputs appear whole or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError
from normalcy.core.holdout import fit_with_holdout
from normalcy.core.threshold import ThresholdStrategy
from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import CONTENT, EMBEDDING, list_column, read_parquet, write_parquet

OUTPUT_COLUMNS = ("score", "label")
OUTPUT_FORMATS = (".parquet", ".csv")


def sign_file(data: str | Path, key: str | Path, model_id: str, out: str | Path, metadata_columns=(),
              batch_size: int | None = None) -> dict:
    """Sign the vectors of `data` into `out` (see `normalcy.embeddings.store`); a summary."""
    from normalcy.embeddings import keys, pin, store

    private = keys.load_private(key)  # before reading a large file
    table = read_parquet(data)
    signed = store.sign_table(table, private, model_id, metadata_columns=tuple(metadata_columns),
                              batch_size=pin.BATCH_SIZE if batch_size is None else batch_size, where=str(data))
    write_parquet(signed, out)
    return {"n": table.num_rows, "key_id": signed.column("pin_key")[0].as_py() if table.num_rows else None,
            "batches": len(set(signed.column("pin_signature").to_pylist()))}


def verify_file(data: str | Path, public_key: str | Path):
    from normalcy.embeddings import keys, store

    return store.verify_table(read_parquet(data), keys.load_public(public_key))


def read_frame(data: str | Path):
    """A Parquet file of embeddings as a DataFrame: `embedding` as one array per row (read
    through Arrow in one piece), the other columns as they are."""
    import pandas as pd

    table = read_parquet(data)
    matrix = list_column(table, EMBEDDING, str(data)).matrix(str(data))
    frame = table.drop_columns([EMBEDDING]).to_pandas(types_mapper=None)
    if CONTENT in frame.columns:
        frame[CONTENT] = frame[CONTENT].astype(object)
    frame.insert(0, EMBEDDING, pd.Series(list(matrix), index=frame.index, dtype=object))
    return frame, table


def fit_model(data: str | Path, detector: EmbeddingDetector, threshold: ThresholdStrategy, holdout: float = 0.1,
              seed: int = 0) -> EmbeddingDetector:
    """Fit on the vectors of `data` less a random `holdout` share, whose scores set the
    threshold (`normalcy.core.holdout.fit_with_holdout`)."""
    frame, _ = read_frame(data)
    return fit_with_holdout(detector, frame, threshold, holdout, seed, unit="vectors", name=str(data))


def score_to_file(detector: EmbeddingDetector, data: str | Path, out: str | Path) -> dict:
    """The rows of `data` with `score` and `label` added, written to `out`: .parquet keeps
    every column, .csv every column but the vectors."""
    import pyarrow as pa

    out = Path(out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise DataError(f"{out}: the output must be a .parquet or .csv file")
    detector._require_threshold()
    frame, table = read_frame(data)
    taken = [c for c in OUTPUT_COLUMNS if c in table.column_names]
    if taken:
        raise DataError(f"{data} already has column(s) {', '.join(taken)}; rename them before scoring")
    scores = detector.decision_function(frame)
    labels = (scores >= detector.threshold_).astype(np.int8)
    if out.suffix.lower() == ".parquet":
        write_parquet(table.append_column("score", pa.array(scores)).append_column("label", pa.array(labels)), out)
    else:
        from normalcy.tabular.workflow import write_table_atomic

        write_table_atomic(frame.drop(columns=[EMBEDDING]).assign(score=scores, label=labels), out)
    return {"n": len(scores), "flagged": int(labels.sum())}
