"""A bounded, safe reader for GGUF headers (metadata and tensor table, never the weights).

GGUF files come from strangers on the internet, so nothing in them is trusted: every count
and length is checked against hard caps *and* against the bytes left in the file before
anything is allocated, big arrays (a 256k-token vocabulary) are skipped without being
materialized, and every tensor must lie inside the file. Any violation raises
:class:`GGUFFormatError` (a :class:`ValueError`) with the reason.

Example::

    from localloom.gguf_header import read_gguf_header
    info = read_gguf_header("tinyllama-1.1b-chat-v1.0.Q4_0.gguf")
    print(info.architecture, info.context_length, info.has_chat_template, info.vocab_size)
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "FILE_TYPE_NAMES",
    "GGML_TYPE_SIZES",
    "GGUF_MAGIC",
    "GGUFFormatError",
    "GGUFInfo",
    "GGUFLimits",
    "kv_bytes_per_token",
    "read_gguf_header",
    "read_gguf_header_bytes",
    "starts_with_magic",
]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

Scalar = int | float | bool | str

# ggml type id -> (name, elements per block, bytes per block); mirrors ggml.h / gguf-py.
GGML_TYPE_SIZES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 40),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74), 18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17), 40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# general.file_type -> the quantization name users know (llama.cpp's LLAMA_FTYPE_MOSTLY_*).
FILE_TYPE_NAMES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0",
    38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}

# GGUF value types: id -> (name, struct format or None for string/array).
_VALUE_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("uint8", "<B"), 1: ("int8", "<b"), 2: ("uint16", "<H"), 3: ("int16", "<h"),
    4: ("uint32", "<I"), 5: ("int32", "<i"), 6: ("float32", "<f"), 7: ("bool", "<?"),
    8: ("string", None), 9: ("array", None), 10: ("uint64", "<Q"), 11: ("int64", "<q"),
    12: ("float64", "<d"),
}
_STRING, _ARRAY = 8, 9
_U64 = struct.Struct("<Q")
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_TENSOR_NAME = 64  # GGML_MAX_NAME, including the NUL llama.cpp adds


class GGUFFormatError(ValueError):
    """The bytes are not a GGUF file LocalLoom can use; the message says why."""


@dataclass(frozen=True)
class GGUFLimits:
    """Caps on everything a file declares; values beyond them are rejected, not trusted."""

    max_kv: int = 65_536
    max_tensors: int = 1_000_000
    max_key_length: int = 65_535
    max_string_length: int = 64 * 1024 * 1024
    max_array_length: int = 1 << 28
    max_nesting: int = 3
    max_tensor_elements: int = 1 << 48


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about the model, checked against the file's real size."""

    version: int
    n_tensors: int
    n_kv: int
    file_size: int
    alignment: int
    data_offset: int  # where tensor data starts
    tensor_data_end: int  # end of the last tensor's bytes (<= file_size)
    n_params: int  # total tensor elements
    architecture: str | None
    name: str | None
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    file_type: int | None
    file_type_name: str | None
    chat_template: str | None
    vocab_size: int | None
    tokenizer_model: str | None
    metadata: dict[str, Scalar] = field(default_factory=dict)
    arrays: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (type, length)
    tensor_types: dict[str, int] = field(default_factory=dict)  # ggml type name -> count
    # tensor name -> (ggml type name, dims in ggml order: ne0 first)
    tensor_shapes: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def has_chat_template(self) -> bool:
        """True when the file carries a non-empty ``tokenizer.chat_template``."""
        return bool(self.chat_template and self.chat_template.strip())


