"""What every API detector shares: it learns from normal HTTP traffic (access-log lines, files
or a table of requests, `normalcy.api.access`) and scores each request, higher = more
anomalous, in the order given; requests are judged in time order, after the earlier requests
of their user in the same batch."""

from __future__ import annotations

from normalcy.core.detector import Detector


class ApiDetector(Detector):
    modality = "api"
    explains = True
