"""Perturbation families that hide data in stored embeddings, after VectorSmuggle's
(github.com/jaschadub/VectorSmuggle, steganography/obfuscation.py), each at a strength:

| family | what is done to each vector | strength | VectorSmuggle's default |
|---|---|---|---|
| noise | add Gaussian noise N(0, s^2) to every value | s | 0.01 |
| noise-renorm | noise, then rescale to the original length (hides from length checks) | s | - |
| rotation | 5 Givens rotations in random planes, angles uniform in [-s, s] rad, one set for all | s | 0.1 |
| scaling | multiply by exp(s z), z ~ N(0, 1) per vector | s | N(0.95, 0.095) factors |
| offset | add uniform [-s, s] to every value | s | 0.05 |
| fragmentation | keep one of s equal runs of values, zero the rest (one fragment a vector) | s | 3 (384/128) |
| combination | noise 0.01 s, rotation 0.1 s, scaling 0.1 s, offset 0.05 s, in that order | s | 1 |

Vectors are perturbed in float64; a store keeps float32, so callers cast the result.
"""

from __future__ import annotations

import numpy as np

from normalcy.core.errors import DataError

N_ROTATIONS = 5
STRENGTHS = {
    "noise": (0.001, 0.003, 0.01, 0.03),
    "noise-renorm": (0.001, 0.003, 0.01, 0.03),
    "rotation": (0.01, 0.03, 0.1, 0.3),
    "scaling": (0.003, 0.01, 0.03, 0.1),
    "offset": (0.001, 0.003, 0.01, 0.05),
    "fragmentation": (2, 3, 6, 12),
    "combination": (0.1, 0.3, 1.0, 3.0),
}
FAMILIES = tuple(STRENGTHS)


def perturb(matrix: np.ndarray, family: str, strength: float, rng: np.random.Generator) -> np.ndarray:
    """The vectors (rows) perturbed by `family` at `strength` (see the module notes)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if family == "noise":
        return matrix + rng.normal(scale=strength, size=matrix.shape)
    if family == "noise-renorm":
        noisy = matrix + rng.normal(scale=strength, size=matrix.shape)
        return noisy * (np.linalg.norm(matrix, axis=1) / np.linalg.norm(noisy, axis=1))[:, None]
    if family == "rotation":
        return rotate(matrix, strength, rng)
    if family == "scaling":
        return matrix * np.exp(strength * rng.normal(size=len(matrix)))[:, None]
    if family == "offset":
        return matrix + rng.uniform(-strength, strength, size=matrix.shape)
    if family == "fragmentation":
        return fragment(matrix, int(strength), rng)
    if family == "combination":
        out = matrix + rng.normal(scale=0.01 * strength, size=matrix.shape)
        out = rotate(out, 0.1 * strength, rng)
        out = out * np.exp(0.1 * strength * rng.normal(size=len(out)))[:, None]
        return out + rng.uniform(-0.05 * strength, 0.05 * strength, size=out.shape)
    raise DataError(f"unknown perturbation family {family!r}; expected one of {', '.join(FAMILIES)}")


def rotate(matrix: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """N_ROTATIONS Givens rotations in random planes (pairs of dimensions), each by an angle
    uniform in [-angle, angle], the same for all rows."""
    out = matrix.copy()
    for _ in range(N_ROTATIONS):
        i, j = rng.choice(matrix.shape[1], size=2, replace=False)
        theta = rng.uniform(-angle, angle)
        c, s = np.cos(theta), np.sin(theta)
        out[:, i], out[:, j] = c * out[:, i] - s * out[:, j], s * out[:, i] + c * out[:, j]
    return out


def fragment(matrix: np.ndarray, chunks: int, rng: np.random.Generator) -> np.ndarray:
    """Each row keeps the values of one of `chunks` equal runs of dimensions (chosen at random
    per row) and zeros elsewhere: one of the fragments the row would be split into."""
    if not 2 <= chunks <= matrix.shape[1]:
        raise DataError(f"fragmentation needs between 2 and {matrix.shape[1]} chunks, got {chunks}")
    bounds = np.linspace(0, matrix.shape[1], chunks + 1).astype(int)
    keep = rng.integers(chunks, size=len(matrix))
    columns = np.arange(matrix.shape[1])
    mask = (columns >= bounds[keep][:, None]) & (columns < bounds[keep + 1][:, None])
    return np.where(mask, matrix, 0.0)