class _Cursor:
    """Reads forward through a file in chunks; never reads or allocates past its end."""

    _CHUNK = 1 << 20

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        self._buf = b""
        self._pos = 0  # index into _buf
        self._base = 0  # file offset of _buf[0]

    @property
    def offset(self) -> int:
        return self._base + self._pos

    @property
    def remaining(self) -> int:
        return self.size - self.offset

    def _need(self, n: int, what: str) -> None:
        if n > self.remaining:
            raise GGUFFormatError(
                f"File is truncated: {what} needs {n} bytes at offset {self.offset}, "
                f"but only {self.remaining} remain. Download the file again."
            )
        if len(self._buf) - self._pos >= n:
            return
        rest = self._buf[self._pos:]
        want = min(max(n, self._CHUNK), self.remaining) - len(rest)
        self._f.seek(self._base + len(self._buf))
        more = self._f.read(want)
        if len(more) != want:
            raise GGUFFormatError(f"File is truncated: short read at offset {self.offset}.")
        self._base += self._pos
        self._buf = rest + more
        self._pos = 0

    def unpack(self, fmt: str, size: int, what: str) -> tuple[Any, ...]:
        self._need(size, what)
        out = struct.unpack_from(fmt, self._buf, self._pos)
        self._pos += size
        return out

    def u32(self, what: str) -> int:
        return int(self.unpack("<I", 4, what)[0])

    def u64(self, what: str) -> int:
        return int(self.unpack("<Q", 8, what)[0])

    def raw(self, n: int, what: str) -> bytes:
        if n <= self._CHUNK:
            self._need(n, what)
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        if n > self.remaining:
            self._need(n, what)  # raises the truncation error
        self._f.seek(self.offset)
        out = self._f.read(n)
        if len(out) != n:
            raise GGUFFormatError(f"File is truncated: short read at offset {self.offset}.")
        self._base, self._buf, self._pos = self.offset + n, b"", 0
        return out

    def skip_strings(self, count: int, cap: int, what: str) -> None:
        """Skip `count` length-prefixed strings; the hot loop of a 256k-token vocabulary."""
        unpack = _U64.unpack_from
        for _ in range(count):
            if len(self._buf) - self._pos < 8:
                self._need(8, f"length of {what}")
            (n,) = unpack(self._buf, self._pos)
            if n > cap:
                raise GGUFFormatError(f"{what} declares {n} bytes, over the limit of {cap}.")
            self._pos += 8
            if len(self._buf) - self._pos >= n:
                self._pos += n
            else:
                self.skip(n, what)

    def skip(self, n: int, what: str) -> None:
        if n > self.remaining:
            self._need(n, what)  # raises the truncation error
        if len(self._buf) - self._pos >= n:
            self._pos += n
        else:
            self._base, self._buf, self._pos = self.offset + n, b"", 0


class _Parser:
    def __init__(self, cur: _Cursor, limits: GGUFLimits) -> None:
        self.cur = cur
        self.lim = limits

    def string(self, what: str, cap: int) -> str:
        n = self.cur.u64(f"length of {what}")
        if n > cap:
            raise GGUFFormatError(f"{what} declares {n} bytes, over the limit of {cap}.")
        return self.cur.raw(n, what).decode("utf-8", errors="replace")

    def value_type(self, what: str) -> int:
        t = self.cur.u32(f"type of {what}")
        if t not in _VALUE_TYPES:
            raise GGUFFormatError(f"{what} has unknown value type {t}.")
        return t

    def scalar(self, t: int, what: str) -> Scalar:
        if t == _STRING:
            return self.string(what, self.lim.max_string_length)
        fmt = _VALUE_TYPES[t][1]
        assert fmt is not None
        value: Scalar = self.cur.unpack(fmt, struct.calcsize(fmt), what)[0]
        return value

    def skip_array(self, what: str, depth: int) -> tuple[str, int]:
        """Skip an array's elements; returns (element type name, length)."""
        if depth > self.lim.max_nesting:
            raise GGUFFormatError(f"{what} nests arrays deeper than {self.lim.max_nesting}.")
        t = self.value_type(f"elements of {what}")
        n = self.cur.u64(f"length of {what}")
        if n > self.lim.max_array_length:
            raise GGUFFormatError(f"{what} declares {n} elements, over the limit.")
        fmt = _VALUE_TYPES[t][1]
        if fmt is not None:
            self.cur.skip(n * struct.calcsize(fmt), what)
        elif t == _STRING:
            if n * 8 > self.cur.remaining:  # every string has an 8-byte length
                raise GGUFFormatError(f"File is truncated: {what} cannot hold {n} strings.")
            self.cur.skip_strings(n, self.lim.max_string_length, f"element of {what}")
        else:
            if n * 12 > self.cur.remaining:  # every nested array has type + length
                raise GGUFFormatError(f"File is truncated: {what} cannot hold {n} arrays.")
            for _ in range(n):
                self.skip_array(f"element of {what}", depth + 1)
        return _VALUE_TYPES[t][0], n


def starts_with_magic(head: bytes) -> bool:
    """True if ``head`` (a file's first bytes) starts with the GGUF magic."""
    return head[:4] == GGUF_MAGIC


