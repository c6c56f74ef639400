"""Embeddings: signed vectors (Ed25519 over a canonical byte form of vector, content hash and
model id, `normalcy.embeddings.store`) and detectors of vectors perturbed after embedding
(noise, rotation, scaling, offset, fragments). Each detector registers itself by name
(`normalcy.core.registry`): `detectors("embeddings")` lists them.

Importing this imports neither torch nor the signing library: the re-embedding detector loads
its model when first used, and `normalcy.embeddings.store` is imported where needed.
"""

# Import order is registration order, which `normalcy embeddings models` and the benchmark follow.
from normalcy.embeddings.stats import Dims, Moments, Norm  # noqa: I001
from normalcy.embeddings.table import VectorTable
from normalcy.embeddings.reembed import ReEmbed
from normalcy.embeddings.base import EmbeddingDetector
from normalcy.embeddings.data import Vectors, read_vectors

# `normalcy embeddings fit`'s default: of the detectors that need no text, the one whose worst
# corpus AUROC is highest over the perturbations that statistics can see (all but rotation) in
# `normalcy embeddings benchmark` (docs/embeddings.md).
DEFAULT = "moments"

__all__ = ["DEFAULT", "Dims", "EmbeddingDetector", "Moments", "Norm", "ReEmbed", "VectorTable", "Vectors",
           "read_vectors"]
