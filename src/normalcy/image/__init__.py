"""Images: per-image anomaly scores and per-pixel anomaly maps.

Importing this package registers its detectors (`normalcy.core.registry.detectors("image")`),
in the order imported here: the order of `normalcy image models` and of the benchmark.
"""

try:
    import torch as _torch  # noqa: F401  (every detector's dependency)
except ModuleNotFoundError:
    # The light runtime (`pip install normalcy[runtime]`: no torch) uses this package's readers,
    # preprocessing and serving with exported models (`normalcy.runtime`), none of its detectors.
    _torch = None

if _torch is not None:
    from normalcy.image.patchcore import PatchCore  # isort: skip
    from normalcy.image.padim import PaDiM  # isort: skip
    from normalcy.image.gaussian import GaussianAD  # isort: skip
    from normalcy.image.simplenet import SimpleNet  # isort: skip
    from normalcy.image.fastflow import FastFlow  # isort: skip
    from normalcy.image.draem import DRAEM  # isort: skip
    from normalcy.image.efficientad import EfficientAD  # isort: skip
    # No registry name (it fits on labelled products), but its model folders must load.
    from normalcy.image.multiproduct import MultiProduct  # isort: skip

DEFAULT = "patchcore"

__all__ = ["DEFAULT", "DRAEM", "EfficientAD", "FastFlow", "GaussianAD", "MultiProduct", "PaDiM", "PatchCore",
           "SimpleNet"]
