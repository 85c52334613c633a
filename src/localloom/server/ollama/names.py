"""Ollama's names and facts for LocalLoom's catalog entries (``llama3.2`` -> an entry).

A catalog entry's Ollama name is its first alias with a tag (``qwen2.5:0.5b``), else
``<id>:latest``; a request's name resolves through the catalog with ``:latest`` optional.

Example::

    entry = resolve(catalog, "tiny:latest")       # the entry "tiny"
    ollama_name(entry)                             # "tiny:latest"
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import TYPE_CHECKING, Any

from localloom.errors import ModelNotFoundError
from localloom.server.ollama.protocol import ModelDetails

if TYPE_CHECKING:
    from localloom.catalog import ModelEntry
    from localloom.catalog.catalog import Catalog

__all__ = ["facts", "iso_time", "ollama_name", "remote_facts", "resolve"]

_FAMILIES = (("qwen3", "qwen3"), ("qwen2", "qwen2"), ("qwen", "qwen2"), ("smollm3", "smollm3"),
             ("llama", "llama"), ("gemma3", "gemma3"), ("gemma-3", "gemma3"), ("gemma", "gemma"),
             ("phi", "phi3"), ("bge", "bert"))
_PARAMS = re.compile(r"(?<![A-Za-z0-9])(\d+(?:\.\d+)?)([BbMm])(?![A-Za-z])")
_QUANT = re.compile(r"(q\d(?:_[a-z0-9]+)*|f16|f32|bf16)", re.IGNORECASE)


def resolve(catalog: Catalog, name: str) -> ModelEntry:
    """The entry for an id, alias or Ollama name; ``:latest`` may be added or left off."""
    try:
        return catalog.get(name)
    except ModelNotFoundError:
        if name.endswith(":latest") and name[:-7] in catalog:
            return catalog.get(name[:-7])
        raise


def ollama_name(entry: ModelEntry) -> str:
    """The name Ollama's clients see: a tagged alias, else ``<id>:latest``."""
    tagged = [a for a in entry.aliases if ":" in a]
    return tagged[0] if tagged else f"{entry.id}:latest"


def iso_time(epoch: float) -> str:
    """RFC 3339 in UTC, as Ollama writes ``modified_at`` and ``expires_at``."""
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def details(entry: ModelEntry) -> ModelDetails:
    """Family, parameter size and quantization, read off the entry's id and file name."""
    return _details(entry.id, entry.source.file or entry.id)


def _details(model_id: str, file: str) -> ModelDetails:
    low = f"{model_id} {file}".lower()
    family = next((fam for key, fam in _FAMILIES if key in low), "llama")
    size = _PARAMS.search(model_id)
    quant = _QUANT.search(file)
    return ModelDetails(family=family, families=[family],
                        parameter_size=f"{size.group(1)}{size.group(2).upper()}" if size else "",
                        quantization_level=quant.group(1).upper() if quant else "")


def facts(entry: ModelEntry) -> dict[str, Any]:
    """``name``, ``model``, ``size``, ``digest`` and ``details`` as Ollama lists a model."""
    digest = entry.source.sha256 or hashlib.sha256(entry.id.encode()).hexdigest()
    name = ollama_name(entry)
    return {"name": name, "model": name, "size": entry.source.size or entry.download_size,
            "digest": digest, "details": details(entry).model_dump()}


def remote_facts(model_id: str) -> dict[str, Any]:
    """How Ollama lists a model an upstream serves: by the name the upstream gives it, size
    0 and details read off that name (the front knows no file)."""
    return {"name": model_id, "model": model_id, "size": 0,
            "digest": hashlib.sha256(model_id.encode()).hexdigest(),
            "details": _details(model_id, model_id).model_dump()}
