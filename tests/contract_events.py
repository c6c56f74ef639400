"""Sample data for the detector contract (tests/test_contract.py) on the event detectors: users
of three teams on their own team's hosts and processes; an anomaly puts a user on another
team's host. Hostile inputs: gaps, numbers at the float limits, a lone surrogate, an empty
table, one event, a missing column and things that are no table at all."""

from __future__ import annotations

import numpy as np
import pandas as pd

from normalcy.core.checks import Case

PARAMS = {"ape": {"epochs": 3}}


def events(rng: np.random.Generator, n: int, cross: bool = False) -> pd.DataFrame:
    team = rng.integers(3, size=n)
    host_team = (team + rng.integers(1, 3, size=n)) % 3 if cross else team
    return pd.DataFrame({"user": [f"u{t}{i}" for t, i in zip(team, rng.integers(4, size=n))],
                         "host": [f"h{t}{i}" for t, i in zip(host_team, rng.integers(3, size=n))],
                         "proc": [f"p{t}{i}" for t, i in zip(team, rng.integers(2, size=n))]})


def case() -> Case:
    rng = np.random.default_rng(11)
    fit = events(rng, 240)
    test = pd.concat([events(rng, 30), events(rng, 10, cross=True)], ignore_index=True)
    labels = np.r_[np.zeros(30), np.ones(10)].astype(int)
    one = fit.head(1)
    hostile = [
        ("a missing cell", fit.head(5).assign(host=[None, "h00", "h01", "h02", "h10"])),
        ("NaN, inf and -inf as entities", fit.head(3).assign(proc=[np.nan, np.inf, -np.inf])),
        ("numbers at the float limits", fit.head(3).assign(user=[1e308, -1e308, 5e-324])),
        ("a lone surrogate", pd.DataFrame({"user": ["\ud800", "u00"], "host": ["h00", "h01"],
                                            "proc": ["p00", "p01"]}, dtype=object)),
        ("an empty table", fit.iloc[:0]),
        ("one event", one),
        ("a missing column", fit[["user", "proc"]].head(5)),
        ("a list of numbers", [1.0, 2.0, np.nan]),
        ("a number", 42),
        ("a path that does not exist", "no-such-events.csv"),
    ]
    return Case(fit, test, labels, hostile)
