"""Reading and writing point clouds: PLY (ASCII and binary, either byte order), PCD (ASCII and
binary), XYZ/TXT/CSV text columns and NumPy .npy arrays, with optional normals and colour.

Every reader checks the point count from the header (or the file size) against MAX_POINTS
before it reads a coordinate, and refuses a file over MAX_FILE_BYTES, so a huge or lying file
is a DataError naming it, never an exhausted machine. Coordinates must be finite, except in
PCD files, whose convention marks missing returns of an organised scan with NaN: those points
are dropped. Columns are recognised by name (PLY `x y z nx ny nz red green blue`, PCD
`x y z normal_x normal_y normal_z rgb|rgba`, text headers with the same names); text and .npy
files without names are read as `x y z`, then `nx ny nz` or `r g b` (see `_by_position`).
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError

MAX_POINTS = 10_000_000
MAX_FILE_BYTES = 2 * 2**30
MAX_HEADER_BYTES = 64 * 1024
SUFFIXES = (".ply", ".pcd", ".xyz", ".txt", ".csv", ".pts", ".npy")

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}
_NORMAL_NAMES = (("nx", "ny", "nz"), ("normal_x", "normal_y", "normal_z"))
_COLOUR_NAMES = (("red", "green", "blue"), ("r", "g", "b"), ("diffuse_red", "diffuse_green", "diffuse_blue"))


@dataclass(frozen=True)
class PointCloud:
    """Points (n x 3 float64), and where the file has them normals (n x 3 float64, unit length)
    and colours (n x 3 uint8)."""

    points: np.ndarray
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.points)

    def take(self, index: np.ndarray) -> "PointCloud":
        return PointCloud(self.points[index], None if self.normals is None else self.normals[index],
                          None if self.colors is None else self.colors[index])


def is_cloud_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def read_cloud(path: str | Path, max_points: int = MAX_POINTS) -> PointCloud:
    """The cloud in a file, by its suffix; DataError naming the file on anything unreadable."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unknown point-cloud format {suffix or '(no suffix)'}; expected one of "
                        f"{', '.join(SUFFIXES)}")
    try:
        size = os.stat(path).st_size
        if not path.is_file():
            raise DataError(f"{path} is not a regular file")
        if size > MAX_FILE_BYTES:
            raise DataError(f"{path} is {size} bytes, over the limit of {MAX_FILE_BYTES} bytes for a point cloud")
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"point cloud {path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_cloud(data, str(path), suffix, max_points)


