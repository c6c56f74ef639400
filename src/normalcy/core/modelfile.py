"""The model-file format: a folder with a JSON manifest and the arrays in safetensors.

    MODEL_DIR/
      manifest.json        format, format_version, library_version, class, params,
                           threshold, calibration, state (JSON metadata), checksums
      arrays.safetensors   every learned array, by name

Loading never executes code from the folder: the manifest is JSON checked against a schema,
the arrays are safetensors, and the class must be one of normalcy's registered detectors
(`normalcy.core.registry`; nothing named by the file is imported). Both files must be regular
files, the manifest at most MAX_MANIFEST_BYTES. Checksums catch a damaged or edited folder.
Saving refuses non-finite state (it could never load), writes a sibling temporary folder and
swaps it in with renames, so a crash mid-save leaves the previous model intact; it replaces
an existing folder only if that folder is a normalcy model and holds nothing else.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from safetensors import SafetensorError
from safetensors.numpy import load as parse_safetensors
from safetensors.numpy import save_file

from normalcy import __version__
from normalcy.core import registry
from normalcy.core.benchmark import current_umask
from normalcy.core.detector import Detector
from normalcy.core.errors import ModelFileError, NormalcyError
from normalcy.core.results import Calibration

FORMAT = "normalcy-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"
MAX_MANIFEST_BYTES = 64 * 2**20
SHA256 = r"^[0-9a-f]{64}$"


class Manifest(BaseModel):
    """The manifest's schema; `state` and `params` are checked by the detector class."""

    model_config = ConfigDict(extra="forbid")

    format: StrictStr
    format_version: StrictInt
    library_version: StrictStr
    class_: StrictStr = Field(alias="class", pattern=r"^[A-Za-z_][\w.<>]*$", max_length=300)  # <locals>: test classes
    params: dict[str, Any]
    threshold: float | None = Field(allow_inf_nan=False, strict=True)
    calibration: dict[str, Any] | None = None
    state: dict[str, Any]
    arrays_sha256: StrictStr = Field(pattern=SHA256)
    manifest_sha256: StrictStr = Field(pattern=SHA256)


