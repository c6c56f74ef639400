"""Orion's TadGAN side by side: run by `normalcy ts benchmark --peer orion=PYTHON` with the Python
of Orion's own environment (`pip install orion-ml "scikit-learn<1.6"` in a virtualenv:
TensorFlow 2.14 and Keras; Orion's DTW error calls scikit-learn's `check_array` with an argument
that 1.6 removed), never imported by normalcy itself.

    PYTHON peer_orion.py DATA OUT

DATA holds one folder per series with `train.npy` and `test.npy` (readings x variables); the
scores of the test part go to OUT/TadGAN/<series>.npz (`scores`, `seconds`), and series already
there are skipped. Orion's registered `tadgan` pipeline at its defaults (35 epochs, windows of
100, DTW reconstruction error combined with the critic score): the pipeline is univariate, so
it reads variable 0 (MSL's telemetry value; NAB has one). Readings are given timestamps one
pipeline `interval` (21,600 s) apart, so its aggregation step keeps every reading as it is. The
pipeline is fitted on the training part and run on the test part; a reading's score is the
anomaly score the pipeline computes for it (`score_anomalies`' errors, before Orion turns
them into intervals), so it is ranked like ours.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

INTERVAL = 21600
SCORES = "orion.primitives.tadgan.score_anomalies#1"


def main(data: Path, out: Path) -> None:
    import pandas as pd
    import tensorflow as tf
    from mlblocks import MLPipeline
    from mlblocks.discovery import load_pipeline

    import orion  # noqa: F401  (registers Orion's primitives and pipelines with MLBlocks)

    series = sorted(p for p in data.iterdir() if (p / "test.npy").is_file())
    target = out / "TadGAN"
    target.mkdir(parents=True, exist_ok=True)
    todo = [s for s in series if not (target / f"{s.name}.npz").is_file()]
    for i, folder in enumerate(todo, 1):
        train, test = np.load(folder / "train.npy"), np.load(folder / "test.npy")
        train, test = train.reshape(len(train), -1)[:, 0], test.reshape(len(test), -1)[:, 0]
        frames = [pd.DataFrame({"timestamp": (offset + np.arange(len(v))) * INTERVAL, "value": v})
                  for offset, v in ((0, train), (len(train), test))]
        tf.random.set_seed(0)
        np.random.seed(0)
        start = time.perf_counter()
        pipeline = MLPipeline(load_pipeline("tadgan"))
        pipeline.fit(frames[0])
        errors, index = pipeline.predict(frames[1], output_=[f"{SCORES}.errors", f"{SCORES}.true_index"])
        seconds = time.perf_counter() - start
        scores = np.zeros(len(test))
        at = np.asarray(index, dtype=np.int64) // INTERVAL - len(train)
        keep = (at >= 0) & (at < len(test))
        scores[at[keep]] = np.asarray(errors, dtype=np.float64).reshape(-1)[keep]
        np.savez(target / f"{folder.name}.npz", scores=scores, seconds=seconds)
        print(f"orion TadGAN: {i}/{len(todo)} {folder.name} {seconds:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
