"""Spark plumbing shared by the scoring and per-group jobs: a session, whole-or-nothing Parquet
output, and Spark's task failures turned back into normalcy's one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import uuid
import warnings
from pathlib import Path

from normalcy.core.errors import DataError, ModelFileError, NormalcyError

# Arrow batches handed to a Python worker: large enough that per-batch overhead is small next to
# scoring, small enough that a batch of wide rows stays well inside a worker's memory.
ARROW_BATCH_ROWS = 100_000

# PySpark 4.x warns on every call that pandas 3 is not "fully supported"; the parts used here
# (mapInPandas, applyInPandas, Arrow conversion) are covered by this package's tests.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)


def session(master: str | None = None, app_name: str = "normalcy", progress: bool = True,
            batch_rows: int = ARROW_BATCH_ROWS, conf: dict | None = None):
    """The active SparkSession, or a new one. Under spark-submit the master is spark-submit's;
    otherwise `master` (default local[*]), with the Python workers running this interpreter.
    `progress` shows Spark's console progress bar (stages and tasks) on stderr."""
    from pyspark.sql import SparkSession

    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started this process
    builder = SparkSession.builder.appName(app_name)
    if master or not submitted:
        master = master or "local[*]"
        builder = builder.master(master)
    if master and master.startswith("local"):
        # Local workers must import the same normalcy as the driver.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": str(progress).lower(),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(batch_rows),
        **(conf or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_parquet(spark, path: str | Path):
    """A DataFrame of a Parquet file or folder; a missing or empty input is an error."""
    from pyspark.errors import AnalysisException

    if "://" not in str(path) and not Path(path).exists():
        raise DataError(f"input {path} does not exist")
    try:
        df = spark.read.parquet(str(path))
    except AnalysisException as exc:
        raise DataError(f"cannot read {path} as Parquet: {_first_line(str(exc))}") from None
    if df.isEmpty():
        raise DataError(f"input {path} has no rows; nothing to score")
    return df


def write_parquet(df, out: str | Path) -> Path:
    """Write `df` as a Parquet folder at `out` (a local or mounted path) through a temporary
    sibling folder renamed into place, so `out` is whole or left as it was."""
    out = Path(out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not (out / "_SUCCESS").exists():
        raise DataError(f"refusing to overwrite {out}: it is a folder but not a Spark Parquet output")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        with spark_errors():
            df.write.parquet(str(tmp))
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
            os.rename(tmp, out)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink()
        else:
            os.rename(tmp, out)
    finally:
        _remove(tmp)
    return out


def _remove(folder: Path) -> None:
    """Remove a temporary output that a failed job's cancelled tasks may still be cleaning up."""
    for _ in range(20):
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            return
        time.sleep(0.1)


class spark_errors:
    """Turns a failed Spark job whose cause is a normalcy error into that error, one line; a
    worker's traceback is noise to someone who gave a wrong column."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, NormalcyError):
            return False
        from py4j.protocol import Py4JJavaError
        from pyspark.errors import PySparkException

        if isinstance(exc, (PySparkException, Py4JJavaError)):
            found = _normalcy_error(str(exc))
            if found is not None:
                raise found from None
        return False


_ERROR = re.compile(r"normalcy\.core\.errors\.(DataError|ModelFileError|NotFittedError|NormalcyError): (.*)")


def _normalcy_error(text: str) -> NormalcyError | None:
    match = _ERROR.search(text)
    if match is None:
        return None
    kind = {"DataError": DataError, "ModelFileError": ModelFileError}.get(match.group(1), NormalcyError)
    return kind(match.group(2).strip())


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
