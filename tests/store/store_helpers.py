"""Helpers shared by the store tests: catalog entries for files on the fake Hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fakehub import HubFile
from localloom.catalog.entry import ModelEntry, ModelSource

FILE_SIZE = 3 * 1024 * 1024 + 123  # a few MB of random bytes, not a multiple of any chunk


def hub_entry(model_id: str = "fake-model", repo: str = "fake-org/fake-model-GGUF",
              file: str = "fake-model.Q4_0.gguf", **source: Any) -> ModelEntry:
    """A catalog entry for a file on the (fake) Hub."""
    return ModelEntry(
        id=model_id, display_name=model_id, download_size=FILE_SIZE, ram_min_gb=0.1,
        ram_max_gb=0.2, context_length=2048,
        source=ModelSource(kind="hub", repo=repo, file=file, **source),
    )


@dataclass
class Published:
    """A file put on the fake Hub and the entry that names it."""

    entry: ModelEntry
    file: HubFile
