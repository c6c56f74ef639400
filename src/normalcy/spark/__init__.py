"""normalcy on Apache Spark: score DataFrames of every modality with a model folder, fit and
score one model per key, stream readings through one detector per key, model each entity's
event stream, and embed entity graphs. Needs the `spark` extra (PySpark); see docs/spark.md.

Importing this package registers the `entity-sequence` log detector (normalcy.spark.sequence)."""

from normalcy.spark.groups import fit_per_group, score_per_group
from normalcy.spark.score import score
from normalcy.spark.sequence import EntitySequence
from normalcy.spark.session import read_parquet, session, write_parquet
from normalcy.spark.stream import run_files, stream

__all__ = ["EntitySequence", "fit_per_group", "read_parquet", "run_files", "score", "score_per_group", "session",
           "stream", "write_parquet"]
