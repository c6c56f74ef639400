"""A small two-metric series (cpu, mem every 5 minutes) for the time-series CLI tests, with an
optional spike in mem and its 0/1 label window."""

from __future__ import annotations

import numpy as np
import pandas as pd


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
