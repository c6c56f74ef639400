"""Few-shot fitting: a detector fitted on K = 1..8 normal images, augmented.

K images show one part, one pose and one lighting; new normal parts differ in all three. So
each shot is multiplied into augmented views (`augment_view`) that add the variation the shots
lack, chosen by `augment`:

- "mild": small affine changes (shift up to 4 % of the side, scale 0.95-1.05, rotation up to
  5 degrees) and colour changes (brightness and contrast 0.9-1.1, colour saturation
  0.9-1.1). Safe for every product: a camera station varies at least this much.
- "rotate": "mild" plus any rotation and mirror flips, for parts whose orientation is free
  (round parts seen from above, parts dropped on a belt in any pose).
- "auto" (default): "rotate" when the shots say orientation is free, else "mild".
  `orientation_free` decides: a PatchCore fitted on the shots scores turned (90 and 180
  degrees) and mirrored views of (at most PROBE_SHOTS of) them no higher than
  ORIENTATION_MARGIN times the mild views' scores. A part with a fixed orientation (text,
  connectors on one side, a directional texture) gives turned views high scores, so turning
  stays out of its memory; a part that looks the same turned (a bottle or a disc from above)
  passes.
- "none": the shots as they are.

Why not rotate always: rotations would teach a fixed-orientation product that a part mounted
the wrong way round is normal. How the settings were chosen, on the demo's synthetic discs
(`normalcy.image.demo`), not on MVTec: ORIENTATION_MARGIN lies between the disc's ratio (0.55
at 64 px) and that of the same disc carrying a label of horizontal lines (2.1); with one shot
and no views the threshold (set on mild views the bank had not seen) lay above every demo
defect, while with views it flagged every defect and none of 20 unseen good discs. VIEWS
and the ranges are small conventional values, VIEWS kept low for fitting time;
docs/images.md gives the measured figures on bottle.

The memory bank must not collapse: with K shots a 1 % coreset of the views keeps a few hundred
patches, too few to cover the variation the views were made for. `fit_few_shot` keeps at
least FEWSHOT_BANK patches (at 256 px a coreset of about a third of the patches of K + VIEWS
images; keeping all of them made scoring 4x slower) unless the detector's `coreset_ratio` was
set to another value than its default.

The threshold cannot come from held-out normals (there are none): with a false-alarm-rate
strategy it is set on fresh augmented views of the shots (CALIBRATION_VIEWS of them, views the
detector was not fitted on; `FalseAlarmRate` extrapolates a rate they cannot resolve), raised
by THRESHOLD_MARGIN because unseen parts differ more from the shots than views of the shots
do; the calibration's note says so, with the share of synthetic defects
(`normalcy.image.synthetic`) drawn on those views that the threshold flags. A fixed threshold
is used as given; an F1 threshold needs --validation; no strategy (None) leaves the detector
without one (benchmarks).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageEnhance

from normalcy.core.errors import DataError
from normalcy.core.results import Calibration
from normalcy.core.threshold import F1Optimal, FalseAlarmRate, Fixed, ThresholdStrategy

AUGMENTS = ("auto", "rotate", "mild", "none")
VIEWS = 32  # augmented views in all (K shots share them), besides the shots themselves
CALIBRATION_VIEWS = 50  # fresh views that set the threshold
CALIBRATION_DEFECTS = 20  # synthetic defects whose recall the calibration reports
FEWSHOT_BANK = 10_000  # memory bank floor, patches
PROBE_SHOTS = 4  # shots the orientation check looks at
ORIENTATION_MARGIN = 1.5
THRESHOLD_MARGIN = 1.1
SHIFT, SCALE, TILT, COLOUR = 0.04, 0.05, 5.0, 0.1


def augment_view(image: np.ndarray, rng: np.random.Generator, rotate: bool) -> np.ndarray:
    """One augmented view of an H x W x 3 uint8 image, the same shape and dtype: small affine
    and colour changes, and with `rotate` any rotation and a random mirror flip. Pixels moved
    in from outside the frame take the image's border colour, so no black wedge appears."""
    h, w = image.shape[:2]
    fill = tuple(int(v) for v in np.median(np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]]), axis=0))
    img = Image.fromarray(image)
    if rotate and rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    angle = float(rng.uniform(0, 360)) if rotate else float(rng.uniform(-TILT, TILT))
    scale = float(rng.uniform(1 - SCALE, 1 + SCALE))
    dx, dy = (float(v) for v in rng.uniform(-SHIFT, SHIFT, 2) * (w, h))
    # Pillow's affine maps output to input pixels: the inverse of rotate-scale-shift about the centre.
    a = math.radians(angle)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    cx, cy = w / 2, h / 2
    matrix = (cos, sin, cx - cos * (cx + dx) - sin * (cy + dy),
              -sin, cos, cy + sin * (cx + dx) - cos * (cy + dy))
    img = img.transform((w, h), Image.AFFINE, matrix, resample=Image.BILINEAR, fillcolor=fill)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enhancer(img).enhance(float(rng.uniform(1 - COLOUR, 1 + COLOUR)))
    return np.asarray(img.convert("RGB"))


