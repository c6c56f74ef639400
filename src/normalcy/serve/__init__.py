"""The HTTP service: the Open Inference Protocol v2 over REST for any saved normalcy model.

The server knows no modality. A detector's `modality` (set on its modality's base class, e.g.
"image") names the package whose `serving` module says how protocol tensors become the
detector's input and how its prediction becomes protocol tensors (`normalcy.serve.codec`), so
a new detector is served with no more code, and a new modality adds its own `serving.py`.
"""
