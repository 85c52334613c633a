"""Add a model straight from the Hub: ``localloom pull hf.co/ORG/REPO[:QUANT]`` and
``localloom models add --repo R --file F``.

The file is downloaded and verified by the store first; only then is its GGUF header read,
the file trial-loaded, and the entry written to models.toml. A Hub reference becomes an
alias of the entry, so ``localloom run hf.co/ORG/REPO:Q4_K_M`` finds it afterwards.

Example::

    from localloom.catalog.hubpull import pull_hub_reference
    entry = pull_hub_reference("hf.co/Qwen/Qwen2.5-0.5B-Instruct-GGUF", settings=Settings())
    print(entry.id, entry.aliases)
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from localloom.catalog.catalog import Catalog
from localloom.catalog.entry import ModelEntry, ModelSource
from localloom.catalog.inspect import entry_from_gguf, id_from_filename
from localloom.config import Settings
from localloom.errors import ConfigError, ModelLoadError
from localloom.store import ModelStore, ProgressCallback, offline_error
from localloom.store._hub import hub_endpoint
from localloom.store._hubref import HubGGUF, list_gguf_files, parse_hub_reference, pick_gguf

__all__ = ["HubPull", "add_hub_file", "pull_hub_reference"]

TrialLoad = Callable[[Path], None]


class HubPull:
    """What one pull of a Hub file needs: settings, progress and the trial load."""

    def __init__(self, settings: Settings, *, progress: ProgressCallback | None = None,
                 trial_load: TrialLoad | None = None, timeout: float = 30.0) -> None:
        self.settings = settings
        self.progress = progress
        self.trial_load = trial_load
        self.timeout = timeout

    def add(self, source: ModelSource, *, model_id: str, display_name: str | None = None,
            aliases: tuple[str, ...] = ()) -> tuple[ModelEntry, Path]:
        """Download and verify ``source``, check its header (and trial load), then add it."""
        catalog = Catalog(self.settings)
        taken = [n for n in (model_id, *aliases) if n in catalog]
        if taken:  # before any download
            raise ConfigError(f"The catalog already has a model named '{taken[0]}'. Choose "
                              "another id with --id.")
        # The store needs only the id and the source; the figures come from the header after.
        placeholder = ModelEntry(id=model_id, display_name=model_id, download_size=0,
                                 ram_min_gb=0, ram_max_gb=0, context_length=16, source=source,
                                 origin="cli")
        store = ModelStore(self.settings)
        path = Path(store.ensure(placeholder, progress=self.progress))
        pinned = source.model_copy(update={"size": path.stat().st_size})
        try:
            entry = entry_from_gguf(path, model_id=model_id, display_name=display_name,
                                    source=pinned, trial_load=self.trial_load)
        except ModelLoadError:
            # Verified bytes that llama.cpp cannot use: no entry names them, so they go.
            store.delete(placeholder)
            raise
        entry = entry.model_copy(update={"aliases": aliases})
        catalog.add_user_model(entry)
        return Catalog(self.settings).get(model_id), path


def add_hub_file(settings: Settings, repo: str, file: str, *, revision: str = "main",
                 model_id: str | None = None, display_name: str | None = None,
                 progress: ProgressCallback | None = None,
                 trial_load: TrialLoad | None = None) -> ModelEntry:
    """``models add --repo R --file F``: one named file of a repo."""
    new_id = model_id or id_from_filename(file)
    if settings.is_offline:
        # The same command back, whole: an id the catalog lacks would not `pull`.
        extra = "".join(f" {flag} {shlex.quote(value)}" for flag, value in (
            ("--revision", revision if revision != "main" else None), ("--id", model_id),
            ("--name", display_name)) if value)
        raise offline_error(f"The file {file} of {repo}",
                            f"localloom models add --repo {repo} --file {file}{extra}")
    source = ModelSource(kind="hub", repo=repo, file=file, revision=revision)
    entry, _ = HubPull(settings, progress=progress, trial_load=trial_load).add(
        source, model_id=new_id, display_name=display_name)
    return entry


def _existing(catalog: Catalog, repo: str, file: str) -> ModelEntry | None:
    for entry in catalog.entries():
        if entry.source.kind == "hub" and entry.source.repo == repo and entry.source.file == file:
            return entry
    return None


def pull_hub_reference(text: str, settings: Settings, *, model_id: str | None = None,
                       progress: ProgressCallback | None = None,
                       trial_load: TrialLoad | None = None,
                       timeout: float = 30.0) -> tuple[ModelEntry, Path, bool]:
    """``pull hf.co/ORG/REPO[:QUANT]``: list the repo's GGUF files, pick the quantization
    asked for (or a sensible 4-bit one), download and verify it, and add it to models.toml.

    Returns the entry, its verified file, and whether the entry is new. A reference already
    in the catalog (as an alias, or the same repo file) is pulled, not added twice.
    """
    ref = parse_hub_reference(text)
    catalog = Catalog(settings)
    known = ref.quant is not None and ref.text() in catalog
    if known or settings.is_offline:
        entry = catalog.get(ref.text()) if known else _offline_match(catalog, ref.text())
        if entry is None:
            raise offline_error(ref.text(), f"localloom pull {ref.text()}")
        return entry, Path(ModelStore(settings).ensure(entry, progress=progress)), False
    chosen: HubGGUF = pick_gguf(ref, list_gguf_files(ref, endpoint=hub_endpoint(),
                                                     timeout=timeout))
    same = _existing(catalog, ref.repo, chosen.path)
    if same is not None:
        return same, ModelStore(settings).pull(same, progress=progress), False
    alias = ref.text(chosen.quant) if chosen.quant else ref.text()
    aliases = tuple(dict.fromkeys(a for a in (alias, ref.text()) if a not in catalog))
    source = ModelSource(kind="hub", repo=ref.repo, file=chosen.path, revision=ref.revision,
                         sha256=chosen.sha256)
    entry, path = HubPull(settings, progress=progress, trial_load=trial_load,
                          timeout=timeout).add(source, model_id=model_id or _new_id(
                              catalog, ref.repo, chosen.path), aliases=aliases)
    return entry, path, True


def _offline_match(catalog: Catalog, text: str) -> ModelEntry | None:
    """Offline, a reference without a quantization can only mean one already added."""
    prefix = text + ":"
    found = [e for e in catalog.entries() if any(a == text or a.startswith(prefix)
                                                 for a in e.aliases)]
    return found[0] if len(found) == 1 else None


def _new_id(catalog: Catalog, repo: str, file: str) -> str:
    base = id_from_filename(file)
    if base not in catalog:
        return base
    # Two repos ship the same file name (a re-upload, a fine-tune): the owner tells them apart.
    return id_from_filename(f"{repo.split('/')[0]}-{file}")
