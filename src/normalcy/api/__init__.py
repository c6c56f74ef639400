"""Web API traffic: invariants of each endpoint's parameters and of the calls around it,
inferred from normal access logs; a request breaking one is reported with the rule in plain
words. Importing this package registers its detectors (`normalcy.core.registry.detectors("api")`)."""

from normalcy.api.base import ApiDetector
from normalcy.api.mines import Mines

DEFAULT = "mines"

__all__ = ["ApiDetector", "DEFAULT", "Mines"]
