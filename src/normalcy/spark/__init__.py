"""normalcy on Apache Spark: score DataFrames with a model folder, and fit and score one
time-series model per key. Needs the `spark` extra (PySpark); see docs/spark.md."""

from normalcy.spark.groups import fit_per_group, score_per_group
from normalcy.spark.score import score
from normalcy.spark.session import read_parquet, session, write_parquet

__all__ = ["fit_per_group", "read_parquet", "score", "score_per_group", "session", "write_parquet"]