def decode_cloud(data: bytes, name: str, suffix: str | None = None, max_points: int = MAX_POINTS) -> PointCloud:
    """A cloud from a file's bytes; the format from `suffix`, else from the first bytes (PLY
    and PCD headers, the .npy magic; anything else is read as text columns)."""
    if suffix is None:
        suffix = _sniff(data)
    try:
        if suffix == ".ply":
            cloud = _read_ply(data, name, max_points)
        elif suffix == ".pcd":
            cloud = _read_pcd(data, name, max_points)
        elif suffix == ".npy":
            cloud = _read_npy(data, name, max_points)
        else:
            cloud = _read_text(data, name, max_points)
    except (ValueError, UnicodeDecodeError, IndexError, OverflowError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{name}: not a readable {suffix.lstrip('.').upper()} point cloud: {exc}"[:400]) from None
    if not len(cloud):
        raise DataError(f"{name} holds no points")
    return cloud


def _sniff(data: bytes) -> str:
    if data.startswith(b"ply"):
        return ".ply"
    if data.startswith(b"\x93NUMPY"):
        return ".npy"
    head = data[:MAX_HEADER_BYTES].lstrip()
    if head.startswith(b"# .PCD") or head.startswith(b"VERSION") or b"\nDATA " in head:
        return ".pcd"
    return ".txt"


# --- PLY ---------------------------------------------------------------------------------------
def _read_ply(data: bytes, name: str, max_points: int) -> PointCloud:
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{name}: not a PLY file (no 'ply' ... 'end_header' header in the first "
                        f"{MAX_HEADER_BYTES} bytes)")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", "replace").splitlines()
    fmt, elements = None, []  # elements: [name, count, [(prop, type or None for a list)]]
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            elements.append([words[1], _count(words[2], name, "element " + words[1]), []])
        elif words[0] == "property" and elements:
            if words[1] == "list":
                elements[-1][2].append((words[-1], None))
            elif len(words) == 3 and words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise DataError(f"{name}: PLY property line not understood: {line.strip()!r}")
        else:
            raise DataError(f"{name}: PLY header line not understood: {line.strip()!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{name}: PLY format {fmt!r}; expected ascii, binary_little_endian or binary_big_endian")
    index = next((i for i, e in enumerate(elements) if e[0] == "vertex"), None)
    if index is None:
        raise DataError(f"{name}: PLY file has no 'element vertex'")
    _, n, props = elements[index]
    _check_count(n, name, max_points)
    if any(t is None for _, t in props):
        raise DataError(f"{name}: PLY vertex element has list properties; expected scalar properties only")
    names = [p for p, _ in props]
    if fmt == "ascii":
        skip = sum(e[1] for e in elements[:index])
        text = data[body_start:].decode("ascii").splitlines()
        rows = [r for r in text[skip:skip + n]]
        if len(rows) < n:
            raise DataError(f"{name}: PLY header promises {n} vertices, the file has {len(rows)} lines for them")
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2) if n else np.zeros((0, len(names)))
        if table.shape[1] != len(names):
            raise DataError(f"{name}: PLY vertex lines have {table.shape[1]} values, the header names {len(names)}")
        columns = {p: table[:, j] for j, p in enumerate(names)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = body_start
        for element, count, before in elements[:index]:
            if any(t is None for _, t in before):
                raise DataError(f"{name}: PLY element {element!r} with list properties comes before the vertices; "
                                "only scalar elements may precede them in a binary file")
            offset += count * np.dtype([(p, order + t) for p, t in before]).itemsize
        dtype = np.dtype([(p, order + t) for p, t in props])
        if len(data) < offset + n * dtype.itemsize:
            raise DataError(f"{name}: PLY file is truncated: {n} vertices of {dtype.itemsize} bytes need "
                            f"{offset + n * dtype.itemsize} bytes, the file has {len(data)}")
        table = np.frombuffer(data, dtype=dtype, count=n, offset=offset)
        columns = {p: table[p].astype(np.float64) for p in names}
    return _assemble(columns, name, drop_nan=False)


def write_ply(path: str | Path, points: np.ndarray, normals: np.ndarray | None = None,
              colors: np.ndarray | None = None, scalars: dict[str, np.ndarray] | None = None) -> Path:
    """A binary little-endian PLY: float x y z, float nx ny nz, uchar red green blue and any
    float `scalars` (e.g. a per-point score) that are given; written atomically."""
    from normalcy.core.benchmark import write_atomic

    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    values = {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2]}
    if normals is not None:
        fields += [("nx", "<f4"), ("ny", "<f4"), ("nz", "<f4")]
        values.update(nx=normals[:, 0], ny=normals[:, 1], nz=normals[:, 2])
    if colors is not None:
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        values.update(red=colors[:, 0], green=colors[:, 1], blue=colors[:, 2])
    for key, value in (scalars or {}).items():
        fields.append((key, "<f4"))
        values[key] = value
    table = np.empty(len(points), dtype=fields)
    for key, value in values.items():
        table[key] = value
    types = {"<f4": "float", "u1": "uchar"}
    header = "ply\nformat binary_little_endian 1.0\ncomment written by normalcy\n" \
             f"element vertex {len(points)}\n" + "".join(f"property {types[t]} {k}\n" for k, t in fields) + \
             "end_header\n"
    path = Path(path)
    write_atomic(path, header.encode("ascii") + table.tobytes())
    return path


