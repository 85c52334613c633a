"""The GGUF facts every layer shares (localloom.gguf_header): the magic and the KV-cache size."""

from __future__ import annotations

from localloom.gguf_header import GGUF_MAGIC, kv_bytes_per_token, starts_with_magic


def test_starts_with_magic() -> None:
    assert starts_with_magic(GGUF_MAGIC + b"\x03\x00\x00\x00")
    assert not starts_with_magic(b"GGU")
    assert not starts_with_magic(b"PK\x03\x04")


def test_kv_bytes_per_token_llama_3_8b() -> None:
    # Llama 3 8B: 32 layers, 4096 wide, 32 heads, 8 KV heads (GQA), head size 128:
    # K and V, f16 = 2 * 32 * 8 * 128 * 2 bytes = 128 KiB a token.
    shape = {"n_layer": 32, "n_embd": 4096, "n_head": 32}
    assert kv_bytes_per_token(**shape, n_head_kv=8, key_length=None) == 131_072
    assert kv_bytes_per_token(**shape, n_head_kv=8, key_length=128) == 131_072


def test_kv_bytes_per_token_defaults() -> None:
    # No KV head count (or 0): as many as the query heads; an explicit key length wins.
    assert kv_bytes_per_token(n_layer=2, n_embd=64, n_head=4, n_head_kv=None,
                              key_length=None) == 2 * 2 * 4 * 16 * 2
    assert kv_bytes_per_token(n_layer=2, n_embd=64, n_head=4, n_head_kv=0,
                              key_length=32) == 2 * 2 * 4 * 32 * 2
