"""Point clouds: an anomaly score per scanned part and one per point.

Importing this package registers its detectors (`normalcy.core.registry.detectors("cloud")`),
in the order imported here: the order of `normalcy cloud models` and of the benchmark.
"""

from normalcy.cloud.memory import FPFHMemory  # isort: skip
from normalcy.cloud.displacement import Displacement  # isort: skip

DEFAULT = "fpfh"

__all__ = ["DEFAULT", "Displacement", "FPFHMemory"]