def save(detector: Detector, path: str | Path) -> Path:
    path = Path(path)
    _check_replaceable(path)
    arrays, meta = detector._get_state()
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "class": registry.class_path(type(detector)),
        "params": detector.get_params(deep=False),
        "threshold": detector.threshold_,
        "calibration": detector.calibration_.to_json() if detector.calibration_ is not None else None,
        "state": meta,
    }
    _check_finite(arrays, manifest, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    mode = 0o666 & ~current_umask()  # mkdtemp makes 0700 and safetensors 0600; others (Spark, a server) may read
    os.chmod(tmp, mode | 0o111 & ~current_umask())
    try:
        save_file(arrays, str(tmp / ARRAYS))
        manifest["arrays_sha256"] = sha256_file(tmp / ARRAYS)
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False))
        for f in (tmp / ARRAYS, tmp / MANIFEST):
            os.chmod(f, mode)
            _fsync(f)
        _swap_in(tmp, path)
    except (SafetensorError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ModelFileError(f"cannot write the model to {path}: {reason}; the previous model, if any, is unchanged") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: str | Path) -> Detector:
    path = Path(path)
    manifest = read_manifest(path)
    cls = registry.resolve(manifest["class"])
    if cls is None:
        raise ModelFileError(f"{path / MANIFEST} names an unknown detector class {manifest['class']!r}")
    arrays_file = path / ARRAYS
    data = _read_regular(arrays_file, None)
    if hashlib.sha256(data).hexdigest() != manifest["arrays_sha256"]:
        raise ModelFileError(f"{arrays_file} does not match its checksum: the file was changed or damaged")
    try:
        arrays = parse_safetensors(data)
    except (SafetensorError, ValueError) as exc:
        raise ModelFileError(f"cannot read {arrays_file}: {exc}") from exc
    # The manifest passed its checksum, but anyone can recompute one: everything in it is
    # untrusted input, and any failure to make sense of it is the file's fault.
    params = {cls.renamed_params.get(k, k): v for k, v in manifest["params"].items()}
    try:
        registry.check_params(cls, params)
        detector = cls(**params)
        detector._check_params()
        detector._set_state(arrays, manifest["state"])
        if manifest.get("calibration") is not None:
            detector.calibration_ = Calibration.from_json(manifest["calibration"])
    except NormalcyError as exc:
        raise ModelFileError(f"{path / MANIFEST}: {exc}") from exc
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as exc:
        raise ModelFileError(f"{path / MANIFEST}: the model's parameters or state do not fit "
                             f"{cls.__name__}: {type(exc).__name__}: {exc}"[:500]) from exc
    threshold = manifest.get("threshold")
    detector.threshold_ = None if threshold is None else float(threshold)
    return detector


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of a model folder, without loading its arrays."""
    path = Path(path)
    file = path / MANIFEST
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model folder (no such directory)")
    try:
        manifest = json.loads(_read_regular(file, MAX_MANIFEST_BYTES), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise ModelFileError(f"cannot read {file}: {type(exc).__name__}: {exc}"[:300]) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{file} is not a normalcy model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{file}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model format {version}, newer than the {FORMAT_VERSION} this normalcy "
            f"{__version__} reads (saved by normalcy {manifest.get('library_version')}); upgrade normalcy"
        )
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise ModelFileError(f"{file} does not match its checksum: the manifest was edited or damaged")
    try:
        Manifest.model_validate(manifest)
    except ValidationError as exc:
        problems = "; ".join(f"field {'.'.join(map(str, e['loc']))!r}: {e['msg']}" for e in exc.errors()[:3])
        raise ModelFileError(f"{file}: {problems}") from None
    return manifest


def is_model_folder(path: Path) -> bool:
    """A folder holding a normalcy manifest and nothing but the model's two files."""
    try:
        names = {p.name for p in path.iterdir()}
        manifest = json.loads(_read_regular(path / MANIFEST, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError, NormalcyError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT and names <= {MANIFEST, ARRAYS}


def _check_replaceable(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ModelFileError(f"refusing to overwrite {path}: it is not a folder")
    cwd = Path.cwd().resolve()
    if path.exists() and (path.resolve() == cwd or path.resolve() in cwd.parents):
        raise ModelFileError(f"refusing to write a model over {path}, which holds the current directory; "
                             "name a new folder for the model")
    if path.exists() and any(path.iterdir()) and not is_model_folder(path):
        raise ModelFileError(f"refusing to overwrite {path}: it is not empty and not a normalcy model folder "
                             f"(one holds only {MANIFEST} and {ARRAYS}); choose a new folder")


def _check_finite(arrays: dict[str, np.ndarray], manifest: dict, path: Path) -> None:
    for name, a in arrays.items():
        if a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise ModelFileError(f"cannot save {path}: model array {name!r} holds NaN or infinity (were the "
                                 "training values finite and well inside the float range?); nothing was written")
    try:
        json.dumps(manifest, allow_nan=False)
    except ValueError:
        raise ModelFileError(f"cannot save {path}: the threshold or model state holds NaN or infinity; "
                             "nothing was written") from None


def _read_regular(file: Path, limit: int | None) -> bytes:
    """The bytes of a regular file (not a FIFO, device or folder), at most `limit` of them."""
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ModelFileError(f"{file.parent} is not a complete model folder: {file.name} is missing") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {file}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ModelFileError(f"{file} is not a regular file")
        if limit is not None and info.st_size > limit:
            raise ModelFileError(f"{file} is {info.st_size} bytes, over the {limit}-byte limit for a manifest")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read() if limit is None else fh.read(limit + 1)
    except OSError as exc:
        raise ModelFileError(f"cannot read {file}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if limit is not None and len(data) > limit:
        raise ModelFileError(f"{file} is over the {limit}-byte limit for a manifest")
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def sha256_file(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(file: Path) -> None:
    with open(file, "rb") as fh:
        os.fsync(fh.fileno())


def _swap_in(tmp: Path, path: Path) -> None:
    """Move tmp to path; an existing model is renamed aside first and removed only after."""
    try:
        os.rename(tmp, path)  # no folder there, or an empty one: POSIX rename replaces it
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rename(path, old / "model")
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old / "model", path)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
