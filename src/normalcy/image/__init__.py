"""Images: per-image anomaly scores and per-pixel anomaly maps.

Importing this package registers its detectors (`normalcy.core.registry.detectors("image")`),
in the order imported here: the order of `normalcy image models` and of the benchmark.
"""

from normalcy.image.patchcore import PatchCore  # isort: skip
from normalcy.image.padim import PaDiM  # isort: skip
from normalcy.image.gaussian import GaussianAD  # isort: skip
from normalcy.image.simplenet import SimpleNet  # isort: skip
from normalcy.image.fastflow import FastFlow  # isort: skip
from normalcy.image.draem import DRAEM  # isort: skip

DEFAULT = "patchcore"

__all__ = ["DEFAULT", "DRAEM", "FastFlow", "GaussianAD", "PaDiM", "PatchCore", "SimpleNet"]
