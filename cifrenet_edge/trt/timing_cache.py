"""The builder's timing cache: reused across builds, merged under a lock, never half-written.

A Jetson build takes minutes mostly in kernel timing; the cache brings a rebuild down to
seconds. Two builds on one device (two precisions in two shells) must not lose each other's
timings, so the file is merged with ``ITimingCache.combine`` under an exclusive lock and
replaced atomically. Python 3.8 syntax (the device builder imports it).
"""

import contextlib
from pathlib import Path
from typing import Any, Iterator

from .._io import write_bytes_atomic


def open_timing_cache(config: Any, path: Path, say: Any) -> None:
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is None or not config.set_timing_cache(cache, False):
        # A cache from another TensorRT/GPU is refused: start a fresh one, overwrite it.
        say(f"timing cache {path} is from another TensorRT or GPU: starting anew")
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` (fcntl; no lock where fcntl is missing: Windows).

    Two builds sharing one timing cache (two terminals, a CI matrix) would otherwise each
    overwrite the other's entries.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(str(path) + ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def save_timing_cache(config: Any, path: Path) -> None:
    """Merge this build's timings with whatever the file holds now, under a lock.

    ``ITimingCache.combine`` (in every listed version's bindings) appends the other cache's
    entries and skips conflicts, and refuses (returns False) a cache from another TensorRT
    build: then this build's cache alone is written.
    """
    with file_lock(path):
        cache = config.get_timing_cache()
        if path.is_file():
            on_disk = config.create_timing_cache(path.read_bytes())
            if on_disk is not None:
                cache.combine(on_disk, False)
        write_bytes_atomic(path, bytes(cache.serialize()))
