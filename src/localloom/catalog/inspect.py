"""Build a catalog entry from a GGUF file's header (what `localloom models add` does).

Example::

    from localloom.catalog import entry_from_gguf
    entry = entry_from_gguf("~/models/my-model.Q4_K_M.gguf", model_id="my-model")
    print(entry.context_length, entry.prompt_style, entry.ram_max_gb)
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from localloom.catalog.entry import (
    ModelEntry,
    ModelSource,
    SpeedTier,
    capabilities_from_template,
)
from localloom.errors import ModelLoadError
from localloom.gguf_header import (
    GGUFFormatError,
    GGUFInfo,
    kv_bytes_per_token,
    read_gguf_header,
)

__all__ = ["entry_from_gguf", "estimate_ram_gb", "id_from_filename", "kv_cache_bytes"]

GIB = 1024**3
_SMALL_CTX, _DEFAULT_CTX = 2048, 4096  # RAM range: a short context up to LocalLoom's default
_OVERHEAD_GIB = (0.25, 0.5)  # compute buffers, tokenizer, the Python process


def kv_cache_bytes(info: GGUFInfo, n_ctx: int) -> int | None:
    """Bytes of an f16 KV cache for `n_ctx` tokens, or None if the header lacks the shape."""
    if not (info.block_count and info.embedding_length and info.head_count):
        return None
    return n_ctx * kv_bytes_per_token(
        n_layer=info.block_count, n_embd=info.embedding_length, n_head=info.head_count,
        n_head_kv=info.head_count_kv, key_length=info.key_length)


def estimate_ram_gb(info: GGUFInfo) -> tuple[float, float]:
    """(low, high) GiB to run the model: weights, KV cache for 2k..4k tokens, buffers."""
    ctx = info.context_length or _SMALL_CTX
    out = []
    for n_ctx, overhead in zip((_SMALL_CTX, _DEFAULT_CTX), _OVERHEAD_GIB, strict=True):
        kv = kv_cache_bytes(info, min(ctx, n_ctx))
        if kv is None:
            kv = info.file_size // (10 if n_ctx == _SMALL_CTX else 5)
        out.append(math.ceil((info.file_size + kv) / GIB * 10 + overhead * 10) / 10)
    return out[0], max(out)


def _speed(size: int) -> SpeedTier:
    if size < 1_000_000_000:
        return "fast"
    if size < 3_000_000_000:
        return "moderate"
    return "slower" if size < 6_000_000_000 else "slow"


def id_from_filename(path: str | os.PathLike[str]) -> str:
    """A valid catalog id from a file name: 'My Model (v2).Q4_K_M.gguf' -> 'My-Model-v2-.Q4_K_M'."""
    stem = Path(path).name.removesuffix(".gguf")
    cleaned = re.sub(r"[^A-Za-z0-9._\-]+", "-", stem).lstrip("._-")[:200]
    return cleaned or "model"


def _describe(info: GGUFInfo, path: Path) -> str:
    n = info.n_params
    params = (f", {n / 1e9:.2f}B parameters" if n >= 1e9 else
              f", {n / 1e6:.0f}M parameters" if n >= 1e6 else f", {n:,} parameters")
    quant = f" {info.file_type_name}" if info.file_type_name else ""
    style = ("has a chat template" if info.has_chat_template
             else "no chat template: use completion-style prompts")
    return (f"Added from {path.name}: {info.architecture or 'unknown architecture'}{quant}"
            f"{params}, {info.context_length or 'unknown'} tokens of context; {style}.")


def entry_from_gguf(
    path: str | os.PathLike[str],
    *,
    model_id: str | None = None,
    display_name: str | None = None,
    source: ModelSource | None = None,
    trial_load: Callable[[Path], None] | None = None,
) -> ModelEntry:
    """Read `path`'s GGUF header and build a user catalog entry for it.

    `source` says where the file comes from (default: this local file, used in place).
    `trial_load`, once the engine exists, loads the file and raises if llama.cpp cannot;
    it runs after the header checks pass. Raises :class:`ModelLoadError` for a file that
    is missing, truncated, corrupt or not GGUF.
    """
    file = Path(path).expanduser().resolve()
    try:
        info = read_gguf_header(file)
    except GGUFFormatError as exc:
        raise ModelLoadError(f"{file} is not a usable GGUF model: {exc}") from exc
    except OSError as exc:
        raise ModelLoadError(f"Cannot read {file}: {exc}. Check the path.") from exc
    if trial_load is not None:
        trial_load(file)
    ram_min, ram_max = estimate_ram_gb(info)
    return ModelEntry(
        id=model_id or id_from_filename(file),
        display_name=display_name or info.name or file.stem,
        description=_describe(info, file),
        download_size=info.file_size,
        ram_min_gb=ram_min,
        ram_max_gb=ram_max,
        context_length=max(16, info.context_length or _SMALL_CTX),
        speed=_speed(info.file_size),
        license=str(info.metadata.get("general.license", "unknown")),
        source=source or ModelSource(kind="local", path=str(file), size=info.file_size),
        prompt_style="chat" if info.has_chat_template else "completion",
        capabilities=capabilities_from_template(
            info.chat_template if info.has_chat_template else None),
        origin=f"gguf:{file}",
    )
