"""Helpers for tests and benchmarks: synthetic GGUF models that real llama.cpp loads.

Example::

    from localloom.testing import write_tiny_gguf
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
"""

from __future__ import annotations

from localloom.testing.gguf import (
    CHATML_TEMPLATE,
    LLAMA2_7B_SHAPE,
    TINY_SHAPE,
    TINYLLAMA_SHAPE,
    ModelShape,
    quantize_gguf,
    write_synthetic_gguf,
    write_tiny_gguf,
)

__all__ = [
    "CHATML_TEMPLATE",
    "LLAMA2_7B_SHAPE",
    "TINYLLAMA_SHAPE",
    "TINY_SHAPE",
    "ModelShape",
    "quantize_gguf",
    "write_synthetic_gguf",
    "write_tiny_gguf",
]
