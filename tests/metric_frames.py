"""A small two-metric series (cpu, mem every 5 minutes) for the time-series CLI tests, with an
optional spike in mem and its 0/1 label window, and the files and model those tests share."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest


def metric_frame(n: int = 400, spike_at: int | None = None, seed: int = 0, start: str = "2024-01-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cpu = 50 + 5 * np.sin(np.arange(n) / 10) + rng.normal(size=n)
    mem = 30 + rng.normal(size=n)
    label = np.zeros(n, dtype=int)
    if spike_at is not None:
        mem[spike_at] += 40
        label[spike_at - 2 : spike_at + 3] = 1
    return pd.DataFrame({"timestamp": pd.date_range(start, periods=n, freq="5min"), "cpu": cpu, "mem": mem,
                         "label": label})


@pytest.fixture(scope="session")
def ts_files(tmp_path_factory) -> SimpleNamespace:
    """root/train.csv (400 normal readings), root/sub/test.csv (200 later ones, a mem spike at
    150 labelled 148..152) and root/m.model, the default detector fitted by `ts fit` in-process.
    Tests must not change them."""
    from clirunner import run_in_process

    root = Path(tmp_path_factory.mktemp("ts"))
    metric_frame().drop(columns="label").to_csv(root / "train.csv", index=False)
    (root / "sub").mkdir()
    metric_frame(200, spike_at=150, seed=1, start="2024-01-03").to_csv(root / "sub" / "test.csv", index=False)
    fitted = run_in_process("ts", "fit", str(root / "train.csv"), "--out", str(root / "m.model"),
                            "--columns", "cpu,mem")
    assert fitted.returncode == 0, fitted.stderr
    return SimpleNamespace(root=root, train=root / "train.csv", test=root / "sub" / "test.csv",
                           model=root / "m.model", fit_stdout=fitted.stdout, fit_stderr=fitted.stderr)
