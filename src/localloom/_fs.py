"""The one atomic file write, shared by every layer (store, catalog, engine, server)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["TMP_SUFFIX", "fsync_dir", "temp_name", "write_atomic"]

TMP_SUFFIX = ".tmp"


def fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(path: Path) -> Path:
    """The temp file a writer of ``path`` in this thread uses: ``<name>.<pid>.<tid>.tmp``.

    Per process and thread, so two writers never share one; a killed writer's leftover
    matches ``<name>.*.tmp`` (the store sweeps those while it holds the file's lock).
    """
    return path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")


def write_atomic(path: Path, data: bytes | str, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so readers see the old file or the new one, never half.

    The bytes (``str`` is written as UTF-8) go to :func:`temp_name`, created with ``mode``
    (0o600 for secrets: they never sit in a file others can read) and never through a link
    planted there; it is fsynced and renamed over ``path``, then the folder is fsynced so
    the rename survives a power cut. On any failure (a full disk, say) the temp file is
    removed and ``path`` is left as it was. The caller makes the folder and holds any lock.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = temp_name(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # our own leftover: this pid and thread wrote it
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags | getattr(os, "O_BINARY", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
