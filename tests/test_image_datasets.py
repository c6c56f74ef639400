"""Tests for normalcy.image.datasets: every dataset is generated in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from normalcy.core.errors import DataError
from normalcy.image.datasets import (
    ImageDataset,
    ImageSample,
    load_dataset,
    load_mask_for,
)
from normalcy.image.io import read_image


def _image(path: Path, size: tuple[int, int] = (16, 12), value: int = 128) -> Path:
    """Write an RGB image of Pillow size (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, value, value)).save(path)
    return path


def _mask(path: Path, size: tuple[int, int] = (16, 12), box=(2, 3, 6, 8)) -> Path:
    """Write an 'L' mask of Pillow size (width, height), 255 inside box=(x0, y0, x1, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    data[y0:y1, x0:x1] = 255
    Image.fromarray(data, mode="L").save(path)
    return path


def _mvtec(root: Path) -> Path:
    _image(root / "train" / "good" / "000.png")
    _image(root / "train" / "good" / "001.png")
    _image(root / "test" / "good" / "000.png")
    _image(root / "test" / "scratch" / "000.png")
    _image(root / "test" / "scratch" / "001.png")  # no mask on purpose
    _image(root / "test" / "crack" / "000.png")
    _mask(root / "ground_truth" / "scratch" / "000_mask.png")
    _mask(root / "ground_truth" / "crack" / "000.png")  # plain-stem mask name
    return root


# --- MVTec layout ----------------------------------------------------------------------


def test_mvtec_layout_detected_with_masks(tmp_path):
    root = _mvtec(tmp_path / "bottle")
    ds = load_dataset(root)
    assert isinstance(ds, ImageDataset)
    assert ds.layout == "mvtec" and ds.root == root
    assert ds.train == [root / "train/good/000.png", root / "train/good/001.png"]

    by_key = {(s.defect, s.path.name): s for s in ds.test}
    assert len(ds.test) == 4
    good = by_key[("good", "000.png")]
    assert good.label == 0 and good.mask_path is None
    scratch0 = by_key[("scratch", "000.png")]
    assert scratch0.label == 1
    assert scratch0.mask_path == root / "ground_truth/scratch/000_mask.png"
    scratch1 = by_key[("scratch", "001.png")]
    assert scratch1.label == 1 and scratch1.mask_path is None
    assert by_key[("crack", "000.png")].mask_path == root / "ground_truth/crack/000.png"


def test_mvtec_masks_load_with_expected_content(tmp_path):
    root = _mvtec(tmp_path / "bottle")
    ds = load_dataset(root)
    by_key = {(s.defect, s.path.name): s for s in ds.test}

    sample = by_key[("scratch", "000.png")]
    image = read_image(sample.path)
    mask = load_mask_for(sample, image.shape)
    assert mask.shape == (12, 16) and mask.dtype == bool
    assert mask.sum() == 4 * 5 and mask[3:8, 2:6].all()

    resized = load_mask_for(sample, image.shape, shape=(24, 32))
    assert resized.shape == (24, 32) and resized.sum() == 4 * 4 * 5

    good_mask = load_mask_for(by_key[("good", "000.png")], image.shape, shape=(6, 8))
    assert good_mask.shape == (6, 8) and not good_mask.any()

    # Anomalous without a mask: no pixel ground truth.
    assert load_mask_for(by_key[("scratch", "001.png")], image.shape) is None


def test_mvtec_without_test_folder_is_train_only(tmp_path):
    _image(tmp_path / "ds" / "train" / "good" / "a.png")
    ds = load_dataset(tmp_path / "ds")
    assert ds.layout == "mvtec" and len(ds.train) == 1 and ds.test == []


def test_mvtec_empty_train_raises_naming_folder(tmp_path):
    root = tmp_path / "ds"
    (root / "train" / "good").mkdir(parents=True)
    (root / "train" / "good" / "readme.txt").write_text("not an image")
    _image(root / "test" / "good" / "0.png")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(root / "train" / "good") in str(info.value)
    assert "no training images" in str(info.value)


def test_mvtec_missing_train_good_raises(tmp_path):
    root = tmp_path / "ds"
    _image(root / "train" / "other" / "0.png")
    with pytest.raises(DataError, match="train/good"):
        load_dataset(root)


def test_mvtec_duplicate_stems_with_masks_raise(tmp_path):
    root = tmp_path / "ds"
    _image(root / "train" / "good" / "0.png")
    _image(root / "test" / "hole" / "a.png")
    _image(root / "test" / "hole" / "a.bmp")
    _mask(root / "ground_truth" / "hole" / "a_mask.png")
    with pytest.raises(DataError, match="stem"):
        load_dataset(root)


# --- folder layout ---------------------------------------------------------------------


def test_folder_layout_images_in_root(tmp_path):
    root = tmp_path / "parts"
    _image(root / "n1.png")
    _image(root / "n2.jpg")
    _image(root / "anomalous" / "x.png")
    _image(root / "anomalous" / "y.png")
    _mask(root / "masks" / "x.png")
    ds = load_dataset(root)
    assert ds.layout == "folder"
    assert [p.name for p in ds.train] == ["n1.png", "n2.jpg"]
    assert [(s.path.name, s.label, s.defect) for s in ds.test] == [
        ("x.png", 1, "anomalous"),
        ("y.png", 1, "anomalous"),
    ]
    assert ds.test[0].mask_path == root / "masks" / "x.png"
    assert ds.test[1].mask_path is None


def test_folder_layout_normal_subfolder_and_test_good(tmp_path):
    root = tmp_path / "parts"
    _image(root / "good" / "a.png")
    _image(root / "stray.png")  # ignored: good/ holds the normal images
    _image(root / "defect" / "d.png")
    _mask(root / "masks" / "d_mask.png")
    _image(root / "test_good" / "t.png")
    ds = load_dataset(root)
    assert ds.layout == "folder"
    assert ds.train == [root / "good" / "a.png"]
    assert ds.test == [
        ImageSample(root / "defect" / "d.png", 1, "anomalous", root / "masks" / "d_mask.png"),
        ImageSample(root / "test_good" / "t.png", 0, "good", None),
    ]


def test_folder_layout_mask_suffix_name_preferred(tmp_path):
    root = tmp_path / "parts"
    _image(root / "normal" / "a.png")
    _image(root / "abnormal" / "d.png")
    _mask(root / "masks" / "d.png")
    _mask(root / "masks" / "d_mask.png")
    ds = load_dataset(root)
    assert ds.test[0].mask_path == root / "masks" / "d_mask.png"


def test_folder_layout_ambiguous_normal_folders(tmp_path):
    root = tmp_path / "parts"
    _image(root / "normal" / "a.png")
    _image(root / "good" / "b.png")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert str(root / "normal") in str(info.value) and str(root / "good") in str(info.value)


def test_folder_layout_empty_train_names_folders_looked_in(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    message = str(info.value)
    assert "no training images" in message and str(root) in message
    assert "normal" in message and "good" in message


def test_folder_layout_empty_normal_folder(tmp_path):
    root = tmp_path / "parts"
    (root / "normal").mkdir(parents=True)
    _image(root / "anomalous" / "x.png")
    with pytest.raises(DataError, match="no training images"):
        load_dataset(root)


# --- errors ----------------------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        load_dataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_root_is_a_file(tmp_path):
    path = _image(tmp_path / "a.png")
    with pytest.raises(DataError, match="not a directory"):
        load_dataset(path)


def test_mask_size_mismatch_names_both_files(tmp_path):
    root = tmp_path / "ds"
    _image(root / "train" / "good" / "0.png")
    image_path = _image(root / "test" / "cut" / "0.png", size=(16, 12))
    mask_path = _mask(root / "ground_truth" / "cut" / "0_mask.png", size=(8, 8), box=(0, 0, 2, 2))
    ds = load_dataset(root)  # sizes are not checked while listing
    (sample,) = ds.test
    assert sample.mask_path == mask_path
    with pytest.raises(DataError) as info:
        load_mask_for(sample, read_image(image_path).shape)
    assert str(mask_path) in str(info.value) and str(image_path) in str(info.value)


def test_load_mask_for_unreadable_mask_raises(tmp_path):
    image_path = _image(tmp_path / "i.png")
    mask_path = tmp_path / "m.png"
    mask_path.write_bytes(b"nope")
    with pytest.raises(DataError, match="m.png"):
        load_mask_for(ImageSample(image_path, 1, "x", mask_path), (12, 16))



# --- MVTec LOCO masks and test-only sets --------------------------------------------------------


def test_loco_mask_folders_are_read_as_the_union_of_their_regions(tmp_path):
    root = tmp_path / "loco"
    _image(root / "train" / "good" / "000.png")
    _image(root / "test" / "good" / "000.png")
    _image(root / "test" / "logical_anomalies" / "000.png")
    _mask(root / "ground_truth" / "logical_anomalies" / "000" / "000.png", box=(1, 1, 3, 3))
    _mask(root / "ground_truth" / "logical_anomalies" / "000" / "001.png", box=(10, 8, 14, 11))
    (sample,) = [s for s in load_dataset(root).test if s.label == 1]
    assert sample.mask_path == root / "ground_truth" / "logical_anomalies" / "000"
    mask = load_mask_for(sample, (12, 16))
    expected = np.zeros((12, 16), dtype=bool)
    expected[1:3, 1:3] = True
    expected[8:11, 10:14] = True
    np.testing.assert_array_equal(mask, expected)


def test_a_loco_region_mask_of_the_wrong_size_names_itself(tmp_path):
    root = tmp_path / "loco"
    _image(root / "train" / "good" / "000.png")
    _image(root / "test" / "structural_anomalies" / "000.png")
    _mask(root / "ground_truth" / "structural_anomalies" / "000" / "000.png")
    bad = _mask(root / "ground_truth" / "structural_anomalies" / "000" / "001.png", size=(8, 8))
    (sample,) = load_dataset(root).test
    with pytest.raises(DataError, match=f"mask {bad} is 8x8"):
        load_mask_for(sample, (12, 16))


def test_an_empty_loco_mask_folder_fails_clearly(tmp_path):
    root = tmp_path / "loco"
    _image(root / "train" / "good" / "000.png")
    _image(root / "test" / "logical_anomalies" / "000.png")
    (root / "ground_truth" / "logical_anomalies" / "000").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no mask images"):
        load_dataset(root)


def test_a_test_only_mvtec_set_loads_without_training_images(tmp_path):
    root = tmp_path / "synthetic"
    _image(root / "test" / "good" / "000.png")
    _image(root / "test" / "perlin" / "000_0.png")
    _mask(root / "ground_truth" / "perlin" / "000_0_mask.png")
    ds = load_dataset(root)
    assert ds.layout == "mvtec" and ds.train == [] and len(ds.test) == 2
