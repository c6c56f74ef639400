"""Synthetic anomalies: defects drawn on normal images, with their masks, so a detector can
be trained (DRAEM), validated (early stopping of every trained detector) and its threshold
checked without one real defect image.

Kinds:

- "perlin": DRAEM's recipe (Zavrtanik, Kristan, Skocaj, "DRAEM - A discriminatively trained
  reconstruction embedding for surface anomaly detection", ICCV 2021): a Perlin-noise blob
  mask (noise scale 2^0..2^6 per axis, rotated, thresholded at 0.5) filled with a texture,
  blended as image * (1 - m) + (1 - beta) * texture * m + beta * image * m, beta in
  [0, 0.8). The textures are a folder the user names (DRAEM used the DTD set, which does not
  download here) or, by default, the normal images themselves under three strong colour
  transforms (of nine: gamma, brightness, sharpness, hue and saturation, solarize,
  posterize, invert, autocontrast, equalize) after a random rotation and zoom that scrambles
  their structure.
- "cutpaste" and "scar": CutPaste (Li, Sohn, Yoon, Pfister, "CutPaste: Self-Supervised
  Learning for Anomaly Detection and Localization", CVPR 2021): a rectangle of 2-15 % of the
  image (aspect 0.3-3.3), or a thin scar (2-16 x 10-25 px at 256 px, rotated +-45 degrees),
  cut from one place, colour-jittered and pasted at another.

Placement is foreground-aware: `foreground` estimates the part's region from the normal
images (the pixels of their median image that differ from the border colour, by Otsu's
threshold) so that defects land on the part, not the background; textures and images with
no clear part get the whole frame. Every defect covers at least MIN_AREA of the image.

`write_test_set` (the `normalcy image synthesize` command) writes an MVTec-layout test set.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from scipy import ndimage

from normalcy.core.errors import DataError
from normalcy.core.progress import progress
from normalcy.image.io import list_images, read_image

KINDS = ("perlin", "cutpaste", "scar")
MIN_AREA = 1e-4  # smallest defect, as a share of the image (a thin scar at 256 px is 3e-4)
FOREGROUND_SIZE = 128  # the resolution the foreground is estimated at
BETA_MAX = 0.8  # DRAEM's largest share of the original image kept under a defect


# --- Perlin noise ---------------------------------------------------------------------------


def perlin(shape: tuple[int, int], res: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """2-D Perlin gradient noise of `shape` with res[0] x res[1] lattice cells, about in [-1, 1]."""
    h, w = shape
    angles = rng.uniform(0, 2 * math.pi, (res[0] + 1, res[1] + 1))
    grad = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = (np.arange(h) + 0.5) * res[0] / h
    x = (np.arange(w) + 0.5) * res[1] / w
    iy, ix = y.astype(int), x.astype(int)
    fy, fx = (y - iy)[:, None], (x - ix)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grad[(iy + dy)[:, None], (ix + dx)[None, :]]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    u, v = _fade(fy), _fade(fx)
    top = corner(0, 0) + u * (corner(1, 0) - corner(0, 0))
    bottom = corner(0, 1) + u * (corner(1, 1) - corner(0, 1))
    return math.sqrt(2) * (top + v * (bottom - top))


def _fade(t: np.ndarray) -> np.ndarray:
    return 6 * t**5 - 15 * t**4 + 10 * t**3


def perlin_mask(shape: tuple[int, int], rng: np.random.Generator, max_scale: int = 6) -> np.ndarray:
    """DRAEM's anomaly mask: Perlin noise at 2^a x 2^b cells (a, b in 0..max_scale), rotated by
    -90..90 degrees, above 0.5. Drawn at most 256 px on a side and resized (bilinear) up."""
    h, w = shape
    small = (min(h, 256), min(w, 256))
    res = tuple(2 ** int(rng.integers(0, max_scale + 1)) for _ in range(2))
    noise = perlin(small, res, rng)
    noise = ndimage.rotate(noise, rng.uniform(-90, 90), reshape=False, order=1, mode="reflect")
    if small != (h, w):
        noise = np.asarray(Image.fromarray(noise.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR))
    return noise > 0.5


# --- textures and colour transforms ----------------------------------------------------------


def _gamma(img, rng):
    lut = [min(255, int(255 * (i / 255) ** rng.uniform(0.5, 2.0) + 0.5)) for i in range(256)]
    return img.point(lut * 3)


def _brightness(img, rng):
    a = np.asarray(img, dtype=np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-30, 30)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def _hue_saturation(img, rng):
    hsv = np.asarray(img.convert("HSV")).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.integers(-50, 51))) % 256
    hsv[..., 1] = np.clip(hsv[..., 1] + int(rng.integers(-50, 51)), 0, 255)
    return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


# The nine colour augmenters of DRAEM's texture pipeline, on Pillow.
_COLOUR = (
    _gamma,
    _brightness,
    lambda img, rng: ImageEnhance.Sharpness(img).enhance(rng.uniform(0.0, 40.0)),
    _hue_saturation,
    lambda img, rng: ImageOps.solarize(img, int(rng.integers(32, 128))),
    lambda img, rng: ImageOps.posterize(img, int(rng.integers(4, 9))),
    lambda img, rng: ImageOps.invert(img),
    lambda img, rng: ImageOps.autocontrast(img),
    lambda img, rng: ImageOps.equalize(img),
)


def strong_transform(image: np.ndarray, rng: np.random.Generator, scramble: bool = True) -> np.ndarray:
    """Three random colour transforms of the nine, after (with `scramble`) a random rotation and
    a 1.5-3x zoom into a random crop, so a normal image no longer looks like the part."""
    h, w = image.shape[:2]
    img = Image.fromarray(image)
    if scramble:
        img = img.rotate(float(rng.uniform(0, 360)), resample=Image.BILINEAR, expand=False)
        zoom = rng.uniform(1.5, 3.0)
        cw, ch = max(1, int(w / zoom)), max(1, int(h / zoom))
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        img = img.resize((w, h), Image.BILINEAR, box=(left, top, left + cw, top + ch))
    for k in rng.choice(len(_COLOUR), 3, replace=False):
        img = _COLOUR[k](img, rng)
    return np.asarray(img.convert("RGB"))


class Textures:
    """Where Perlin defects get their content: image files (a texture folder) or arrays (the
    normal images themselves); `draw` gives one, strongly transformed, at a given size."""

    def __init__(self, items: list, scramble: bool = True):
        if not items:
            raise DataError("no texture images to draw defects from")
        self.items, self.scramble = items, scramble

    @classmethod
    def from_folder(cls, folder: str | Path) -> "Textures":
        paths = list_images(folder)
        if not paths:
            raise DataError(f"texture folder {folder} holds no images")
        return cls(paths, scramble=False)  # a texture set is already unlike the part

    def draw(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        item = self.items[int(rng.integers(len(self.items)))]
        image = read_image(item) if isinstance(item, (str, Path)) else np.asarray(item)
        if image.shape[:2] != shape:
            image = np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR))
        return strong_transform(image, rng, self.scramble)


# --- foreground ------------------------------------------------------------------------------


def foreground(images: list[np.ndarray] | np.ndarray, size: int = FOREGROUND_SIZE) -> np.ndarray:
    """Where the part is, as a size x size bool mask, from normal images (any sizes): their
    per-pixel median differs from the border colour there (Otsu's threshold on the distance),
    holes filled. All True when no part stands out (textures: the part is everywhere)."""
    small = np.stack([_resize(np.asarray(im), (size, size)) for im in images]).astype(np.float32)
    median = np.median(small, axis=0)
    border = np.concatenate([median[0], median[-1], median[:, 0], median[:, -1]])
    distance = np.linalg.norm(median - np.median(border, axis=0), axis=-1)
    if np.ptp(distance) < 1e-6:  # a flat image: nothing stands out
        return np.ones((size, size), dtype=bool)
    threshold = _otsu(distance)
    mask = distance > threshold
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(mask, iterations=2))
    share = mask.mean()
    inside, outside = distance[mask], distance[~mask]
    # A part: a region that covers 5-95 % of the frame and stands out from the border clearly.
    separated = inside.size and outside.size and inside.mean() > 2 * outside.mean() + 10
    if not (0.05 <= share <= 0.95 and separated):
        return np.ones((size, size), dtype=bool)
    return mask


def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=256)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * centres)
    total, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total) ** 2 / (weight * (total - weight))
    return float(centres[int(np.nanargmax(between[:-1]))])


def _resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == shape:
        return image
    return np.asarray(Image.fromarray(image).resize((shape[1], shape[0]), Image.BILINEAR))


def _fit_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    return np.asarray(Image.fromarray(mask).resize((shape[1], shape[0]), Image.NEAREST))


# --- defects ---------------------------------------------------------------------------------


def perlin_defect(image: np.ndarray, rng: np.random.Generator, textures: Textures,
                  region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DRAEM's defect: a Perlin blob inside `region`, filled with a transformed texture."""
    shape = image.shape[:2]
    for _ in range(50):
        mask = perlin_mask(shape, rng) & region
        if mask.mean() >= MIN_AREA:
            break
    else:
        mask = _fallback_blob(shape, rng, region)
    texture = textures.draw(rng, shape).astype(np.float32)
    beta = rng.uniform(0, BETA_MAX)
    m = mask[..., None]
    out = np.where(m, (1 - beta) * texture + beta * image.astype(np.float32), image)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), mask


