"""Malformed GGUF files for adversarial tests: seeded, reproducible, each named and categorized.

Every variant starts from one valid tiny model and breaks it in one way a hostile or damaged
download could: truncation, counts and lengths near 2^64, tensors past the end of the file,
absurd shapes, bad alignment, unknown architectures and types, nested arrays, duplicates,
absurd hyperparameters and random byte flips. The same seed always gives the same bytes.

Example::

    from localloom.testing.hostile import hostile_variants
    for variant in hostile_variants(seed=7):
        (tmp_path / f"{variant.name}.gguf").write_bytes(variant.data())
"""

from __future__ import annotations

import copy
import functools
import os
import random
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localloom.gguf_header import GGUF_MAGIC, starts_with_magic

__all__ = ["GGUFLayout", "HostileVariant", "hostile_variants", "tiny_gguf_bytes",
           "write_hostile_variants"]

# GGUF value type ids.
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
        BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
_ALIGN = 32
_TOP = 1 << 64


@dataclass
class Raw:
    """Bytes written verbatim where a value belongs (to declare one type and send another)."""

    payload: bytes


@dataclass
class KV:
    """One metadata entry; an array's value is ``(element type, [values])``."""

    key: str
    vtype: int
    value: Any


@dataclass
class TensorInfo:
    """One tensor-table entry; ``offset`` is relative to the start of tensor data."""

    name: str
    dims: list[int]
    ggml_type: int
    offset: int


