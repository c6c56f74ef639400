"""TSB-AD side by side: run by `normalcy ts benchmark --peer tsb-ad=PYTHON` with the Python of
TSB-AD's own environment (`pip install tsb-ad==1.5` in a virtualenv), never imported by
normalcy itself.

    PYTHON peer_tsbad.py DATA OUT

DATA holds one folder per series with `train.npy` and `test.npy` (readings x variables); each
algorithm's scores of the test part go to OUT/<algorithm>/<series>.npz (`scores`, `seconds`),
and series already there are skipped. Every algorithm runs at its TSB-AD defaults
(`TSB_AD.model_wrapper.run_*` without arguments). The unsupervised ones (Sub-PCA,
MatrixProfile, KShapeAD, POLY, IForest) score the training and test parts joined, as TSB-AD
runs them on a whole file, and the test part's scores are kept: they see what our detectors
see. LSTM-AD, semi-supervised in TSB-AD, is trained on the training part and scores the test
part.
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

UNSUPERVISED = {"Sub-PCA": "Sub_PCA", "MatrixProfile": "MatrixProfile", "KShapeAD": "KShapeAD", "POLY": "POLY",
                "IForest": "IForest"}
SEMI_SUPERVISED = {"LSTM-AD": "LSTMAD"}


def main(data: Path, out: Path) -> None:
    import torch

    from TSB_AD import model_wrapper

    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    series = sorted(p for p in data.iterdir() if (p / "test.npy").is_file())
    work = out / ".work"  # LSTM-AD's early stopping writes checkpoints to the working folder
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    for name, function in [*UNSUPERVISED.items(), *SEMI_SUPERVISED.items()]:
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        todo = [s for s in series if not (target / f"{s.name}.npz").is_file()]
        for i, folder in enumerate(todo, 1):
            train, test = np.load(folder / "train.npy"), np.load(folder / "test.npy")
            start = time.perf_counter()
            if name in UNSUPERVISED:
                scores = model_wrapper.run_Unsupervise_AD(function, np.vstack([train, test]))
                scores = None if isinstance(scores, str) else np.asarray(scores, dtype=np.float64)[len(train):]
            else:
                scores = model_wrapper.run_Semisupervise_AD(function, train, test)
                scores = None if isinstance(scores, str) else np.asarray(scores, dtype=np.float64)
            seconds = time.perf_counter() - start
            if scores is None or len(scores) != len(test):
                print(f"tsb-ad {name} on {folder.name}: no scores ({'error' if scores is None else len(scores)})",
                      file=sys.stderr, flush=True)
                scores = np.zeros(len(test))  # recorded as a constant score, and said above
            np.savez(target / f"{folder.name}.npz", scores=scores, seconds=seconds)
            print(f"tsb-ad {name}: {i}/{len(todo)} {folder.name} {seconds:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