# --- PCD ---------------------------------------------------------------------------------------
def _read_pcd(data: bytes, name: str, max_points: int) -> PointCloud:
    header: dict[str, list[str]] = {}
    pos = 0
    while "DATA" not in header:
        end = data.find(b"\n", pos)
        if end < 0 or end > MAX_HEADER_BYTES:
            raise DataError(f"{name}: not a PCD file (no DATA line in the first {MAX_HEADER_BYTES} bytes)")
        words = data[pos:end].decode("ascii", "replace").split()
        pos = end + 1
        if words and not words[0].startswith("#"):
            header[words[0].upper()] = words[1:]
    fields = header.get("FIELDS", [])
    n_fields = len(fields)
    sizes = _ints(header.get("SIZE", []), name, "SIZE")
    types = header.get("TYPE", [])
    counts = _ints(header.get("COUNT", ["1"] * n_fields), name, "COUNT")
    if not fields or not (len(sizes) == len(types) == len(counts) == n_fields):
        raise DataError(f"{name}: PCD header needs FIELDS, SIZE, TYPE (and COUNT) with one entry per field")
    if "POINTS" in header:
        n = _count((header["POINTS"] or ["?"])[0], name, "POINTS")
    else:
        width, height = (_count((header.get(k) or ["?"])[0], name, k) for k in ("WIDTH", "HEIGHT"))
        n = width * height
    _check_count(n, name, max_points)
    mode = (header["DATA"] or ["?"])[0].lower()
    dtypes = []
    for field, size, kind, count in zip(fields, sizes, types, counts):
        code = {"F": "f", "I": "i", "U": "u"}.get(kind.upper())
        if code is None or (code == "f" and size not in (4, 8)) or size not in (1, 2, 4, 8) or count < 1:
            raise DataError(f"{name}: PCD field {field!r} has SIZE {size} TYPE {kind}; expected F 4/8, I or U 1/2/4/8")
        dtypes.append((field, f"<{code}{size}", (count,) if count > 1 else ()))
    if mode == "ascii":
        rows = data[pos:].decode("ascii").splitlines()
        rows = [r for r in rows if r.strip()][:n]
        if len(rows) < n:
            raise DataError(f"{name}: PCD header promises {n} points, the file has {len(rows)} data lines")
        width = sum(counts)
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2) if n else np.zeros((0, width))
        if table.shape[1] != width:
            raise DataError(f"{name}: PCD data lines have {table.shape[1]} values, the header gives {width}")
        starts = np.cumsum([0, *counts])
        columns = {}
        for j, (field, dtype, _) in enumerate(dtypes):
            column = table[:, starts[j]]
            if field in ("rgb", "rgba"):  # packed colour: its bits, as the field's type holds them
                column = np.asarray(column, dtype=dtype).view("<u4" if dtype[-1] == "4" else dtype).astype(np.float64)
                field = "_packed_rgb"
            columns[field] = column
    elif mode == "binary":
        dtype = np.dtype(dtypes)
        if len(data) < pos + n * dtype.itemsize:
            raise DataError(f"{name}: PCD file is truncated: {n} points of {dtype.itemsize} bytes need "
                            f"{pos + n * dtype.itemsize} bytes, the file has {len(data)}")
        table = np.frombuffer(data, dtype=dtype, count=n, offset=pos)
        columns = {}
        for field, code, shape in dtypes:
            if shape:
                continue  # multi-valued fields (descriptors) are not cloud geometry
            if field in ("rgb", "rgba") and code.endswith("4"):
                columns["_packed_rgb"] = table[field].view("<u4").astype(np.float64)
            else:
                columns[field] = table[field].astype(np.float64)
    elif mode == "binary_compressed":
        raise DataError(f"{name}: PCD DATA binary_compressed (LZF) is not supported; save it as binary or ascii "
                        "(e.g. pcl_convert_pcd_ascii_binary FILE OUT 1)")
    else:
        raise DataError(f"{name}: PCD DATA {mode!r}; expected ascii or binary")
    if "_packed_rgb" in columns:
        packed = columns.pop("_packed_rgb").astype(np.uint32)
        columns.update(red=(packed >> 16) & 255, green=(packed >> 8) & 255, blue=packed & 255)
    return _assemble(columns, name, drop_nan=True)