def kv_bytes_per_token(*, n_layer: int, n_embd: int, n_head: int, n_head_kv: int | None,
                       key_length: int | None) -> int:
    """F16 K+V cache bytes one token takes: 2 (K and V) x layers x KV heads x head size x 2.

    ``n_head_kv`` missing or 0 means no grouped-query attention (as many as ``n_head``);
    ``key_length`` missing means the head size is ``n_embd / n_head``.
    """
    head_dim = key_length or n_embd // max(1, n_head)
    return 2 * n_layer * (n_head_kv or n_head) * head_dim * 2


def _header(cur: _Cursor, lim: GGUFLimits) -> tuple[int, int, int]:
    magic = cur.raw(4, "magic") if cur.size >= 4 else b""
    if not starts_with_magic(magic):
        raise GGUFFormatError(
            f"Not a GGUF file (magic {magic!r}, expected {GGUF_MAGIC!r}). "
            "Pick a .gguf file; other formats must be converted with llama.cpp first."
        )
    version = cur.u32("version")
    if version not in SUPPORTED_VERSIONS:
        endian = " (a big-endian file?)" if version > 0xFFFF else ""
        raise GGUFFormatError(
            f"GGUF version {version}{endian} is not supported (only "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}). Get a file converted by a "
            "recent llama.cpp."
        )
    n_tensors = cur.u64("tensor count")
    n_kv = cur.u64("metadata count")
    if n_kv > lim.max_kv or n_kv * 13 > cur.remaining:
        raise GGUFFormatError(f"Header declares {n_kv} metadata entries: impossible here.")
    if n_tensors > lim.max_tensors or n_tensors * 24 > cur.remaining:
        raise GGUFFormatError(f"Header declares {n_tensors} tensors: impossible here.")
    return version, n_tensors, n_kv


def _metadata(p: _Parser, n_kv: int) -> tuple[dict[str, Scalar], dict[str, tuple[str, int]]]:
    meta: dict[str, Scalar] = {}
    arrays: dict[str, tuple[str, int]] = {}
    for i in range(n_kv):
        key = p.string(f"key of metadata entry {i}", p.lim.max_key_length)
        if not key:
            raise GGUFFormatError(f"Metadata entry {i} has an empty key.")
        if key in meta or key in arrays:
            raise GGUFFormatError(f"Metadata key '{key}' appears twice.")
        t = p.value_type(f"'{key}'")
        if t == _ARRAY:
            arrays[key] = p.skip_array(f"'{key}'", 1)
        else:
            meta[key] = p.scalar(t, f"'{key}'")
    return meta, arrays


def _tensor_size(
    name: str, dims: list[int], ggml_type: int, lim: GGUFLimits
) -> tuple[int, int]:
    """(elements, bytes) of one tensor, refusing absurd shapes."""
    if ggml_type not in GGML_TYPE_SIZES:
        raise GGUFFormatError(f"Tensor '{name}' has unknown ggml type {ggml_type}.")
    tname, block, type_size = GGML_TYPE_SIZES[ggml_type]
    elements = 1
    for d in dims:
        if d > lim.max_tensor_elements:
            raise GGUFFormatError(f"Tensor '{name}' has an absurd dimension {d}.")
        elements *= d
        if elements > lim.max_tensor_elements:
            raise GGUFFormatError(f"Tensor '{name}' has an absurd shape {dims}.")
    if dims and dims[0] % block:
        raise GGUFFormatError(
            f"Tensor '{name}' ({tname}) has a first dimension {dims[0]} that is not a "
            f"multiple of the block size {block}."
        )
    return elements, elements // block * type_size


def _tensors(p: _Parser, n_tensors: int
             ) -> list[tuple[str, int, int, int, int, tuple[int, ...]]]:
    """(name, ggml type, offset, bytes, elements, dims) per tensor."""
    out: list[tuple[str, int, int, int, int, tuple[int, ...]]] = []
    seen: set[str] = set()
    for i in range(n_tensors):
        name = p.string(f"name of tensor {i}", p.lim.max_key_length)
        if len(name.encode()) >= _MAX_TENSOR_NAME or name in seen:
            raise GGUFFormatError(f"Tensor {i} has a bad or repeated name '{name[:80]}'.")
        seen.add(name)
        n_dims = p.cur.u32(f"dimension count of '{name}'")
        if not 1 <= n_dims <= _MAX_DIMS:
            raise GGUFFormatError(f"Tensor '{name}' has {n_dims} dimensions (1 to 4 allowed).")
        dims = [p.cur.u64(f"dimension of '{name}'") for _ in range(n_dims)]
        ggml_type = p.cur.u32(f"type of '{name}'")
        offset = p.cur.u64(f"offset of '{name}'")
        elements, nbytes = _tensor_size(name, dims, ggml_type, p.lim)
        out.append((name, ggml_type, offset, nbytes, elements, tuple(dims)))
    return out


