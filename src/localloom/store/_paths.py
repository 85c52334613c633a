"""Where the store keeps things, and the name checks that keep it inside its directory.

Layout under ``Settings.cache_dir``::

    models/<id>/<file>            the verified file (only ever appears by os.replace)
    models/<id>/.localloom.json   sidecar: sha256, size and mtime recorded at verification
    partial/<id>.part             bytes received so far (resumable)
    partial/<id>.part.json        what the .part belongs to (sha256, size, repo, file)
    locks/<id>.lock               one lock per model, across threads and processes

Every name that comes from a catalog entry or a user's models.toml is checked before it
touches the filesystem, and every path is resolved and must stay under the cache directory,
so neither ``../`` nor a symlink planted in the cache can send a write elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote

from localloom.catalog.entry import ModelEntry
from localloom.config import make_private_dir
from localloom.errors import UnsafePathError

__all__ = [
    "StorePaths",
    "check_file",
    "check_inside",
    "check_model_id",
    "check_repo",
    "check_revision",
]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,199}$")
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,95}"
_REPO = re.compile(rf"^{_REPO_PART}(/{_REPO_PART})?$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/\-]{0,199}$")
_FILE_PART = re.compile(r"^[^\x00-\x1f\x7f\\:*?\"<>|]{1,255}$")
SIDECAR_NAME = ".localloom.json"


def _unsafe(kind: str, value: str, why: str) -> UnsafePathError:
    return UnsafePathError(
        f"The {kind} {value!r} is not allowed: {why}. Fix this name in the model's entry "
        "(models.toml); LocalLoom keeps every file inside its cache directory."
    )


def check_model_id(model_id: str) -> str:
    """Return ``model_id`` if it is a safe directory name, else raise UnsafePathError."""
    if not _ID.match(model_id) or ".." in model_id:
        raise _unsafe("model id", model_id, "use letters, digits, '.', '_' and '-' only")
    return model_id


def check_repo(repo: str) -> str:
    """Return ``repo`` if it has the Hub's ``owner/name`` shape, else raise UnsafePathError."""
    if not _REPO.match(repo) or ".." in repo:
        raise _unsafe("repo", repo, "a Hub repo looks like 'owner/name'")
    return repo


def check_revision(revision: str) -> str:
    """Return ``revision`` if it is a plain branch, tag or commit name."""
    if (not _REVISION.match(revision) or ".." in revision or "//" in revision
            or revision.endswith("/")):
        raise _unsafe("revision", revision, "use a branch, tag or commit hash")
    return revision


def check_file(file: str) -> PurePosixPath:
    """Return ``file`` as a relative path with no '..', hidden, absolute or Windows parts.

    The name must also stay plain once URL-decoded (``%2e%2e%2f`` is ``../``), however many
    times: a server or proxy that decodes it must not see a path that climbs out.
    """
    decoded, names = file, [file]
    while (decoded := unquote(decoded)) != names[-1]:
        names.append(decoded)
    for name in names:
        _check_plain_file(file, name)
    return PurePosixPath(*file.split("/"))


def _check_plain_file(file: str, name: str) -> None:
    if not name or name.startswith("/") or "\\" in name:
        raise _unsafe("file name", file, "it must be a relative path with '/' separators")
    for part in name.split("/"):
        if part in ("", ".", "..") or part.startswith(".") or not _FILE_PART.match(part):
            raise _unsafe("file name", file, f"the part {part!r} is not a plain file name")


def check_inside(path: Path, root: Path) -> Path:
    """Resolve ``path`` (following symlinks) and require it to stay under ``root``."""
    resolved_root = root.resolve()
    resolved = path.resolve()
    if resolved != resolved_root and resolved_root not in resolved.parents:
        raise UnsafePathError(
            f"{path} resolves to {resolved}, outside the cache directory {resolved_root}. "
            f"Remove that link or file (`localloom rm` or by hand) and pull again."
        )
    return resolved


@dataclass(frozen=True)
class StorePaths:
    """Every path the store uses for one model (hub and pypi sources)."""

    cache_dir: Path
    model_dir: Path
    final: Path
    sidecar: Path
    part: Path
    part_meta: Path
    assemble_tmp: Path
    lock: Path
    relative_file: str

    @classmethod
    def for_entry(cls, cache_dir: Path, models_dir: Path, entry: ModelEntry, *,
                  check: bool = True) -> StorePaths:
        """Check the entry's names and build its paths (all under ``cache_dir``).

        ``check=False`` skips only the symlink check, for cleaning up a planted link.
        """
        model_id = check_model_id(entry.id)
        source = entry.source
        if source.kind == "hub":
            check_repo(source.repo or "")
            check_revision(source.revision)
        relative = check_file(source.file or "")
        model_dir = models_dir / model_id
        partial = cache_dir / "partial"
        paths = cls(
            cache_dir=cache_dir,
            model_dir=model_dir,
            final=model_dir.joinpath(*relative.parts),
            sidecar=model_dir / SIDECAR_NAME,
            part=partial / f"{model_id}.part",
            part_meta=partial / f"{model_id}.part.json",
            assemble_tmp=partial / f"{model_id}.assemble",
            lock=cache_dir / "locks" / f"{model_id}.lock",
            relative_file=relative.as_posix(),
        )
        if check:
            paths.check()
        return paths

    def check(self) -> None:
        """Fail if any path (through a planted symlink, say) resolves outside the cache."""
        for path in (self.final, self.sidecar, self.part, self.part_meta, self.assemble_tmp,
                     self.lock):
            check_inside(path, self.cache_dir)

    def make_dirs(self, *, final: bool = True) -> None:
        """Create the directories, then re-check that none of them is a link elsewhere.

        ``final=False`` leaves out the model's own folder: a download creates it only when
        a verified file moves in, so a failed pull leaves no empty model folder behind.
        """
        make_private_dir(self.cache_dir)
        for directory in (self.part.parent, self.lock.parent):
            directory.mkdir(parents=True, exist_ok=True)
        if final:
            self.final.parent.mkdir(parents=True, exist_ok=True)
        self.check()
