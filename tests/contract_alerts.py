"""Sample data for the detector contract (tests/test_contract.py) on the alert rankers: six hosts,
each in one of two teams, raise their team's routine alert types in a fixed cycle every minute;
true alerts are a type no host raised before, or another team's type on a host. Hostile inputs:
gaps, times and scores that are no numbers or at the float limits, a lone surrogate, an empty
table, one alert, a missing column and things that are no table at all."""

from __future__ import annotations

import numpy as np
import pandas as pd

from normalcy.core.checks import Case

PARAMS = {"car": {"entity_columns": ["host", "user"], "score_column": "score", "content_params": {"epochs": 3}}}
ROUTINE = {0: ["port-scan", "login-fail", "av-update"], 1: ["dns-nx", "proxy-block"]}


def alerts(rng: np.random.Generator, n: int, start: float = 0.0) -> pd.DataFrame:
    host = rng.integers(6, size=n)
    team = host % 2
    cycle = [ROUTINE[t][i % len(ROUTINE[t])] for i, t in enumerate(team)]
    return pd.DataFrame({"time": start + 60.0 * np.arange(n), "host": [f"h{h}" for h in host],
                         "user": [f"u{t}{i}" for t, i in zip(team, rng.integers(2, size=n))], "type": cycle,
                         "score": rng.gamma(2.0, size=n).round(3)})


def true_alerts(rng: np.random.Generator, n: int, start: float) -> pd.DataFrame:
    frame = alerts(rng, n, start)
    other = [ROUTINE[1 - int(h[1:]) % 2][0] for h in frame["host"]]
    return frame.assign(type=[o if i % 2 else "exfiltration" for i, o in enumerate(other)],
                        score=frame["score"] + 2.0)


def case() -> Case:
    rng = np.random.default_rng(17)
    fit = alerts(rng, 240)
    test = pd.concat([alerts(rng, 30, 20_000.0), true_alerts(rng, 10, 22_000.0)], ignore_index=True)
    labels = np.r_[np.zeros(30), np.ones(10)].astype(int)
    one = fit.head(1)
    hostile = [
        ("a missing host", fit.head(5).assign(host=[None, "h1", "h2", "h3", "h4"])),
        ("NaN and infinite times", fit.head(3).assign(time=[np.nan, np.inf, -np.inf])),
        ("a time of 1e308", fit.head(2).assign(time=[1e308, 0.0])),
        ("a time that is no date", fit.head(2).assign(time=["yesterday", "2024-01-01"])),
        ("scores at the float limits", fit.head(3).assign(score=[1e308, -1e308, 5e-324])),
        ("a NaN score", fit.head(3).assign(score=[np.nan, 1.0, 2.0])),
        ("numbers as entities", fit.head(3).assign(user=[1e308, -1e308, 5e-324])),
        ("a lone surrogate", pd.DataFrame({"time": [0.0, 60.0], "host": ["h0", "h1"], "user": ["u00", "u10"],
                                            "type": ["\ud800", "dns-nx"], "score": [1.0, 1.0]}, dtype=object)),
        ("an empty table", fit.iloc[:0]),
        ("one alert", one),
        ("a missing column", fit[["time", "host", "score"]].head(5)),
        ("a list of numbers", [1.0, 2.0, np.nan]),
        ("a number", 42),
        ("a path that does not exist", "no-such-alerts.csv"),
    ]
    return Case(fit, test, labels, hostile)
