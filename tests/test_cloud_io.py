"""Reading point clouds, cross-checked with files a second library wrote (plyfile for PLY,
pypcd4 for PCD, numpy for .npy and text), clear errors and limits, and the samplers against
brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement
from pypcd4 import Encoding
from pypcd4 import PointCloud as PcdCloud

from normalcy.cloud.io import decode_cloud, read_cloud, write_ply
from normalcy.cloud.sampling import farthest_point_sample, sample, voxel_downsample, voxel_sample
from normalcy.core.errors import DataError


@pytest.fixture(scope="module")
def cloud():
    rng = np.random.default_rng(3)
    points = rng.normal(0, 10, (300, 3))
    normals = rng.normal(size=(300, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    colors = rng.integers(0, 256, (300, 3)).astype(np.uint8)
    return points, normals, colors


def _plyfile(path, points, normals, colors, text: bool, byte_order: str = "<", faces: bool = False):
    dtype = [("x", "f8"), ("y", "f8"), ("z", "f8"), ("nx", "f4"), ("ny", "f4"), ("nz", "f4"),
             ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("quality", "f4")]
    vertex = np.empty(len(points), dtype=dtype)
    for j, axis in enumerate("xyz"):
        vertex[axis] = points[:, j]
        vertex["n" + axis] = normals[:, j]
    vertex["red"], vertex["green"], vertex["blue"] = colors.T
    vertex["quality"] = 1.0
    elements = [PlyElement.describe(vertex, "vertex")]
    if faces:
        face = np.empty(2, dtype=[("vertex_indices", "i4", (3,))])
        face["vertex_indices"] = [[0, 1, 2], [2, 3, 4]]
        elements.append(PlyElement.describe(face, "face"))
    PlyData(elements, text=text, byte_order=byte_order).write(str(path))


@pytest.mark.parametrize("text, order", [(True, "="), (False, "<"), (False, ">")],
                         ids=["ascii", "binary-little-endian", "binary-big-endian"])
def test_ply_written_by_plyfile(tmp_path, cloud, text, order):
    points, normals, colors = cloud
    _plyfile(tmp_path / "c.ply", points, normals, colors, text, order, faces=True)
    got = read_cloud(tmp_path / "c.ply")
    np.testing.assert_allclose(got.points, points, rtol=1e-6 if text else 0)
    np.testing.assert_allclose(got.normals, normals, atol=1e-6)
    np.testing.assert_array_equal(got.colors, colors)


def test_our_ply_is_read_by_plyfile(tmp_path, cloud):
    points, normals, colors = cloud
    scores = np.linspace(0, 1, len(points))
    write_ply(tmp_path / "w.ply", points, normals, colors, {"score": scores})
    vertex = PlyData.read(str(tmp_path / "w.ply"))["vertex"]
    np.testing.assert_allclose(np.column_stack([vertex["x"], vertex["y"], vertex["z"]]), points, rtol=1e-6)
    np.testing.assert_array_equal(np.column_stack([vertex["red"], vertex["green"], vertex["blue"]]), colors)
    np.testing.assert_allclose(vertex["score"], scores, rtol=1e-6)


@pytest.mark.parametrize("encoding", [Encoding.ASCII, Encoding.BINARY], ids=["ascii", "binary"])
def test_pcd_written_by_pypcd4(tmp_path, cloud, encoding):
    points, normals, colors = cloud
    rgb = PcdCloud.encode_rgb(colors)
    columns = [c.astype(np.float32) for c in (*points.T, *normals.T)]
    pcd = PcdCloud.from_points([*columns, rgb],
                               ("x", "y", "z", "normal_x", "normal_y", "normal_z", "rgb"),
                               (np.float32,) * 6 + (rgb.dtype,))
    pcd.save(tmp_path / "c.pcd", encoding=encoding)
    got = read_cloud(tmp_path / "c.pcd")
    np.testing.assert_allclose(got.points, points.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(got.normals, normals, atol=1e-6)
    if encoding == Encoding.BINARY:
        np.testing.assert_array_equal(got.colors, colors)
    else:
        # pypcd4 writes ASCII floats with 10 decimals, so a packed colour (a float of ~1e-38)
        # comes out as 0: the colours of this file are black, as any reader must see them.
        assert not got.colors.any()


def test_ascii_pcd_packed_colour_written_by_hand(tmp_path):
    # PCL's convention: rgb is a float whose bits are 0x00RRGGBB, printed with full precision.
    packed = np.array([(196 << 16) | (212 << 8) | 150], dtype="<u4").view("<f4")[0]
    (tmp_path / "c.pcd").write_text("VERSION 0.7\nFIELDS x y z rgb\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
                                    f"WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA ascii\n1 2 3 {packed:.9g}\n")
    got = read_cloud(tmp_path / "c.pcd")
    np.testing.assert_array_equal(got.points, [[1, 2, 3]])
    np.testing.assert_array_equal(got.colors, [[196, 212, 150]])


def test_pcd_drops_nan_points_and_skips_multi_valued_fields(tmp_path):
    # An organised scan (WIDTH x HEIGHT) marks missing returns with NaN; a 33-valued FPFH field
    # rides along. Written by hand from the PCD v0.7 spec.
    xyz = np.array([[0, 0, 0], [1, 2, 3], [np.nan] * 3, [4, 5, 6]], dtype="<f4")
    rows = np.zeros(4, dtype=[("xyz", "<f4", (3,)), ("fpfh", "<f4", (33,))])
    rows["xyz"] = xyz
    header = ("# .PCD v0.7\nVERSION 0.7\nFIELDS x y z fpfh\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 33\n"
              "WIDTH 2\nHEIGHT 2\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS 4\nDATA binary\n")
    (tmp_path / "o.pcd").write_bytes(header.encode() + rows.tobytes())
    got = read_cloud(tmp_path / "o.pcd")
    np.testing.assert_array_equal(got.points, xyz[[0, 1, 3]])


def test_text_and_npy_columns(tmp_path, cloud):
    points, normals, colors = cloud
    np.savetxt(tmp_path / "a.xyz", points)
    np.testing.assert_allclose(read_cloud(tmp_path / "a.xyz").points, points, rtol=1e-12)
    # Six unnamed columns: normals when every row's last three have unit length, else colours.
    np.savetxt(tmp_path / "n.txt", np.hstack([points, normals]))
    assert read_cloud(tmp_path / "n.txt").normals is not None and read_cloud(tmp_path / "n.txt").colors is None
    np.savetxt(tmp_path / "c.txt", np.hstack([points, colors]), fmt="%.6f")
    np.testing.assert_array_equal(read_cloud(tmp_path / "c.txt").colors, colors)
    named = "Z,X,Y,red,green,blue\n" + "\n".join(",".join(map(str, [*p[[2, 0, 1]], *c]))
                                                  for p, c in zip(points, colors))
    (tmp_path / "h.csv").write_text(named)
    got = read_cloud(tmp_path / "h.csv")
    np.testing.assert_allclose(got.points, points, rtol=1e-12)
    np.testing.assert_array_equal(got.colors, colors)
    np.save(tmp_path / "p.npy", np.hstack([points, normals, colors]).astype(np.float32))
    got = read_cloud(tmp_path / "p.npy")
    np.testing.assert_allclose(got.points, points.astype(np.float32))
    np.testing.assert_array_equal(got.colors, colors)


def test_format_is_sniffed_from_bytes(tmp_path, cloud):
    points, normals, colors = cloud
    _plyfile(tmp_path / "c.ply", points, normals, colors, text=False)
    np.save(tmp_path / "c.npy", points)
    for name in ("c.ply", "c.npy"):
        np.testing.assert_allclose(decode_cloud((tmp_path / name).read_bytes(), name).points, points, rtol=1e-12)
    text = "\n".join(" ".join(map(str, p)) for p in points).encode()
    np.testing.assert_allclose(decode_cloud(text, "sent").points, points, rtol=1e-12)


def test_bad_files_give_one_clear_error(tmp_path, cloud):
    points, normals, colors = cloud
    _plyfile(tmp_path / "c.ply", points, normals, colors, text=False)
    data = (tmp_path / "c.ply").read_bytes()
    (tmp_path / "cut.ply").write_bytes(data[: len(data) // 2])
    (tmp_path / "big.ply").write_bytes(data.replace(b"element vertex 300", b"element vertex 99999999999"))
    (tmp_path / "lz.pcd").write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\n"
                                      b"WIDTH 1\nHEIGHT 1\nPOINTS 1\nDATA binary_compressed\n\0\0\0\0")
    (tmp_path / "nan.xyz").write_text("1 2 3\n4 nan 6\n")
    (tmp_path / "two.xyz").write_text("1 2\n3 4\n")
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object))
    (tmp_path / "c.obj").write_text("v 1 2 3\n")
    (tmp_path / "empty.xyz").write_text("# nothing\n")
    expected = {"cut.ply": "truncated", "big.ply": "over the limit", "lz.pcd": "binary_compressed",
                "nan.xyz": "point 1", "two.xyz": "2 columns", "obj.npy": "expected an n x 3",
                "c.obj": "unknown point-cloud format", "empty.xyz": "no points", "missing.ply": "does not exist"}
    for name, words in expected.items():
        with pytest.raises(DataError, match=words) as info:
            read_cloud(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(DataError, match="over the limit of 100"):
        read_cloud(tmp_path / "c.ply", max_points=100)


def test_voxel_downsample_against_brute_force():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 10, (2000, 3))
    kept = voxel_downsample(points, 2.5)
    cells = np.floor((points - points.min(axis=0)) / 2.5).astype(int)
    expected = []
    for cell in {tuple(c) for c in cells}:
        members = np.flatnonzero((cells == cell).all(axis=1))
        centroid = points[members].mean(axis=0)
        expected.append(members[np.argmin(((points[members] - centroid) ** 2).sum(axis=1))])
    np.testing.assert_array_equal(kept, np.sort(expected))
    assert abs(len(voxel_sample(points, 300)) - 300) <= 0.15 * 300


def test_farthest_point_sample_against_brute_force():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(200, 3))
    chosen = [int(np.argmax(((points - points.mean(axis=0)) ** 2).sum(axis=1)))]
    for _ in range(29):
        distance = np.min(((points[:, None] - points[chosen][None]) ** 2).sum(axis=2), axis=1)
        chosen.append(int(np.argmax(distance)))
    np.testing.assert_array_equal(farthest_point_sample(points, 30), np.sort(chosen))
    # Farthest-point sampling spreads points: its closest pair is farther apart than a random pick's.
    def closest(idx):
        d = np.linalg.norm(points[idx][:, None] - points[idx][None], axis=2)
        return d[np.triu_indices(len(idx), 1)].min()
    assert closest(sample(points, 30, "fps")) > closest(sample(points, 30, "random", seed=0))
    with pytest.raises(DataError, match="unknown sampling"):
        sample(points, 30, "grid")
