"""Small file primitives: hashing, durable writes, JSON records, disk-space errors."""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import IO, Any

from localloom._fs import TMP_SUFFIX, fsync_dir, write_atomic
from localloom.errors import DiskSpaceError, StoreError

__all__ = [
    "DISK_FULL_ERRNOS",
    "cache_write_error",
    "check_free_space",
    "disk_full_error",
    "format_mb",
    "fsync_dir",
    "hash_file",
    "open_append_nofollow",
    "read_json",
    "remove",
    "remove_stale_temps",
    "sample_digest",
    "write_json_atomic",
]

_BLOCK = 1 << 20
# Errors that mean "no room": a full disk, a quota, or a per-file size limit (FAT32, ulimit -f).
DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code
)


def hash_file(path: Path, hasher: Any | None = None) -> tuple[Any, int]:
    """Feed ``path`` into ``hasher`` (a new sha256 if None); return it and the byte count."""
    digest = hasher if hasher is not None else hashlib.sha256()
    total = 0
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
            total += len(block)
    return digest, total


_SAMPLES = 32
_SAMPLE_BYTES = 64 * 1024


def sample_digest(path: Path) -> str:
    """sha256 of the size and 32 evenly spaced 64 KiB blocks (the first and the last
    among them): 2 MiB read, so every load can afford it, where a full hash of a 4 GB file
    takes seconds. It catches damage in the sampled blocks (and the GGUF header), not all."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    step = max(1, (size - _SAMPLE_BYTES) // (_SAMPLES - 1)) if size > _SAMPLE_BYTES else 1
    with path.open("rb") as f:
        for i in range(_SAMPLES if size > _SAMPLE_BYTES else 1):
            f.seek(min(i * step, max(0, size - _SAMPLE_BYTES)))
            digest.update(f.read(_SAMPLE_BYTES))
    return digest.hexdigest()


def open_append_nofollow(path: Path) -> IO[bytes]:
    """Open ``path`` for appending; never write through a link planted in its place.

    A symlink is removed rather than followed, and so is a hard link (a second name of a
    file elsewhere, whose bytes an append would change): the append then starts a new file.
    """
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o644)
    info = os.fstat(fd)
    if info.st_nlink > 1 or not stat.S_ISREG(info.st_mode):
        os.close(fd)
        path.unlink()
        fd = os.open(path, flags | os.O_EXCL, 0o644)
    return os.fdopen(fd, "ab")


def remove(path: Path) -> bool:
    """Delete a file or link (never what a link points to); True if something was removed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if it is missing, unreadable or not an object."""
    try:
        if path.is_symlink():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON over ``path`` atomically (see :func:`localloom._fs.write_atomic`)."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True))


def remove_stale_temps(path: Path) -> None:
    """Remove temp files that a killed writer of ``path`` left (``<name>.<pid>.<tid>.tmp``).

    Call it only while holding the lock that every writer of ``path`` holds.
    """
    with contextlib.suppress(OSError):
        for leftover in path.parent.glob(f"{glob.escape(path.name)}.*{TMP_SUFFIX}"):
            remove(leftover)


def check_free_space(directory: Path, needed: int, model_id: str) -> None:
    """Raise DiskSpaceError before a download if ``directory`` has less than ``needed`` free."""
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise DiskSpaceError(
            f"Not enough disk space for '{model_id}': it needs {format_mb(needed)} more, but only "
            f"{format_mb(free)} is free in {directory}. Free some space (`localloom ls` and "
            "`localloom rm ID` show and remove downloaded models) or point LOCALLOOM_HOME at a "
            "larger disk, then run the same command again."
        )


def disk_full_error(exc: OSError, model_id: str, where: Path, done: int) -> DiskSpaceError:
    """The DiskSpaceError for a write that failed with ENOSPC, EDQUOT or EFBIG."""
    return DiskSpaceError(
        f"The disk filled up while writing '{model_id}' ({exc.strerror}); {format_mb(done)} "
        f"are kept in {where}. Free some space and run `localloom pull {model_id}` again to resume."
    )


def cache_write_error(exc: OSError, model_id: str, cache_dir: Path) -> StoreError:
    """The LocalLoom error for a file operation in the cache that the system refused."""
    if exc.errno in DISK_FULL_ERRNOS:
        return DiskSpaceError(
            f"The disk holding the model cache {cache_dir} is full ({exc.strerror}), so "
            f"'{model_id}' could not be saved; nothing was installed. Free some space "
            "(`localloom ls` and `localloom rm ID` show and remove downloaded models) and run "
            f"`localloom pull {model_id}` again; it resumes what was already received."
        )
    return StoreError(
        f"Could not write in the model cache {cache_dir} for '{model_id}' "
        f"({exc.strerror or exc}: {exc.filename or ''}). Check that this folder is writable, "
        "or set LOCALLOOM_HOME to a folder that is, then run the same command again."
    )


def format_mb(size: int) -> str:
    """``size`` bytes as a short human string (decimal MB, like download sizes)."""
    return f"{size / 1e6:,.1f} MB"
