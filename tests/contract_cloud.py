"""Sample data for the detector contract (tests/test_contract.py) on point clouds: small
synthetic scanned housings (normalcy.cloud.synth, 400 points each, any pose), test clouds with
bulges, and hostile inputs (NaN, infinity, 1e308, too few points, a single cloud not in a
list, wrong shapes, a missing file, points all in one place)."""

from __future__ import annotations

import numpy as np

from normalcy.cloud.synth import make_cloud
from normalcy.core.checks import Case

N_POINTS = 400

# Few sampled points, a tiny network and two epochs keep every check fast.
PARAMS = {
    "fpfh": {"n_points": 128, "threads": 1},
    "displacement": {"n_points": 128, "threads": 1, "epochs": 2, "copies": 1, "hidden": 8},
}


def clouds(rng: np.random.Generator, n: int, defect: str | None = None) -> list[np.ndarray]:
    return [make_cloud("housing", N_POINTS, rng, defect)[0] for _ in range(n)]


def case() -> Case:
    rng = np.random.default_rng(5)
    fit = clouds(rng, 5)
    test = clouds(rng, 3) + clouds(rng, 3, "bulge")
    good = fit[0]
    hostile = [
        ("NaN coordinates", [np.full((N_POINTS, 3), np.nan)]),
        ("infinite coordinates", [np.where(np.arange(N_POINTS)[:, None] == 3, np.inf, good)]),
        ("coordinates of 1e308", [good * 1e306]),
        ("no clouds", []),
        ("an empty cloud", [np.zeros((0, 3))]),
        ("a cloud of 5 points", [good[:5]]),
        ("one cloud", [good]),
        ("points all in one place", [np.ones((N_POINTS, 3))]),
        ("points on a line", [np.outer(np.linspace(0, 1, N_POINTS), [1.0, 2.0, 3.0])]),
        ("a single cloud, not in a list", good),
        ("n x 2 arrays", [good[:, :2]]),
        ("text arrays", [good.astype(str)]),
        ("a single path, not a list", "cloud.ply"),
        ("a missing file", ["/nonexistent/normalcy-contract.ply"]),
        ("a list of None", [None]),
        ("a number", 5),
    ]
    return Case(fit=fit, test=test, labels=np.array([0] * 3 + [1] * 3), hostile=hostile)
