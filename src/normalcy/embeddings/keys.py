"""Ed25519 key files for signing embeddings.

`generate(KEY)` writes the private key to KEY (PKCS#8 PEM, mode 0600 from the moment it
exists) and the public key to KEY.pub (SubjectPublicKeyInfo PEM); it never overwrites a file.
Like ssh, `load_private` refuses a private key file that anyone but its owner may read or
write (any of the mode bits 0o077). Keys in OpenSSH format (`ssh-keygen -t ed25519`) load too.
Encrypted private keys are not read: keep the key in a file only its owner can read, or in a
secret store that writes such a file.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from normalcy.core.benchmark import current_umask
from normalcy.core.errors import DataError

MAX_KEY_FILE_BYTES = 16 * 2**10


def public_path(private: str | Path) -> Path:
    private = Path(private)
    return private.with_name(private.name + ".pub")


def generate(out: str | Path) -> tuple[Path, Path]:
    """A new key pair in `out` and `out`.pub; refuses to replace either file."""
    out = Path(out)
    pub = public_path(out)
    for path in (out, pub):
        if path.exists() or path.is_symlink():
            raise DataError(f"{path} exists; refusing to overwrite a key file (remove it or choose another --out)")
    if not out.parent.is_dir():
        raise DataError(f"cannot write {out}: folder {out.parent} does not exist")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(out, private_pem, 0o600)
    try:
        _write_new(pub, public_pem, 0o644 & ~current_umask())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return out, pub


def load_private(path: str | Path) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"private key {path} does not exist (make one with `normalcy embeddings keygen`)") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(f"private key {path} is not a regular file")
    if info.st_mode & 0o077:
        raise DataError(f"private key {path} is accessible by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                        f"it must be readable by its owner only: chmod 600 {path}")
    data = _read(path, "private key")
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise DataError(f"private key {path} is encrypted; normalcy reads unencrypted keys only (protect the "
                        "file by its mode, 0600)") from None
    except (ValueError, UnicodeError) as exc:
        raise DataError(f"{path} is not a PEM or OpenSSH private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise DataError(f"{path} holds a {type(key).__name__.removeprefix('_')}, expected an Ed25519 private key")
    return key


def load_public(path: str | Path) -> Ed25519PublicKey:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"public key {path} does not exist or is not a file")
    data = _read(path, "public key")
    try:
        if data.lstrip().startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(data.strip())
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, UnicodeError) as exc:
        hint = " (that is a private key: give KEY.pub)" if b"PRIVATE KEY" in data else ""
        raise DataError(f"{path} is not a PEM or OpenSSH public key{hint}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise DataError(f"{path} holds a {type(key).__name__.removeprefix('_')}, expected an Ed25519 public key")
    return key


def _read(path: Path, what: str) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise DataError(f"{what} {path} is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
    return data


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write `path` whole, with `mode` from the start, failing if it exists: a temporary file
    (mkstemp makes it 0600) linked into place, which never replaces an existing name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise DataError(f"{path} exists; refusing to overwrite a key file") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
