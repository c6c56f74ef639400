"""Text: a score per text from a sentence embedding (all-MiniLM-L6-v2, offline) and a table
detector on top (kNN by default), with the nearest training text as evidence.

Importing this registers the text detector (`normalcy.core.registry`) without importing
torch: torch loads when a model is first used, so reading texts and refusing bad input do
not wait for it.
"""

from normalcy.text.data import read_texts
from normalcy.text.detector import TextDetector
from normalcy.text.embedding import BertEmbedder, Embedder, get_embedder, minilm

DEFAULT = "embedding"  # the one text detector; its `model` parameter picks the table detector on top

__all__ = ["BertEmbedder", "DEFAULT", "Embedder", "TextDetector", "get_embedder", "minilm", "read_texts"]
