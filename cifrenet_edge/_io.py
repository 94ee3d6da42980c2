"""Atomic file writes and hashing: an artifact is either complete or absent.

Python 3.8 syntax, standard library only: the runtime uses it too.
"""

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

from .errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]


def make_dir(folder: PathLike, what: str = "output folder", option: str = "--output") -> Path:
    """Create ``folder`` (and parents) or fail with one line naming it and the option to change."""
    out = Path(folder).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create {what} {out}: {exc.strerror} (choose another {option})"
        ) from None
    return out


def ensure_writable_dir(path: PathLike) -> Path:
    """Create the parent folder of ``path`` or fail with a one-line error naming it."""
    parent = make_dir(Path(path).expanduser().resolve().parent)
    if not os.access(str(parent), os.W_OK):
        raise ConfigError(f"output folder {parent} is not writable: choose another --output")
    return parent


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    target = Path(path).expanduser()
    parent = ensure_writable_dir(target)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix="." + target.name + ".", suffix=".partial", dir=str(parent)
        )
    except OSError as exc:  # os.access can say yes (root, read-only mounts, /proc, /sys)
        raise ConfigError(
            f"cannot write in output folder {parent}: {exc.strerror} (choose another --output)"
        ) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600; an artifact must be readable like any other file the user
        # writes (a ROS node or container often runs as another user).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(str(tmp_path), 0o666 & ~umask)
        os.replace(str(tmp_path), str(target))
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: PathLike, obj: object) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"))


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(str(path), "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
