"""Alert ranking: a queue of low-level alerts ordered so that true alerts come first, from the
alerts' temporal and content correlations and analysts' verdicts. Importing this package
registers its rankers (`normalcy.core.registry.detectors("alerts")`)."""

from normalcy.alerts.base import AlertRanker
from normalcy.alerts.car import CAR

DEFAULT = "car"

__all__ = ["AlertRanker", "CAR", "DEFAULT"]
