"""The catalog: built-in models plus the user's models.toml files, looked up by id or alias.

Example::

    from localloom import Settings
    from localloom.catalog import Catalog
    catalog = Catalog(Settings())
    entry = catalog.get("starter")           # an alias of gemma3-270m-starter
    for problem in catalog.problems:         # bad models.toml entries, never fatal
        print(problem)
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import tomli_w
from filelock import FileLock

from localloom._fs import write_atomic
from localloom._toml import TOMLDecodeError, loads_toml
from localloom.catalog.builtin import builtin_entries
from localloom.catalog.entry import ModelEntry
from localloom.catalog.user import USER_TAG, entry_to_table, load_user_models
from localloom.config import Settings, make_private_dir
from localloom.errors import CatalogEntryError, ConfigError, ModelNotFoundError

__all__ = ["Catalog"]

_LOCK_TIMEOUT = 30.0


class Catalog:
    """Every model LocalLoom knows; ids are unique and case-sensitive.

    Built-in entries come first and win: a user entry that reuses an id or alias is
    reported in :attr:`problems` and left out.
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self._entries: list[ModelEntry] = []
        self._names: dict[str, ModelEntry] = {}
        self._problems: list[CatalogEntryError] = []
        self.reload()

    @property
    def user_file(self) -> Path:
        """The models.toml that `add_user_model` writes (in the config dir)."""
        return self.settings.config_dir / "models.toml"

    @property
    def problems(self) -> list[CatalogEntryError]:
        """Invalid or conflicting user entries, each naming file, entry and field."""
        return list(self._problems)

    def reload(self) -> None:
        """Read the built-in entries and every models.toml again."""
        user = load_user_models(self.settings.user_models_files, missing_ok={self.user_file})
        self._entries, self._names, self._problems = [], {}, list(user.problems)
        for entry in (*builtin_entries(), *user.entries):
            self._admit(entry)

    def _admit(self, entry: ModelEntry) -> None:
        if entry.id in self._names:
            other = self._names[entry.id]
            self._problems.append(CatalogEntryError(
                entry.origin, entry.id, "id",
                f"already used by a model from {other.origin}; ids must be unique, "
                "so this entry is skipped: give it another id"))
            return
        clashes = [a for a in entry.aliases if a in self._names or a == entry.id]
        if clashes:
            self._problems.append(CatalogEntryError(
                entry.origin, entry.id, "aliases",
                f"{', '.join(repr(a) for a in clashes)} already name another model; "
                "those aliases are ignored"))
            keep = tuple(a for a in entry.aliases if a not in clashes)
            entry = entry.model_copy(update={"aliases": keep})
        self._entries.append(entry)
        for name in (entry.id, *entry.aliases):
            self._names[name] = entry

    def entries(self) -> list[ModelEntry]:
        """Every valid entry: built-ins (seeds, current, starter), then user models."""
        return list(self._entries)

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and model_id in self._names

    def __len__(self) -> int:
        return len(self._entries)

    def suggestions(self, model_id: str, limit: int = 3) -> list[str]:
        """Names close to `model_id`: case-insensitive matches first, then similar ones."""
        names = list(self._names)
        lowered = {n.lower(): n for n in names}
        out = [n for n in names if n.lower() == model_id.lower()]
        close = difflib.get_close_matches(model_id.lower(), list(lowered), n=limit, cutoff=0.6)
        for low in close:
            if lowered[low] not in out:
                out.append(lowered[low])
        return out[:limit]

    def get(self, model_id: str) -> ModelEntry:
        """The entry with this exact id or alias.

        Raises :class:`ModelNotFoundError` with "did you mean" suggestions otherwise.
        """
        try:
            return self._names[model_id]
        except KeyError:
            raise ModelNotFoundError(model_id, self.suggestions(model_id)) from None

    def add_user_model(self, entry: ModelEntry) -> Path:
        """Append `entry` to the config dir's models.toml (atomically); returns that path.

        Existing text and comments are kept. Raises :class:`ConfigError` if the id or an
        alias is taken, or if the file is not valid TOML (fix it first).
        """
        taken = [n for n in (entry.id, *entry.aliases) if n in self._names]
        if taken:
            raise ConfigError(
                f"The catalog already has a model named '{taken[0]}'. Choose another id "
                "(`localloom models add ... --id NEW_ID`).")
        path = self.user_file
        make_private_dir(path.parent)
        with FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT):
            old = path.read_text(encoding="utf-8") if path.exists() else ""
            self._parse_or_fail(old, path)
            head = old.rstrip("\n") + "\n\n" if old.strip() else ""
            new = head + tomli_w.dumps({"model": [entry_to_table(entry)]})
            self._parse_or_fail(new, path)
            write_atomic(path, new)
        self.reload()
        return path

    def remove_user_model(self, model_id: str) -> Path:
        """Remove a model added to the config dir's models.toml; returns that path.

        The file is rewritten from its parsed form, so its comments are lost. Built-in
        models and models from LOCALLOOM_MODELS files are refused with :class:`ConfigError`.
        """
        entry = self.get(model_id)
        path = self.user_file
        if USER_TAG not in entry.tags or entry.origin != str(path):
            where = "built in" if entry.origin == "builtin" else f"defined in {entry.origin}"
            raise ConfigError(
                f"Model '{entry.id}' is {where}; only models in {path} can be removed "
                "here. Edit that file instead.")
        with FileLock(str(path) + ".lock", timeout=_LOCK_TIMEOUT):
            doc = self._parse_or_fail(path.read_text(encoding="utf-8"), path)
            tables = doc.get("model", [])
            doc["model"] = [t for t in tables if not (isinstance(t, dict)
                                                      and t.get("id") == entry.id)]
            write_atomic(path, tomli_w.dumps(doc))
        self.reload()
        return path

    @staticmethod
    def _parse_or_fail(text: str, path: Path) -> dict[str, Any]:
        try:
            return loads_toml(text)
        except TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML ({exc}); fix or remove it, then try again."
            ) from exc