def cutpaste_defect(image: np.ndarray, rng: np.random.Generator, region: np.ndarray,
                    scar: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """CutPaste's defect: a jittered patch (or scar) cut from the image, pasted centred on a
    pixel of `region`."""
    h, w = image.shape[:2]
    scale = min(h, w) / 256
    if scar:
        pw, ph = int(rng.uniform(2, 16) * scale) + 1, int(rng.uniform(10, 25) * scale) + 1
    else:
        area = rng.uniform(0.02, 0.15) * h * w
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3)))
        pw, ph = int(math.sqrt(area * aspect)), int(math.sqrt(area / aspect))
    pw, ph = max(2, min(pw, w - 1)), max(2, min(ph, h - 1))
    left, top = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
    patch = Image.fromarray(image[top : top + ph, left : left + pw])
    patch = _jitter(patch, rng)
    alpha = Image.new("L", patch.size, 255)
    if scar:
        angle = float(rng.uniform(-45, 45))
        patch = patch.rotate(angle, resample=Image.BILINEAR, expand=True)
        alpha = alpha.rotate(angle, resample=Image.NEAREST, expand=True)
    ys, xs = np.nonzero(region)
    k = int(rng.integers(len(ys)))
    cy, cx = int(ys[k]), int(xs[k])
    out = Image.fromarray(image)
    at = (cx - patch.size[0] // 2, cy - patch.size[1] // 2)
    out.paste(patch, at, alpha)
    mask_img = Image.new("L", (w, h), 0)
    mask_img.paste(alpha, at, alpha)
    mask = np.asarray(mask_img) > 0
    result = np.asarray(out)
    # A patch cut from a flat area can look like the spot it lands on: only pixels that
    # changed are the defect.
    changed = np.abs(result.astype(np.int16) - image.astype(np.int16)).max(axis=-1) > 0
    mask &= changed
    if mask.mean() < MIN_AREA:
        return _dark_blob(image, rng, region)
    return result, mask


def _jitter(patch: Image.Image, rng: np.random.Generator) -> Image.Image:
    """CutPaste's colour jitter (brightness, contrast, saturation, hue by up to 0.1)."""
    patch = ImageEnhance.Brightness(patch).enhance(rng.uniform(0.9, 1.1))
    patch = ImageEnhance.Contrast(patch).enhance(rng.uniform(0.9, 1.1))
    patch = ImageEnhance.Color(patch).enhance(rng.uniform(0.9, 1.1))
    hsv = np.asarray(patch.convert("HSV")).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + int(rng.uniform(-0.1, 0.1) * 255)) % 256
    return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


