"""Synthetic anomalies (normalcy.image.synthetic) and `normalcy image synthesize`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clirunner import run_in_process as run
from normalcy.core.errors import DataError
from normalcy.image import synthetic
from normalcy.image.datasets import load_dataset, load_mask_for
from normalcy.image.demo import make_dataset, make_part
from normalcy.image.io import read_image

SIZE = 96


def disc_images(n: int, seed: int = 0) -> np.ndarray:
    """Bright noisy discs of radius 30 on a dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < 30**2
    out = []
    for _ in range(n):
        img = np.where(disc, 170.0, 20.0) + rng.normal(0, 6, (SIZE, SIZE))
        out.append(np.repeat(np.clip(img, 0, 255)[..., None], 3, axis=2).astype(np.uint8))
    return np.stack(out), disc


def test_perlin_noise_is_smooth_bounded_and_seeded():
    a = synthetic.perlin((64, 64), (4, 4), np.random.default_rng(0))
    b = synthetic.perlin((64, 64), (4, 4), np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-9 and a.std() > 0.1
    # Gradient noise is continuous: neighbours differ by a small share of the range.
    assert np.abs(np.diff(a, axis=0)).max() < 0.2 and np.abs(np.diff(a, axis=1)).max() < 0.2
    # Finer lattices vary faster.
    fine = synthetic.perlin((64, 64), (16, 16), np.random.default_rng(0))
    assert np.abs(np.diff(fine, axis=1)).mean() > 2 * np.abs(np.diff(a, axis=1)).mean()


def test_foreground_finds_the_part_and_gives_textures_the_whole_frame():
    images, disc = disc_images(6)
    found = synthetic.foreground(images, size=SIZE)
    assert (found & disc).sum() / (found | disc).sum() > 0.9  # intersection over union
    rng = np.random.default_rng(1)
    textures = rng.integers(0, 256, (6, SIZE, SIZE, 3), dtype=np.uint8)
    assert synthetic.foreground(textures, size=SIZE).all()
    assert synthetic.foreground(np.full((3, SIZE, SIZE, 3), 200, np.uint8), size=SIZE).all()


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_a_defect_changes_only_its_mask_and_lands_on_the_part(kind):
    images, disc = disc_images(4)
    rng = np.random.default_rng(7)
    textures = synthetic.Textures(list(images))
    for image in images:
        out, mask = synthetic.defect(image, kind, rng, textures, disc)
        assert out.shape == image.shape and out.dtype == np.uint8 and mask.shape == image.shape[:2]
        assert mask.mean() >= synthetic.MIN_AREA
        np.testing.assert_array_equal(out[~mask], image[~mask])  # nothing outside the mask changed
        assert (out[mask] != image[mask]).any(axis=-1).mean() > 0.5
        if kind == "perlin":
            assert not (mask & ~disc).any()  # blended only onto the part
        else:
            ys, xs = np.nonzero(mask)
            assert disc[int(ys.mean()), int(xs.mean())]  # pasted centred on the part


def test_anomalies_cycle_the_kinds_and_are_seeded():
    images, _ = disc_images(2)
    a, ma = synthetic.anomalies(images, 3, np.random.default_rng(5))
    b, mb = synthetic.anomalies(images, 3, np.random.default_rng(5))
    assert a.shape == (6, SIZE, SIZE, 3) and ma.shape == (6, SIZE, SIZE)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ma, mb)


def test_unknown_kind_is_refused():
    images, _ = disc_images(1)
    with pytest.raises(DataError, match="unknown synthetic defect kind 'rust'"):
        synthetic.defect(images[0], "rust", np.random.default_rng(0), synthetic.Textures(list(images)))


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "parts", n_train=6, n_good=3, n_per_defect=1)


def test_write_test_set_writes_an_mvtec_test_set_that_loads(parts, tmp_path):
    out = tmp_path / "synthetic"
    summary = synthetic.write_test_set(parts, out, 7, "mix", seed=1)
    assert summary["per_kind"] == {"perlin": 3, "cutpaste": 2, "scar": 2} and summary["n_normal"] == 3
    assert summary["bases"] == "normal test images"
    dataset = load_dataset(out)
    assert dataset.layout == "mvtec" and dataset.train == []
    good = [s for s in dataset.test if s.label == 0]
    bad = [s for s in dataset.test if s.label == 1]
    assert len(good) == 3 and len(bad) == 7 and all(s.mask_path is not None for s in bad)
    originals = {p.name: read_image(p) for p in (parts / "test" / "good").iterdir()}
    for sample in good:  # the normal images are the bases, unchanged
        np.testing.assert_array_equal(read_image(sample.path), originals[sample.path.name])
    for sample in bad:
        image = read_image(sample.path)
        mask = load_mask_for(sample, image.shape)
        base = originals[sample.path.stem.rsplit("_", 1)[0] + ".png"]
        np.testing.assert_array_equal(image[~mask], base[~mask])
        assert mask.any()
    assert json.loads((out / "synthesis.json").read_text())["n_anomalous"] == 7


def test_write_test_set_without_normal_test_images_uses_the_training_ones_and_says_so(tmp_path):
    folder = tmp_path / "good-only"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(make_part(rng)).save(folder / f"{i}.png")
    summary = synthetic.write_test_set(folder, tmp_path / "out", 2, "scar")
    assert summary["per_kind"] == {"scar": 2} and summary["bases"].startswith("normal training images")


def test_write_test_set_refuses_a_non_empty_output_and_leaves_nothing_on_failure(parts, tmp_path, monkeypatch):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        synthetic.write_test_set(parts, taken, 2)
    assert (taken / "x.txt").read_text() == "mine"

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(synthetic, "defect", broken)
    with pytest.raises(OSError):
        synthetic.write_test_set(parts, tmp_path / "new", 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no half-written folder


def test_a_texture_folder_fills_perlin_defects(parts, tmp_path):
    textures = tmp_path / "textures"
    textures.mkdir()
    Image.fromarray(np.full((32, 32, 3), (255, 0, 255), np.uint8)).save(textures / "magenta.png")
    for source, flat in ((textures, True), (None, False)):
        out = tmp_path / f"out-{flat}"
        synthetic.write_test_set(parts, out, 3, "perlin", textures=source)
        residuals = []
        for sample in (s for s in load_dataset(out).test if s.label == 1):
            image = read_image(sample.path).astype(float)
            mask = load_mask_for(sample, image.shape)
            base = read_image(parts / "test" / "good" / (sample.path.stem.rsplit("_", 1)[0] + ".png")).astype(float)
            # DRAEM's blend: (1 - beta) * texture + beta * image. A flat texture, whatever colour
            # transforms it went through, leaves the defect an affine function of the image.
            for c in range(3):
                x = np.c_[base[mask, c], np.ones(mask.sum())]
                fit = np.linalg.lstsq(x, image[mask, c], rcond=None)[0]
                residuals.append(np.std(image[mask, c] - x @ fit))
        assert (max(residuals) < 1.0) == flat, residuals


def test_the_synthesize_command(parts, tmp_path):
    out = tmp_path / "synthetic"
    result = run("image", "synthesize", "--data", str(parts), "--out", str(out), "--count", "4", "--kind", "cutpaste")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrote 4 defective images (4 cutpaste) with masks and the 3 normal test images")
    assert len(list((out / "ground_truth" / "cutpaste").iterdir())) == 4
    again = run("image", "synthesize", "--data", str(parts), "--out", str(out), "--count", "4")
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "not an empty folder" in again.stderr
