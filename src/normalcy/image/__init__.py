"""Images: per-image anomaly scores and per-pixel anomaly maps."""

from normalcy.image.gaussian import GaussianAD
from normalcy.image.padim import PaDiM
from normalcy.image.patchcore import PatchCore

DETECTORS = {"patchcore": PatchCore, "padim": PaDiM, "gaussian": GaussianAD}

__all__ = ["DETECTORS", "GaussianAD", "PaDiM", "PatchCore"]