def _dark_blob(image: np.ndarray, rng: np.random.Generator, region: np.ndarray):
    """A darkened blob: the defect of last resort when a cut patch changed (almost) nothing."""
    mask = _fallback_blob(image.shape[:2], rng, region)
    out = image.copy()
    out[mask] = (out[mask].astype(np.float32) * rng.uniform(0.2, 0.5)).astype(np.uint8)
    return out, mask


def _fallback_blob(shape: tuple[int, int], rng: np.random.Generator, region: np.ndarray) -> np.ndarray:
    h, w = shape
    ys, xs = np.nonzero(region)
    k = int(rng.integers(len(ys)))
    radius = max(2.0, math.sqrt(rng.uniform(0.005, 0.02) * h * w / math.pi))
    yy, xx = np.ogrid[:h, :w]
    return (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= radius**2


def defect(image: np.ndarray, kind: str, rng: np.random.Generator, textures: Textures,
           region: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic defect of `kind` on a H x W x 3 uint8 image: (image, H x W bool mask).
    `region` (a bool mask of any size, e.g. from `foreground`) is where defects may land."""
    if kind not in KINDS:
        raise DataError(f"unknown synthetic defect kind {kind!r}; expected one of {', '.join(KINDS)} or mix")
    shape = image.shape[:2]
    region = np.ones(shape, dtype=bool) if region is None else _fit_mask(region, shape)
    if not region.any():
        region = np.ones(shape, dtype=bool)
    if kind == "perlin":
        return perlin_defect(image, rng, textures, region)
    return cutpaste_defect(image, rng, region, scar=kind == "scar")


def anomalies(images: np.ndarray, per_image: int, rng: np.random.Generator, textures: Textures | None = None,
              region: np.ndarray | None = None, kinds: tuple[str, ...] = KINDS) -> tuple[np.ndarray, np.ndarray]:
    """`per_image` defects on each of N same-sized images, kinds in turn: (N * per_image images,
    N * per_image masks). Textures default to the images themselves."""
    textures = textures or Textures(list(images))
    out, masks = [], []
    for i, image in enumerate(images):
        for j in range(per_image):
            img, mask = defect(image, kinds[(i * per_image + j) % len(kinds)], rng, textures, region)
            out.append(img)
            masks.append(mask)
    return np.stack(out), np.stack(masks)


# --- the command ------------------------------------------------------------------------------


def base_images(data: str | Path) -> tuple[list[Path], str]:
    """The normal images defects are drawn on, and where they came from: an MVTec-layout
    dataset's test/good (images a model was not fitted on), else its train/good; a folder's
    normal images."""
    from normalcy.image.datasets import NORMAL_DEFECT, load_dataset

    dataset = load_dataset(data)
    good = [s.path for s in dataset.test if s.label == 0]
    if good:
        return good, "normal test images"
    if not dataset.train:
        raise DataError(f"{data} holds no normal images to draw defects on")
    where = f"{Path(data) / 'train' / NORMAL_DEFECT}" if dataset.layout == "mvtec" else "normal images"
    return dataset.train, f"normal training images ({where}; do not evaluate a model fitted on them)"


def write_test_set(data: str | Path, out: str | Path, count: int, kind: str = "mix", seed: int = 0,
                   textures: str | Path | None = None) -> dict:
    """Write an MVTec-layout test set under `out`: test/good/ (the normal images the defects
    were drawn on, as they are), test/<kind>/NAME_K.png and ground_truth/<kind>/NAME_K_mask.png,
    and synthesis.json (what was done). `out` must not exist or be empty; it appears whole or
    not at all. Returns the summary written to synthesis.json."""
    if not (isinstance(count, int) and count >= 1):
        raise DataError(f"count must be a positive integer, got {count!r}")
    kinds = KINDS if kind == "mix" else (kind,)
    if kind != "mix" and kind not in KINDS:
        raise DataError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)} or mix")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"output {out} exists and is not an empty folder; choose a new one")
    start = time.perf_counter()
    bases, origin = base_images(data)
    source = Textures.from_folder(textures) if textures is not None else None
    region = foreground([read_image(p) for p in bases[:64]])
    rng = np.random.default_rng(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    counts = dict.fromkeys(kinds, 0)
    try:
        (staging / "test" / "good").mkdir(parents=True)
        for k in kinds:
            (staging / "test" / k).mkdir(parents=True)
            (staging / "ground_truth" / k).mkdir(parents=True)
        plan = [(i % len(bases), kinds[i % len(kinds)]) for i in range(count)]
        names: set[str] = set()
        for b in progress(range(len(bases)), desc="synthesize", unit="image"):
            jobs = [k for base, k in plan if base == b]
            path = bases[b]
            name = _unique(path.stem, names)
            shutil.copyfile(path, staging / "test" / "good" / f"{name}{path.suffix.lower()}")
            if not jobs:
                continue
            image = read_image(path)
            own = source or Textures([image] + [read_image(bases[int(j)]) for j in rng.integers(len(bases), size=2)])
            for j, k in enumerate(jobs):
                img, mask = defect(image, k, rng, own, region)
                stem = f"{name}_{j}"
                Image.fromarray(img).save(staging / "test" / k / f"{stem}.png", compress_level=1)
                Image.fromarray(mask.astype(np.uint8) * 255).save(staging / "ground_truth" / k / f"{stem}_mask.png")
                counts[k] += 1
        summary = {"data": str(data), "bases": origin, "n_normal": len(bases), "n_anomalous": count,
                   "per_kind": counts, "seed": seed, "textures": str(textures) if textures else "the normal images",
                   "foreground_share": round(float(region.mean()), 4),
                   "seconds": round(time.perf_counter() - start, 2)}
        (staging / "synthesis.json").write_text(json.dumps(summary, indent=2) + "\n")
        os.chmod(staging, 0o777 & ~_umask())
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _unique(stem: str, taken: set[str]) -> str:
    name, k = stem, 1
    while name in taken:
        k += 1
        name = f"{stem}-{k}"
    taken.add(name)
    return name


def _umask() -> int:
    from normalcy.core.benchmark import current_umask

    return current_umask()