# --- text and .npy -------------------------------------------------------------------------------
def _read_text(data: bytes, name: str, max_points: int) -> PointCloud:
    text = data.decode("utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "//"))]
    if not lines:
        raise DataError(f"{name} holds no points")
    delimiter = "," if "," in lines[0] else (";" if ";" in lines[0] else None)
    first = lines[0].split(delimiter)
    names = None
    if not all(_is_number(w) for w in first):
        names = [w.strip().strip('"').lower() for w in first]
        lines = lines[1:]
    _check_count(len(lines), name, max_points)
    if not lines:
        raise DataError(f"{name} holds no points")
    table = np.loadtxt(lines, dtype=np.float64, delimiter=delimiter, ndmin=2)
    if names is not None:
        if len(names) != table.shape[1]:
            raise DataError(f"{name}: header names {len(names)} columns, the rows have {table.shape[1]}")
        return _assemble({k: table[:, j] for j, k in enumerate(names)}, name, drop_nan=False)
    return _by_position(table, name)


def _read_npy(data: bytes, name: str, max_points: int) -> PointCloud:
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise DataError(f"{name}: .npy format version {version}; expected 1.0 or 2.0 (as numpy.save writes)")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(stream, max_header_size=10_000)
    if dtype.hasobject or dtype.kind not in "iuf" or len(shape) != 2:
        raise DataError(f"{name}: .npy array of {dtype} with shape {shape}; expected an n x 3 (or n x 6, n x 9) "
                        "array of numbers")
    _check_count(shape[0], name, max_points)
    if shape[1] not in (3, 6, 9):
        raise DataError(f"{name}: .npy array has {shape[1]} columns; expected 3 (x y z), 6 or 9")
    array = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
    return _by_position(np.asarray(array, dtype=np.float64), name)


def _by_position(table: np.ndarray, name: str) -> PointCloud:
    """Unnamed columns: 3 are x y z; 6 are x y z and then normals when every row's last three
    have unit length (within 2%), else colours; 9 are x y z, normals, colours. Colours are 0-255
    or, if every value is at most 1, 0-1."""
    k = table.shape[1]
    if k == 3:
        return _assemble({"x": table[:, 0], "y": table[:, 1], "z": table[:, 2]}, name, drop_nan=False)
    if k not in (6, 9):
        raise DataError(f"{name} has {k} columns; expected 3 (x y z), 6 (x y z and normals or r g b) or 9 "
                        "(x y z nx ny nz r g b), or a header naming the columns")
    columns = {"x": table[:, 0], "y": table[:, 1], "z": table[:, 2]}
    rest = table[:, 3:6]
    unit = np.all(np.abs(np.linalg.norm(rest, axis=1) - 1) < 0.02) if len(rest) else False
    if k == 9 or unit:
        columns.update(nx=rest[:, 0], ny=rest[:, 1], nz=rest[:, 2])
    if k == 9 or not unit:
        colour = table[:, 6:9] if k == 9 else rest
        columns.update(red=colour[:, 0], green=colour[:, 1], blue=colour[:, 2])
    return _assemble(columns, name, drop_nan=False)


# --- shared --------------------------------------------------------------------------------------
def _assemble(columns: dict[str, np.ndarray], name: str, drop_nan: bool) -> PointCloud:
    missing = [c for c in "xyz" if c not in columns]
    if missing:
        raise DataError(f"{name}: no {', '.join(missing)} coordinate(s); the columns are {', '.join(columns) or 'none'}")
    points = np.column_stack([columns["x"], columns["y"], columns["z"]]).astype(np.float64)
    finite = np.isfinite(points).all(axis=1)
    if drop_nan:
        keep = finite
    elif not finite.all():
        row = int(np.argmin(finite))
        raise DataError(f"{name}: point {row} has a coordinate that is not a finite number ({points[row].tolist()})")
    else:
        keep = slice(None)
    normals = colors = None
    for triple in _NORMAL_NAMES:
        if all(c in columns for c in triple):
            normals = np.column_stack([columns[c] for c in triple]).astype(np.float64)[keep]
            length = np.linalg.norm(normals, axis=1, keepdims=True)
            ok = np.isfinite(length[:, 0]) & (length[:, 0] > 1e-12)
            # Unusable normals (zero or NaN) are dropped whole: detectors then estimate their own.
            normals = normals / np.where(ok[:, None], length, 1.0) if ok.all() else None
            break
    for triple in _COLOUR_NAMES:
        if all(c in columns for c in triple):
            rgb = np.column_stack([columns[c] for c in triple]).astype(np.float64)[keep]
            if len(rgb) and np.isfinite(rgb).all() and rgb.max() <= 1.0:
                rgb = rgb * 255
            colors = np.clip(np.nan_to_num(rgb), 0, 255).round().astype(np.uint8)
            break
    return PointCloud(points[keep], normals, colors)


def _count(word: str, name: str, what: str) -> int:
    if not re.fullmatch(r"\d{1,12}", word):
        raise DataError(f"{name}: {what} count {word!r} is not a non-negative integer")
    return int(word)


def _ints(words: list[str], name: str, what: str) -> list[int]:
    return [_count(w, name, what) for w in words]


def _check_count(n: int, name: str, max_points: int) -> None:
    if n > max_points:
        raise DataError(f"{name} has {n} points, over the limit of {max_points}; down-sample it first")


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True