def augmented_views(shots: list[np.ndarray], n: int, rotate: bool, seed: int) -> list[np.ndarray]:
    """n views, the shots taken in turn, drawn with `seed`: the same seed gives the same views."""
    rng = np.random.default_rng(seed)
    return [augment_view(shots[i % len(shots)], rng, rotate) for i in range(n)]


def pick_shots(items: list, k: int, seed: int) -> list:
    """k of the items, drawn at random by seed (in their original order)."""
    if not (isinstance(k, int) and not isinstance(k, bool) and k >= 1):
        raise DataError(f"shots must be a positive integer, got {k!r}")
    if k > len(items):
        raise DataError(f"{k} shots asked for but only {len(items)} training images were found")
    chosen = np.sort(np.random.default_rng(seed).choice(len(items), k, replace=False))
    return [items[i] for i in chosen]


def orientation_free(detector, shots: list[np.ndarray], seed: int = 0) -> tuple[bool, float]:
    """Whether turned (90 and 180 degrees) and mirrored views of the shots look as normal as
    mild views, and the ratio of median scores (the worst of the three turns / mild), by a
    PatchCore on `detector`'s backbone and size fitted on the shots (quick for any detector,
    trained ones included)."""
    from normalcy.image.patchcore import PatchCore

    shots = shots[:PROBE_SHOTS]
    same = {k: getattr(detector, k) for k in ("backbone", "image_size", "resize", "threads", "weights", "seed")
            if hasattr(detector, k)}
    probe = PatchCore(**same).fit(shots)
    rng = np.random.default_rng(seed)
    mild = [augment_view(s, rng, rotate=False) for s in shots for _ in range(2)]
    mild_score = max(float(np.median(probe.decision_function(mild))), 1e-12)
    # Every turn must look normal: the worst transform's median decides.
    turned = max(float(np.median(probe.decision_function([np.ascontiguousarray(turn(s)) for s in shots])))
                 for turn in (np.rot90, lambda s: np.rot90(s, 2), lambda s: s[:, ::-1]))
    ratio = turned / mild_score
    return ratio <= ORIENTATION_MARGIN, ratio


