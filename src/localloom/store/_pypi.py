"""Models shipped as PyPI packages (the starter): the package's ``assemble()`` writes the file."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from localloom.catalog.entry import ModelEntry
from localloom.errors import DownloadError, IntegrityError
from localloom.store._files import DISK_FULL_ERRNOS, disk_full_error, remove

__all__ = ["assemble", "expected_sha256", "load_package"]


def _install_hint(entry: ModelEntry) -> str:
    package = entry.source.package
    hint = f"`pip install {package}`"
    if "starter" in entry.tags:
        hint += " (or `pip install 'localloom[starter]'`)"
    return hint


def load_package(entry: ModelEntry) -> ModuleType:
    """Import the package named by the entry, or explain how to install it."""
    package = entry.source.package or ""
    try:
        module = importlib.import_module(entry.import_name or package.replace("-", "_"))
    except ImportError as exc:
        raise DownloadError(
            f"Model '{entry.id}' comes from the Python package {package!r}, which is not "
            f"installed. Install it with {_install_hint(entry)} and run the same command again."
        ) from exc
    if not callable(getattr(module, "assemble", None)):
        raise DownloadError(
            f"The package {package!r} has no assemble() function, so it cannot provide "
            f"'{entry.id}'. Reinstall it with {_install_hint(entry)}."
        )
    return module


def expected_sha256(entry: ModelEntry, module: ModuleType) -> str | None:
    """The pinned sha256, else the one the package declares (EXPECTED_SHA256)."""
    declared = getattr(module, "EXPECTED_SHA256", None)
    return entry.source.sha256 or (declared if isinstance(declared, str) else None)


def assemble(entry: ModelEntry, module: ModuleType, output: Path) -> None:
    """Have the package write the model to ``output`` (a temp path inside the cache)."""
    remove(output)
    try:
        module.assemble(output_path=output)
    except OSError as exc:
        remove(output)
        if exc.errno in DISK_FULL_ERRNOS:
            raise disk_full_error(exc, entry.id, output, 0) from exc
        raise DownloadError(
            f"The package {entry.source.package!r} could not write '{entry.id}' ({exc}). "
            f"Reinstall it with {_install_hint(entry)} and run the same command again."
        ) from exc
    except ValueError as exc:
        remove(output)
        raise IntegrityError(
            f"The package {entry.source.package!r} assembled a damaged copy of '{entry.id}' "
            f"({exc}); nothing was installed. Reinstall it with `pip install --force-reinstall "
            f"{entry.source.package}` and run the same command again."
        ) from exc
