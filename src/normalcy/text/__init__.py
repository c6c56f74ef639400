"""Text: a score per text from a sentence embedding (all-MiniLM-L6-v2, offline) and a table
detector on top (kNN by default), with the nearest training text as evidence.

Names are imported on first use, so reading texts (and refusing bad input) does not wait
for torch to import.
"""

import importlib

_WHERE = {"read_texts": "data", "TextDetector": "detector", "BertEmbedder": "embedding", "Embedder": "embedding",
          "get_embedder": "embedding", "minilm": "embedding"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'normalcy.text' has no attribute {name!r}")
    return getattr(importlib.import_module(f"normalcy.text.{_WHERE[name]}"), name)