def fit_few_shot(detector, shots: list[np.ndarray], strategy: ThresholdStrategy | None, augment: str = "auto",
                 seed: int = 0):
    """Fit `detector` on the shots (working-size uint8 arrays) and their augmented views and set
    its threshold by the few-shot rule (module docstring). Returns the detector, with
    `fewshot_` describing what was done."""
    if augment not in AUGMENTS:
        raise DataError(f"augment must be one of {', '.join(AUGMENTS)}, got {augment!r}")
    if isinstance(strategy, F1Optimal):
        raise DataError("threshold f1 needs labelled anomalies: give validation data, or use fpr:RATE or fixed:VALUE")
    if not shots:
        raise DataError("few-shot fitting needs at least one normal image")
    ratio = None
    rotate = augment == "rotate"
    if augment == "auto":
        rotate, ratio = orientation_free(detector, shots, seed)
    views = [] if augment == "none" else augmented_views(shots, VIEWS, rotate, seed)
    _widen_bank(detector, len(shots) + len(views))
    detector.fit(list(shots) + views)
    info = {"shots": len(shots), "augment": augment, "rotate": rotate, "views": len(views),
            "orientation_ratio": ratio}
    if isinstance(strategy, Fixed):
        detector.set_threshold(strategy.compute(), strategy.spec())
    elif strategy is not None:
        _calibrate(detector, shots, strategy, rotate, seed, info)
    detector.fewshot_ = info
    return detector


def _widen_bank(detector, n_images: int) -> None:
    """Keep at least FEWSHOT_BANK patches when the detector keeps a coreset at its default ratio."""
    if "coreset_ratio" not in detector.get_params(deep=False):
        return
    default = type(detector)().coreset_ratio
    if detector.coreset_ratio != default:
        return  # set on purpose
    patches = n_images * (detector.image_size // 8) ** 2
    detector.coreset_ratio = min(1.0, max(default, FEWSHOT_BANK / patches))


def _calibrate(detector, shots, strategy: FalseAlarmRate, rotate: bool, seed: int, info: dict) -> None:
    from normalcy.image.synthetic import Textures, anomalies, foreground

    fresh = augmented_views(shots, CALIBRATION_VIEWS, rotate, seed + 1)
    normal = detector.decision_function(fresh)
    base = strategy.calibrate(normal)
    threshold = base.threshold + (THRESHOLD_MARGIN - 1) * abs(base.threshold)  # raised, whatever the sign
    rng = np.random.default_rng(seed + 2)
    region = foreground(shots)
    defects, _ = anomalies(np.stack(fresh[:CALIBRATION_DEFECTS]), 1, rng, Textures(list(shots)), region)
    recall = float(np.mean(detector.decision_function(list(defects)) >= threshold))
    shot_text = "the shot" if len(shots) == 1 else f"the {len(shots)} shots"
    note = (f"few-shot threshold: {THRESHOLD_MARGIN:g} x the {strategy.spec()} quantile of {len(fresh)} fresh "
            f"augmented views of {shot_text} (no held-out normal images exist); unseen normal parts "
            f"vary more than views of the shots, so the false-alarm rate is not measured: check it on new normal "
            f"images. Synthetic defects on those views flagged: {100 * recall:.0f}%")
    detector.calibration_ = Calibration(f"{strategy.spec()} few-shot", threshold, len(fresh),
                                        float(np.mean(normal >= threshold)), "augmented views", note)
    detector.threshold_ = threshold
    info["synthetic_recall"] = recall


def fit_shots_model(data, detector, strategy: ThresholdStrategy, shots: int, augment: str = "auto", seed: int = 0,
                    validation=None):
    """`normalcy image fit --shots K`: fit on K training images of `data` drawn by `seed`,
    augmented; the threshold from labelled `validation` data when given, else by the few-shot
    rule (`fit_few_shot`)."""
    from normalcy.image.base import load_square
    from normalcy.image.datasets import load_dataset

    dataset = load_dataset(data)
    if not dataset.train:
        raise DataError(f"{data} has no training images: expected normal images in {data}/train/good")
    detector._check_params()
    images, _ = load_square(pick_shots(dataset.train, shots, seed), detector.image_size, detector.resize)
    if validation is None:
        return fit_few_shot(detector, images, strategy, augment, seed)
    val = load_dataset(validation).test
    if not val:
        raise DataError(f"validation data {validation} has no test images")
    fit_few_shot(detector, images, None, augment, seed)
    return detector.calibrate([s.path for s in val], strategy, y=np.array([s.label for s in val]))
