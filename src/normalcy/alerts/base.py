"""What every alert ranker shares: it learns from a history of alerts and scores each alert of a
queue, higher = more likely a true alert (the detector contract's orientation: more anomalous),
so that sorting by score is the queue an analyst should work through; analyst verdicts fed
back (`rank(..., feedback=...)`) move the alerts that share their patterns."""

from __future__ import annotations

from normalcy.core.detector import Detector


class AlertRanker(Detector):
    modality = "alerts"
    explains = True
