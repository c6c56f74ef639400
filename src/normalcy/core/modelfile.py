"""The model-file format: a folder with a JSON manifest and the arrays in safetensors.

    MODEL_DIR/
      manifest.json        format, format_version, library_version, class, params,
                           threshold, state (JSON metadata), checksums
      arrays.safetensors   every learned array, by name

Loading never executes code from the folder: the manifest is JSON, the arrays are
safetensors, and the class must be one of normalcy's registered detectors. Checksums catch
a damaged or edited folder. Saving writes a sibling temporary folder and swaps it in with
renames, so a crash mid-save leaves the previous model intact.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from normalcy import __version__
from normalcy.core.benchmark import current_umask
from normalcy.core.detector import REGISTRY, Detector, class_path
from normalcy.core.errors import ModelFileError, NormalcyError

FORMAT = "normalcy-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.safetensors"


def save(detector: Detector, path: str | Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModelFileError(f"refusing to overwrite {path}: it is a file, not a model folder")
    if path.exists() and not (path / MANIFEST).is_file() and any(path.iterdir()):
        raise ModelFileError(f"refusing to overwrite {path}: it is not a normalcy model folder")
    arrays, meta = detector._get_state()
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp makes 0700; others (Spark executors, a server) may read
    try:
        save_file(arrays, str(tmp / ARRAYS))
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "library_version": __version__,
            "class": class_path(type(detector)),
            "params": detector.get_params(deep=False),
            "threshold": detector.threshold_,
            "state": meta,
            "arrays_sha256": sha256_file(tmp / ARRAYS),
        }
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        for f in (tmp / ARRAYS, tmp / MANIFEST):
            _fsync(f)
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load(path: str | Path) -> Detector:
    path = Path(path)
    manifest = read_manifest(path)
    cls = _detector_class(manifest["class"], path)
    arrays_file = path / ARRAYS
    if not arrays_file.is_file():
        raise ModelFileError(f"{path} has no {ARRAYS}")
    if sha256_file(arrays_file) != manifest.get("arrays_sha256"):
        raise ModelFileError(f"{arrays_file} does not match its checksum: the file was changed or damaged")
    try:
        arrays = load_file(str(arrays_file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read {arrays_file}: {exc}") from exc
    try:
        detector = cls(**manifest["params"])
    except (TypeError, NormalcyError) as exc:
        raise ModelFileError(f"{path / MANIFEST}: parameters do not fit {cls.__name__}: {exc}") from exc
    detector._set_state(arrays, manifest["state"])
    threshold = manifest.get("threshold")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
        raise ModelFileError(f"{path / MANIFEST}: threshold must be a number or null, got {threshold!r}")
    detector.threshold_ = None if threshold is None else float(threshold)
    return detector


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of a model folder, without loading its arrays."""
    path = Path(path)
    file = path / MANIFEST
    if not path.is_dir():
        raise ModelFileError(f"{path} is not a model folder (no such directory)")
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError:
        raise ModelFileError(f"{path} is not a model folder: {MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read {file}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelFileError(f"{file} is not a normalcy model manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ModelFileError(f"{file}: format_version missing or not an integer")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model format {version}, newer than the {FORMAT_VERSION} this normalcy "
            f"{__version__} reads (saved by normalcy {manifest.get('library_version')}); upgrade normalcy"
        )
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise ModelFileError(f"{file} does not match its checksum: the manifest was edited or damaged")
    for key, kind in (("class", str), ("params", dict), ("state", dict)):
        if not isinstance(manifest.get(key), kind):
            raise ModelFileError(f"{file}: field {key!r} missing or not a {kind.__name__}")
    return manifest


def _detector_class(name: str, path: Path) -> type[Detector]:
    # Only modules inside normalcy are imported, and only to register their detectors.
    module = name.rpartition(".")[0]
    if name not in REGISTRY and module.startswith("normalcy."):
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    if name not in REGISTRY:
        raise ModelFileError(f"{path / MANIFEST} names an unknown detector class {name!r}")
    return REGISTRY[name]


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
    if not path.exists():
        os.rename(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rename(path, old / "model")
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old / "model", path)
        shutil.rmtree(old, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