def _int(meta: dict[str, Scalar], key: str) -> int | None:
    v = meta.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _str(meta: dict[str, Scalar], key: str) -> str | None:
    v = meta.get(key)
    return v if isinstance(v, str) else None


def _parse(f: BinaryIO, size: int, lim: GGUFLimits) -> GGUFInfo:
    cur = _Cursor(f, size)
    p = _Parser(cur, lim)
    version, n_tensors, n_kv = _header(cur, lim)
    meta, arrays = _metadata(p, n_kv)
    tensors = _tensors(p, n_tensors)
    alignment = meta.get("general.alignment", 32)
    # The GGUF spec asks for a multiple of 8; llama.cpp aborts on alignment 1 (measured).
    if (not isinstance(alignment, int) or isinstance(alignment, bool) or alignment < 8
            or alignment & (alignment - 1) or alignment > 1 << 20):
        raise GGUFFormatError(
            f"general.alignment {alignment!r} is not a power of two from 8 to 2^20.")
    data_offset = -(-cur.offset // alignment) * alignment
    data_end = data_offset
    types: dict[str, int] = {}
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, ggml_type, offset, nbytes, _, dims in tensors:
        if offset % alignment:
            raise GGUFFormatError(f"Tensor '{name}' offset {offset} is not aligned.")
        end = data_offset + offset + nbytes
        if end > size:
            raise GGUFFormatError(
                f"Tensor '{name}' ends at byte {end}, past the end of the file ({size} "
                "bytes): the file is truncated or corrupt. Download it again."
            )
        data_end = max(data_end, end)
        tname = GGML_TYPE_SIZES[ggml_type][0]
        types[tname] = types.get(tname, 0) + 1
        shapes[name] = (tname, dims)
    arch = _str(meta, "general.architecture")
    prefix = f"{arch}." if arch else "\0"
    file_type = _int(meta, "general.file_type")
    tokens = arrays.get("tokenizer.ggml.tokens")
    return GGUFInfo(
        version=version, n_tensors=n_tensors, n_kv=n_kv, file_size=size, alignment=alignment,
        data_offset=data_offset, tensor_data_end=data_end,
        n_params=sum(t[4] for t in tensors),
        architecture=arch, name=_str(meta, "general.name"),
        context_length=_int(meta, prefix + "context_length"),
        block_count=_int(meta, prefix + "block_count"),
        embedding_length=_int(meta, prefix + "embedding_length"),
        head_count=_int(meta, prefix + "attention.head_count"),
        head_count_kv=_int(meta, prefix + "attention.head_count_kv"),
        key_length=_int(meta, prefix + "attention.key_length"),
        file_type=file_type,
        file_type_name=FILE_TYPE_NAMES.get(file_type) if file_type is not None else None,
        chat_template=_str(meta, "tokenizer.chat_template"),
        vocab_size=tokens[1] if tokens else _int(meta, prefix + "vocab_size"),
        tokenizer_model=_str(meta, "tokenizer.ggml.model"),
        metadata=meta, arrays=arrays, tensor_types=types, tensor_shapes=shapes,
    )


def read_gguf_header(
    source: str | os.PathLike[str] | BinaryIO, *, limits: GGUFLimits | None = None
) -> GGUFInfo:
    """Read and check the header of a GGUF file (a path or a seekable binary file object).

    Raises :class:`GGUFFormatError` for anything that is not a sound GGUF header, and
    :class:`OSError` if the file cannot be opened.
    """
    lim = limits or GGUFLimits()
    if isinstance(source, (str, os.PathLike)):
        with Path(source).open("rb") as f:
            return _parse(f, os.fstat(f.fileno()).st_size, lim)
    size = source.seek(0, io.SEEK_END)
    source.seek(0)
    return _parse(source, size, lim)


def read_gguf_header_bytes(data: bytes, *, limits: GGUFLimits | None = None) -> GGUFInfo:
    """Like :func:`read_gguf_header` for bytes already in memory (tests, fuzzing)."""
    return read_gguf_header(io.BytesIO(data), limits=limits)
