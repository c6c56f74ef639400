"""The HTTP service: the Open Inference Protocol v2 over REST for any saved normalcy model.

The server knows no modality. A model's modality is the package its detector class lives in
(`normalcy.image.patchcore.PatchCore` -> `normalcy.image`), and that package's `serving`
module says how protocol tensors become the detector's input and how its prediction becomes
protocol tensors (`normalcy.serve.codec`). A new modality adds its own `serving.py`.
"""
