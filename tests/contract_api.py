"""Sample data for the detector contract (tests/test_contract.py) on the API detectors: a
synthetic shop's access log as JSON lines (normalcy.api.synthetic); anomalies are requests to
an admin path by a customer, a page that is no number, a quantity of 900 and an unknown
parameter. Hostile inputs: no lines, lines that are no requests, numbers, a lone surrogate,
a 1 MB line, times and statuses that are no numbers, tables without the needed columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from normalcy.api.synthetic import as_lines, shop_traffic
from normalcy.core.checks import Case

PARAMS = {"mines": {"min_support": 5}}


def case() -> Case:
    fit = as_lines(shop_traffic(seed=1, sessions=60))
    normal = shop_traffic(seed=2, sessions=12)[:30]
    t = normal[-1]["time"]
    bad = [
        {"time": t + 1, "method": "GET", "path": "/admin/reports", "query": "from_day=1&to_day=9", "user": "u101"},
        {"time": t + 2, "method": "GET", "path": "/products", "query": "page=abc&size=20&sort=price", "user": "u102"},
        {"time": t + 3, "method": "POST", "path": "/cart/items", "query": "product=1500&qty=900", "user": "u103"},
        {"time": t + 4, "method": "GET", "path": "/search", "query": "q=lamp&debug=1", "user": "u104"},
        {"time": t + 5, "method": "GET", "path": "/.env", "user": "u105"},
    ]
    test = as_lines(normal + bad)
    labels = np.r_[np.zeros(len(normal)), np.ones(len(bad))].astype(int)
    hostile = [
        ("no lines", []),
        ("lines that are no requests", ["hello", "", "{}"]),
        ("a number among the lines", [fit[0], 42]),
        ("a lone surrogate in a path", [json.dumps({"method": "GET", "path": "/\ud800", "time": 1.0})]),
        ("a 1 MB line", [json.dumps({"method": "GET", "path": "/" + "a" * 1_000_000, "time": 1.0})]),
        ("a time that is no number", [json.dumps({"method": "GET", "path": "/x", "time": "soon"})]),
        ("a status of 1e308", [json.dumps({"method": "GET", "path": "/x", "time": 1.0, "status": 1e308})]),
        ("one request", fit[:1]),
        ("a table without a path", pd.DataFrame({"method": ["GET"], "time": [1.0]})),
        ("a table with NaN and infinity", pd.DataFrame({"method": ["GET", "GET"], "path": ["/a", "/b"],
                                                        "time": [np.nan, np.inf]})),
        ("a string", "no-such-access.log"),
        ("a number", 42),
    ]
    return Case(fit, test, labels, hostile)