class _Reader:
    """Parses the trusted base file only; hostile bytes never go through here."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob
        self.pos = 0

    def take(self, fmt: str) -> Any:
        (v,) = struct.unpack_from(fmt, self.blob, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def string(self) -> str:
        n = self.take("<Q")
        s = self.blob[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, t: int) -> Any:
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.take("<I"), self.take("<Q")
            return (et, [self.value(et) for _ in range(n)])
        v = self.take(_FMT[t])
        return bool(v) if t == BOOL else v


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.offsets: dict[str, int] = {}

    def put(self, fmt: str, v: Any, label: str | None = None) -> None:
        if label:
            self.offsets[label] = len(self.buf)
        self.buf += struct.pack(fmt, v)

    def string(self, s: str | bytes, label: str | None = None) -> None:
        b = s.encode("utf-8") if isinstance(s, str) else s
        self.put("<Q", len(b), label)
        self.buf += b

    def value(self, t: int, v: Any, label: str) -> None:
        if isinstance(v, Raw):
            self.offsets[label] = len(self.buf)
            self.buf += v.payload
        elif t == STR:
            self.string(v, label)
        elif t == ARR:
            et, items = v
            self.put("<I", et, label + ":elemtype")
            self.put("<Q", len(items), label + ":arrlen")
            for i, item in enumerate(items):
                self.value(et, item, f"{label}:elem{i}")
        else:
            self.put(_FMT[t], int(v) if t == BOOL else v, label)


@dataclass
class GGUFLayout:
    """A GGUF file as editable parts; :meth:`serialize` also returns every field's offset."""

    version: int
    kvs: list[KV]
    tensors: list[TensorInfo]
    data: bytes

    @classmethod
    def parse(cls, blob: bytes) -> GGUFLayout:
        """Split a valid GGUF (version 3, default alignment) into parts."""
        r = _Reader(blob)
        assert starts_with_magic(blob)
        r.pos = 4
        version, n_tensors, n_kv = r.take("<I"), r.take("<Q"), r.take("<Q")
        kvs = []
        for _ in range(n_kv):
            key = r.string()
            t = r.take("<I")
            kvs.append(KV(key, t, r.value(t)))
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            dims = [r.take("<Q") for _ in range(r.take("<I"))]
            tensors.append(TensorInfo(name, dims, r.take("<I"), r.take("<Q")))
        start = -(-r.pos // _ALIGN) * _ALIGN
        return cls(version, kvs, tensors, blob[start:])

    def copy(self) -> GGUFLayout:
        """A deep copy to edit."""
        return copy.deepcopy(self)

    def kv(self, key: str) -> KV:
        """The entry named ``key``."""
        return next(kv for kv in self.kvs if kv.key == key)

    def tensor(self, name: str) -> TensorInfo:
        """The tensor named ``name``."""
        return next(t for t in self.tensors if t.name == name)

    def serialize(self, *, magic: bytes = GGUF_MAGIC, pad_to: int = _ALIGN
                  ) -> tuple[bytes, dict[str, int]]:
        """The file's bytes and the offset of each field (labels like ``kv:KEY:value``)."""
        w = _Writer()
        w.offsets["magic"] = 0
        w.buf += magic
        w.put("<I", self.version, "version")
        w.put("<Q", len(self.tensors), "n_tensors")
        w.put("<Q", len(self.kvs), "n_kv")
        for kv in self.kvs:
            w.string(kv.key, f"kv:{kv.key}:keylen")
            w.put("<I", kv.vtype, f"kv:{kv.key}:type")
            w.value(kv.vtype, kv.value, f"kv:{kv.key}:value")
        for t in self.tensors:
            w.string(t.name, f"tensor:{t.name}:namelen")
            w.put("<I", len(t.dims), f"tensor:{t.name}:ndims")
            for i, d in enumerate(t.dims):
                w.put("<Q", d % _TOP, f"tensor:{t.name}:dim{i}")
            w.put("<I", t.ggml_type, f"tensor:{t.name}:type")
            w.put("<Q", t.offset % _TOP, f"tensor:{t.name}:offset")
        w.buf += b"\0" * (-len(w.buf) % pad_to)
        w.offsets["data"] = len(w.buf)
        return bytes(w.buf) + self.data, w.offsets


@dataclass(frozen=True)
class HostileVariant:
    """One malformed file: a unique name, its category, and how to make its bytes."""

    name: str
    category: str
    build: Callable[[], bytes]

    def data(self) -> bytes:
        """The file's bytes (made on demand: 300 variants of 0.5 MB stay out of memory)."""
        return self.build()


def tiny_gguf_bytes() -> bytes:
    """The bytes of :func:`localloom.testing.write_tiny_gguf` (the valid base model)."""
    from localloom.testing.gguf import write_tiny_gguf

    with tempfile.TemporaryDirectory() as d:
        return write_tiny_gguf(Path(d) / "base.gguf").read_bytes()


class _Factory:
    """Collects variants; helpers patch fields in place or edit the layout and re-serialize."""

    def __init__(self, base: bytes, seed: int) -> None:
        self.base = base
        self.layout = GGUFLayout.parse(base)
        blob, self.offsets = self.layout.serialize()
        if blob != base:
            raise ValueError("The base file does not round-trip; pass a plain GGUF v3 file.")
        self.rng = random.Random(seed)
        self.variants: list[HostileVariant] = []
        names = [t.name for t in self.layout.tensors]
        self.first, self.last = names[0], names[-1]
        self.norm = next(n for n in names if n.endswith("norm.weight"))

    def add(self, category: str, name: str, build: Callable[[], bytes]) -> None:
        full = f"{category}-{name}"
        if any(v.name == full for v in self.variants):
            raise ValueError(f"duplicate variant name {full}")
        self.variants.append(HostileVariant(full, category, build))

    def patch(self, category: str, name: str, label: str, fmt: str, value: Any) -> None:
        base, off = self.base, self.offsets[label]

        def build() -> bytes:
            out = bytearray(base)
            struct.pack_into(fmt, out, off, value)
            return bytes(out)

        self.add(category, name, build)

    def edit(self, category: str, name: str, fn: Callable[[GGUFLayout], None], *,
             pad_to: int = _ALIGN) -> None:
        layout = self.layout

        def build() -> bytes:
            lay = layout.copy()
            fn(lay)
            return lay.serialize(pad_to=pad_to)[0]

        self.add(category, name, build)

    def cut(self, category: str, name: str, size: int) -> None:
        base = self.base
        self.add(category, name, lambda: base[:size])

    def set_kv(self, category: str, name: str, key: str, vtype: int, value: Any) -> None:
        def fn(lay: GGUFLayout) -> None:
            kv = next((k for k in lay.kvs if k.key == key), None)
            if kv is None:
                lay.kvs.append(KV(key, vtype, value))
            else:
                kv.vtype, kv.value = vtype, value

        self.edit(category, name, fn)

    def set_tensor(self, category: str, variant: str, tensor: str, **changes: Any) -> None:
        def fn(lay: GGUFLayout) -> None:
            for k, v in changes.items():
                setattr(lay.tensor(tensor), k, v)

        self.edit(category, variant, fn)


def _magic_and_version(f: _Factory) -> None:
    base = f.base
    for name, magic in [("ggug", b"GGUG"), ("zeros", b"\0\0\0\0"), ("reversed", b"FUGG"),
                        ("ggml", b"ggml"), ("lowercase", b"gguf")]:
        f.add("bad_magic", name, functools.partial(bytes.__add__, magic, base[4:]))
    f.add("bad_magic", "empty-file", lambda: b"")
    f.add("bad_magic", "three-bytes", lambda: b"GGU")
    for v in (0, 1, 4, 0xFFFF_FFFF, 0x0300_0000):
        f.patch("bad_version", f"v{v:x}", "version", "<I", v)


def _truncations(f: _Factory) -> None:
    start, size = f.offsets["data"], len(f.base)
    head = {0, 1, 3, 4, 7, 8, 15, 16, 23, 24, start - 1}
    head |= {f.offsets[k] + d for k in ("kv:general.architecture:value", f"tensor:{f.first}:ndims",
                                        f"tensor:{f.last}:offset") for d in (0, 1, 5)}
    head |= set(f.rng.sample(range(25, start), 40 - len(head)))
    for n in sorted(head):
        f.cut("truncated_header", f"at-{n}", n)
    tail = {start, start + 1, start + 31, size - 1, size - 4, size - 32}
    tail |= set(f.rng.sample(range(start + 2, size - 33), 30 - len(tail)))
    for n in sorted(tail):
        f.cut("truncated_data", f"at-{n}", n)


def _counts_and_lengths(f: _Factory) -> None:
    n_t, n_kv = len(f.layout.tensors), len(f.layout.kvs)
    for v in (_TOP - 1, 1 << 63, (1 << 32) + n_t, 1_000_001, n_t + 1, n_t + 1000, 0):
        f.patch("huge_counts", f"n_tensors-{v}", "n_tensors", "<Q", v)
    for v in (_TOP - 1, 1 << 63, (1 << 32) + n_kv, 65_537, n_kv + 1, n_kv - 1, 0):
        f.patch("huge_counts", f"n_kv-{v}", "n_kv", "<Q", v)
    size = len(f.base)
    first_key = f.layout.kvs[0].key
    targets = {
        "first-key": f"kv:{first_key}:keylen",
        "arch-value": "kv:general.architecture:value",
        "name-value": "kv:general.name:value",
        "chat-template": "kv:tokenizer.chat_template:value",
        "first-token": "kv:tokenizer.ggml.tokens:value:elem0",
        "tensor-name": f"tensor:{f.last}:namelen",
    }
    for what, label in targets.items():
        just_over = size - f.offsets[label] - 8 + 1  # one byte more than the file has left
        wrap = _TOP - f.offsets[label] - 8  # offset + length wraps to zero in C
        for tag, n in [("2^64-1", _TOP - 1), ("2^63", 1 << 63), ("wraps", wrap),
                       ("just-over", just_over)]:
            f.patch("huge_string_length", f"{what}-{tag}", label, "<Q", n)


def _tensor_offsets(f: _Factory) -> None:
    size, start = len(f.base), f.offsets["data"]
    for t in (f.first, f.last):
        info = f.layout.tensor(t)
        label = f"tensor:{t}:offset"
        for tag, off in [("2^64-32", _TOP - 32), ("2^63", 1 << 63), ("file-size", size),
                         ("wraps-to-zero", _TOP - start - (start % _ALIGN)),
                         ("misaligned", info.offset + 1),
                         ("past-end", -(-(size - start) // _ALIGN) * _ALIGN)]:
            f.patch("tensor_offset", f"{t}-{tag}", label, "<Q", off)
    other = f.layout.tensor(f.last).offset
    f.set_tensor("tensor_offset", "overlapping", f.first, offset=other)


def _dims(f: _Factory) -> None:
    t = f.first
    rows, cols = f.layout.tensor(t).dims
    shapes: dict[str, list[int]] = {
        "2^63-rows": [rows, 1 << 63], "2^64-1": [_TOP - 1, 1], "too-big": [rows, 1 << 32],
        "zero-dim": [0, cols], "product-2^64": [1 << 32, 1 << 32],
        "product-over-int64": [1 << 32, (1 << 31) + 1], "four-dims-2^84": [1 << 21] * 4,
        "swapped": [cols, rows], "one-row-short": [rows, cols - 1],
        "one-row-more": [rows, cols + 1], "extra-unit-dim": [rows, cols, 1],
        "negative": [rows, _TOP - 1],
    }
    for tag, dims in shapes.items():
        f.set_tensor("absurd_dims", f"{t}-{tag}", t, dims=dims)
    f.set_tensor("absurd_dims", f"{f.norm}-2^63", f.norm, dims=[(1 << 63) + 64])
    for n in (0, 5, 0xFFFF_FFFF):
        f.patch("absurd_dims", f"n_dims-{n}", f"tensor:{t}:ndims", "<I", n)


def _alignment(f: _Factory) -> None:
    key = "general.alignment"
    for v in (0, 3, 1 << 31, 1, 0xFFFF_FFFF, 7, 48, 64, 1 << 20):
        f.set_kv("alignment", f"u32-{v}", key, U32, v)
    for v in (8, 16):  # what the spec allows, truly applied: llama.cpp wants 32 (measured)
        f.edit("alignment", f"u32-{v}-applied",
               functools.partial(_append_kv, KV(key, U32, v)), pad_to=v)
    f.set_kv("alignment", "string", key, STR, "32")
    f.set_kv("alignment", "u64-2^63", key, U64, 1 << 63)
    f.set_kv("alignment", "float", key, F32, 32.0)


def _append_kv(kv: KV, lay: GGUFLayout) -> None:
    lay.kvs.append(copy.deepcopy(kv))


def _architecture(f: _Factory) -> None:
    key = "general.architecture"
    for tag, arch in [("unknown", "gpt-9000"), ("empty", ""), ("nul", "llama\0evil"),
                      ("path", "../../../../etc/passwd"), ("long", "A" * 100_000),
                      ("bert", "bert"), ("mamba", "mamba"), ("clip", "clip"), ("t5", "t5"),
                      ("gemma3", "gemma3"), ("qwen2", "qwen2"), ("format", "%s%s%n%x")]:
        f.set_kv("architecture", tag, key, STR, arch)
    not_utf8 = Raw(struct.pack("<Q", 4) + b"\xff\xfe\xfd\xfc")
    f.set_kv("architecture", "bytes-not-utf8", key, STR, not_utf8)
    f.edit("architecture", "missing",
           lambda lay: lay.kvs.remove(lay.kv(key)))


def _nested(depth: int, leaf: tuple[int, list[Any]]) -> tuple[int, list[Any]]:
    value = leaf
    for _ in range(depth - 1):
        value = (ARR, [value])
    return value


def _nested_arrays(f: _Factory) -> None:
    for depth in (2, 3, 4, 16, 200):
        f.set_kv("nested_arrays", f"depth-{depth}", "hostile.nested", ARR,
                 _nested(depth, (U32, [1, 2, 3])))
    f.set_kv("nested_arrays", "many-empty", "hostile.nested", ARR,
             (ARR, [(U8, [])] * 20_000))
    f.set_kv("nested_arrays", "huge-inner", "hostile.nested", ARR,
             (ARR, [Raw(struct.pack("<IQ", U8, 1 << 62))]))
    tokens = f.layout.kv("tokenizer.ggml.tokens").value[1]
    f.set_kv("nested_arrays", "tokens-nested", "tokenizer.ggml.tokens", ARR,
             (ARR, [(STR, [t]) for t in tokens]))
    f.set_kv("nested_arrays", "array-elem-type-13", "hostile.nested", ARR,
             Raw(struct.pack("<IQ", 13, 4) + b"\0" * 16))
    f.patch("nested_arrays", "tokens-2^64-1", "kv:tokenizer.ggml.tokens:value:arrlen", "<Q",
            _TOP - 1)


def _value_types(f: _Factory) -> None:
    ctx, arch = "llama.context_length", "general.architecture"
    for tag, label, v in [
        ("arch-as-u32", f"kv:{arch}:type", U32), ("ctx-as-string", f"kv:{ctx}:type", STR),
        ("ctx-type-13", f"kv:{ctx}:type", 13), ("ctx-type-255", f"kv:{ctx}:type", 255),
        ("ctx-type-max", f"kv:{ctx}:type", 0xFFFF_FFFF), ("ctx-as-array", f"kv:{ctx}:type", ARR),
        ("tokens-elem-u8", "kv:tokenizer.ggml.tokens:value:elemtype", U8),
        ("tokens-elem-13", "kv:tokenizer.ggml.tokens:value:elemtype", 13),
        ("scores-elem-string", "kv:tokenizer.ggml.scores:value:elemtype", STR),
    ]:
        f.patch("value_types", tag, label, "<I", v)
    tokens = f.layout.kv("tokenizer.ggml.tokens").value[1]
    for tag, key, vtype, value in [
        ("ctx-string", ctx, STR, "2048"), ("ctx-float", ctx, F32, 2048.0),
        ("ctx-array", ctx, ARR, (U32, [2048])), ("blocks-int64-neg", "llama.block_count", I64, -1),
        ("blocks-bool", "llama.block_count", BOOL, True),
        ("tokenizer-model-u32", "tokenizer.ggml.model", U32, 1),
        ("template-array", "tokenizer.chat_template", ARR, (STR, ["{{ x }}"])),
        ("bos-string", "tokenizer.ggml.bos_token_id", STR, "1"),
        ("file-type-string", "general.file_type", STR, "F32"),
        ("tokens-u32", "tokenizer.ggml.tokens", ARR, (U32, list(range(len(tokens))))),
        ("scores-strings", "tokenizer.ggml.scores", ARR, (STR, ["0"] * len(tokens))),
        ("types-float", "tokenizer.ggml.token_type", ARR, (F32, [1.0] * len(tokens))),
        ("bool-2", "tokenizer.ggml.add_bos_token", BOOL, Raw(b"\x02")),
        ("eps-string", "llama.attention.layer_norm_rms_epsilon", STR, "1e-5"),
    ]:
        f.set_kv("value_types", tag, key, vtype, value)


def _hyperparameters(f: _Factory) -> None:
    nan, inf = float("nan"), float("inf")
    for tag, key, vtype, value in [
        ("heads-0", "llama.attention.head_count", U32, 0),
        ("kv-heads-0", "llama.attention.head_count_kv", U32, 0),
        ("kv-heads-3", "llama.attention.head_count_kv", U32, 3),
        ("kv-heads-more", "llama.attention.head_count_kv", U32, 64),
        ("heads-huge", "llama.attention.head_count", U32, 0xFFFF_FFFF),
        ("embd-0", "llama.embedding_length", U32, 0),
        ("embd-65", "llama.embedding_length", U32, 65),
        ("embd-huge", "llama.embedding_length", U32, 0xFFFF_FFFF),
        ("blocks-0", "llama.block_count", U32, 0),
        ("blocks-1000", "llama.block_count", U32, 1000),
        ("blocks-max", "llama.block_count", U32, 0xFFFF_FFFF),
        ("ctx-0", "llama.context_length", U32, 0),
        ("ctx-max", "llama.context_length", U32, 0xFFFF_FFFF),
        ("ffn-0", "llama.feed_forward_length", U32, 0),
        ("rope-dims-0", "llama.rope.dimension_count", U32, 0),
        ("rope-dims-1000", "llama.rope.dimension_count", U32, 1000),
        ("eps-nan", "llama.attention.layer_norm_rms_epsilon", F32, nan),
        ("eps-negative", "llama.attention.layer_norm_rms_epsilon", F32, -1.0),
        ("eps-inf", "llama.attention.layer_norm_rms_epsilon", F32, inf),
        ("experts-huge", "llama.expert_count", U32, 1 << 20),
        ("experts-used-more", "llama.expert_used_count", U32, 64),
        ("sliding-window-huge", "llama.attention.sliding_window", U32, 0xFFFF_FFFF),
    ]:
        f.set_kv("hyperparameters", tag, key, vtype, value)


def _tensor_types(f: _Factory) -> None:
    t = f.first
    for v in (4, 5, 31, 32, 33, 36, 37, 38, 42, 1000, 1 << 31, 0xFFFF_FFFF):
        f.patch("tensor_types", f"type-{v}", f"tensor:{t}:type", "<I", v)
    for tag, v in [("f16", 1), ("q4_0", 2), ("i32", 26), ("bf16", 30), ("i8", 24)]:
        f.set_tensor("tensor_types", f"wrong-{tag}", t, ggml_type=v)


def _names(f: _Factory) -> None:
    def dup_kv(lay: GGUFLayout) -> None:
        lay.kvs.append(copy.deepcopy(lay.kv("general.architecture")))

    def dup_tensor(lay: GGUFLayout) -> None:
        lay.tensors.append(copy.deepcopy(lay.tensors[-1]))

    f.edit("duplicates", "kv-key", dup_kv)
    f.edit("duplicates", "tensor-name", dup_tensor)
    f.edit("duplicates", "tensor-renamed-to-first",
           lambda lay: setattr(lay.tensors[-1], "name", lay.tensors[0].name))
    for tag, name in [("empty", ""), ("63-chars", "x" * 63), ("64-chars", "x" * 64),
                      ("nul", "output\0.weight"), ("old-name", "tok_embeddings.weight")]:
        f.set_tensor("tensor_names", tag, f.first, name=name)
    f.edit("tensor_names", "drop-output-norm",
           lambda lay: lay.tensors.remove(lay.tensor("output_norm.weight")))
    f.edit("tensor_names", "drop-last-ffn-down",
           lambda lay: lay.tensors.remove(lay.tensor(
               next(t.name for t in reversed(lay.tensors) if "ffn_down" in t.name))))
    f.edit("tensor_names", "extra-tensor", lambda lay: lay.tensors.append(
        TensorInfo("hostile.extra", [32], 0, lay.tensors[0].offset)))


def _vocab(f: _Factory) -> None:
    tokens = f.layout.kv("tokenizer.ggml.tokens").value[1]
    n = len(tokens)
    arr = "tokenizer.ggml."

    def vocab(keep: int) -> Callable[[GGUFLayout], None]:
        def fn(lay: GGUFLayout) -> None:
            for k in ("tokens", "scores", "token_type"):
                kv = lay.kv(arr + k)
                kv.value = (kv.value[0], kv.value[1][:keep])

        return fn

    for keep in (0, 1, 100):
        f.edit("vocab", f"only-{keep}-tokens", vocab(keep))
    for tag, model in [("gpt2-no-merges", "gpt2"), ("bert", "bert"), ("unknown", "foo"),
                       ("t5", "t5"), ("rwkv", "rwkv")]:
        f.set_kv("vocab", f"model-{tag}", arr + "model", STR, model)
    f.set_kv("vocab", "types-99", arr + "token_type", ARR, (I32, [99] * n))
    f.set_kv("vocab", "scores-short", arr + "scores", ARR, (F32, [0.0] * 10))
    f.set_kv("vocab", "tokens-not-utf8", arr + "tokens", ARR,
             (STR, [Raw(struct.pack("<Q", 2) + b"\xff\xfe")] * n))
    f.set_kv("vocab", "tokens-empty-strings", arr + "tokens", ARR, (STR, [""] * n))
    for tag, key, v in [("bos-at-n", "bos_token_id", n), ("eos-1e9", "eos_token_id", 10**9),
                        ("unk-max", "unknown_token_id", 0xFFFF_FFFF)]:
        f.set_kv("vocab", tag, arr + key, U32, v)


def _byte_flips(f: _Factory) -> None:
    start, size = f.offsets["data"], len(f.base)
    base = f.base
    for i in range(60):
        k = (1, 2, 4, 8)[i % 4]
        hi = start if i < 50 else size  # mostly the header, where bytes mean structure
        spots = [(f.rng.randrange(hi), f.rng.randrange(256)) for _ in range(k)]

        def build(spots: list[tuple[int, int]] = spots) -> bytes:
            out = bytearray(base)
            for pos, val in spots:
                out[pos] ^= val or 0xFF
            return bytes(out)

        f.add("byte_flips", f"{i:02d}-{k}-bytes{'' if i < 50 else '-anywhere'}", build)


def hostile_variants(base: bytes | None = None, *, seed: int = 7) -> list[HostileVariant]:
    """About 300 malformed variants of ``base`` (default: the tiny test model).

    Names are unique and stable for a given seed and base, so a failure can be replayed:
    ``next(v for v in hostile_variants() if v.name == "absurd_dims-n_dims-0").data()``.
    """
    f = _Factory(base if base is not None else tiny_gguf_bytes(), seed)
    for make in (_magic_and_version, _truncations, _counts_and_lengths, _tensor_offsets, _dims,
                 _alignment, _architecture, _nested_arrays, _value_types, _hyperparameters,
                 _tensor_types, _names, _vocab, _byte_flips):
        make(f)
    return f.variants


def write_hostile_variants(directory: str | os.PathLike[str], base: bytes | None = None, *,
                           seed: int = 7) -> Iterator[tuple[HostileVariant, Path]]:
    """Write each variant to ``directory/NAME.gguf`` lazily, yielding (variant, path)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for v in hostile_variants(base, seed=seed):
        path = out / f"{v.name}.gguf"
        path.write_bytes(v.data())
        yield v, path
