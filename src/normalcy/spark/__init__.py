"""normalcy on Apache Spark: score DataFrames of every modality with a model folder, fit and
score one model per key, stream readings through one detector per key, model each entity's
event stream, and embed entity graphs. Needs the `spark` extra (PySpark); see docs/spark.md.
The per-entity sequence model is the log detector `entity-sequence` (normalcy.logs.entity_sequence)."""

from normalcy.spark.groups import fit_per_group, score_per_group
from normalcy.spark.score import score
from normalcy.spark.session import read_parquet, session, write_parquet
from normalcy.spark.stream import run_files, stream

__all__ = ["fit_per_group", "read_parquet", "run_files", "score", "score_per_group", "session",
           "stream", "write_parquet"]
