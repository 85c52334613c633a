"""The GGUF header reader tells what a file holds and refuses broken or hostile files."""

from __future__ import annotations

import contextlib
import random
import struct
from pathlib import Path

import pytest
from gguf.constants import GGML_QUANT_SIZES

from localloom.gguf_header import (
    GGML_TYPE_SIZES,
    GGUFFormatError,
    GGUFLimits,
    read_gguf_header,
    read_gguf_header_bytes,
)
from localloom.testing import CHATML_TEMPLATE

# -- a tiny GGUF writer for hand-made (and deliberately broken) files --------------------


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _kv_u32(key: str, value: int) -> bytes:
    return _str(key) + struct.pack("<II", 4, value)


def _kv_str(key: str, value: str) -> bytes:
    return _str(key) + struct.pack("<I", 8) + _str(value)


def _kv_str_array(key: str, items: list[str]) -> bytes:
    return _str(key) + struct.pack("<IIQ", 9, 8, len(items)) + b"".join(_str(i) for i in items)


def _tensor(name: str, dims: list[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    out = _str(name) + struct.pack("<I", len(dims))
    out += b"".join(struct.pack("<Q", d) for d in dims)
    return out + struct.pack("<IQ", ggml_type, offset)


def _gguf(kvs: list[bytes], tensors: list[bytes], data: bytes = b"", *, version: int = 3,
          n_kv: int | None = None, n_tensors: int | None = None) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors)
    body += b"\0" * (-len(body) % 32)
    return body + data


def _good(data_bytes: int = 64, dims: list[int] | None = None, offset: int = 0) -> bytes:
    kvs = [_kv_str("general.architecture", "llama"), _kv_u32("llama.context_length", 4096),
           _kv_str_array("tokenizer.ggml.tokens", ["a", "b", "c"])]
    return _gguf(kvs, [_tensor("w", dims or [16], 0, offset)], b"\1" * data_bytes)


# -- reading real files ---------------------------------------------------------------------


def test_header_of_the_tiny_model_reports_architecture_context_template_and_vocab(
        tiny_gguf: Path) -> None:
    info = read_gguf_header(tiny_gguf)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.context_length == 2048
    assert info.block_count == 2 and info.embedding_length == 64
    assert info.chat_template == CHATML_TEMPLATE and info.has_chat_template
    assert info.vocab_size == 323
    assert info.file_size == tiny_gguf.stat().st_size == info.tensor_data_end
    assert info.n_tensors == 21 and info.tensor_types == {"F32": 21}
    assert info.file_type_name == "F32" and info.name == "tiny-test"
    assert info.arrays["tokenizer.ggml.tokens"] == ("string", 323)
    assert info.metadata["tokenizer.ggml.bos_token_id"] == 1


def test_a_base_model_without_template_says_so(tiny_gguf_no_template: Path) -> None:
    info = read_gguf_header(tiny_gguf_no_template)
    assert info.chat_template is None and not info.has_chat_template


def test_reads_from_an_open_file_object(tiny_gguf: Path) -> None:
    with tiny_gguf.open("rb") as f:
        assert read_gguf_header(f).vocab_size == 323


def test_hand_made_file_is_read() -> None:
    info = read_gguf_header_bytes(_good())
    assert (info.architecture, info.context_length, info.vocab_size) == ("llama", 4096, 3)
    assert info.n_params == 16


def test_block_sizes_agree_with_the_gguf_package() -> None:
    for qtype, (block, type_size) in GGML_QUANT_SIZES.items():
        assert GGML_TYPE_SIZES[int(qtype)][1:] == (block, type_size), qtype.name


# -- refusing broken files ------------------------------------------------------------------


def test_every_truncation_of_a_real_file_is_refused(tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    for n in [*range(0, 200), *range(200, len(data), 811), len(data) - 1]:
        with pytest.raises(GGUFFormatError):
            read_gguf_header_bytes(data[:n])


def test_bad_magic_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(GGUFFormatError, match="Not a GGUF file"):
        read_gguf_header_bytes(b"PK\3\4" + _good()[4:])
    with pytest.raises(GGUFFormatError, match="Not a GGUF file"):
        read_gguf_header_bytes(b"")


@pytest.mark.parametrize("version", [0, 1, 4, 3 << 24])
def test_unsupported_versions_are_refused(version: int) -> None:
    with pytest.raises(GGUFFormatError, match="version"):
        read_gguf_header_bytes(_gguf([], [], version=version))


def test_tensor_past_the_end_of_the_file_is_refused() -> None:
    with pytest.raises(GGUFFormatError, match="past the end"):
        read_gguf_header_bytes(_good(data_bytes=63))
    with pytest.raises(GGUFFormatError, match="past the end"):
        read_gguf_header_bytes(_good(offset=1 << 62))


@pytest.mark.parametrize("dims", [[1 << 40, 1 << 40], [16, 0xFFFF_FFFF_FFFF_FFFF]])
def test_absurd_dimensions_are_refused(dims: list[int]) -> None:
    with pytest.raises(GGUFFormatError, match="absurd"):
        read_gguf_header_bytes(_good(dims=dims))


def test_bad_tensor_tables_are_refused() -> None:
    cases = {
        "dimensions": _gguf([], [_tensor("w", [1, 1, 1, 1, 1])], b"\0" * 64),
        "unknown ggml type": _gguf([], [_tensor("w", [16], ggml_type=999)], b"\0" * 64),
        "block size": _gguf([], [_tensor("w", [33], ggml_type=2)], b"\0" * 64),
        "not aligned": _gguf([], [_tensor("w", [4], offset=3)], b"\0" * 64),
        "repeated name": _gguf([], [_tensor("w", [4]), _tensor("w", [4], offset=32)],
                               b"\0" * 64),
    }
    for reason, blob in cases.items():
        with pytest.raises(GGUFFormatError, match=reason):
            read_gguf_header_bytes(blob)


def test_counts_and_lengths_are_never_trusted() -> None:
    huge = 0xFFFF_FFFF_FFFF
    cases = [
        _gguf([], [], n_kv=huge),
        _gguf([], [], n_tensors=huge),
        _gguf([struct.pack("<Q", huge) + b"key"], []),  # key length
        _gguf([_str("k") + struct.pack("<IQ", 8, huge)], []),  # string value length
        _gguf([_str("k") + struct.pack("<IIQ", 9, 8, huge)], []),  # array of strings
        _gguf([_str("k") + struct.pack("<IIQ", 9, 12, huge)], []),  # array of int64
        _gguf([_str("k") + struct.pack("<I", 77) + b"\0" * 8], []),  # value type
        _gguf([_kv_u32("k", 1), _kv_u32("k", 2)], []),  # duplicate key
        _gguf([_kv_u32("general.alignment", 3)], [_tensor("w", [4])], b"\0" * 64),
    ]
    for blob in cases:
        with pytest.raises(GGUFFormatError):
            read_gguf_header_bytes(blob)


def test_deeply_nested_arrays_are_refused() -> None:
    nested = _str("k") + struct.pack("<I", 9)
    for _ in range(10):
        nested += struct.pack("<IQ", 9, 1)
    nested += struct.pack("<IQ", 0, 0)
    with pytest.raises(GGUFFormatError, match="nests arrays"):
        read_gguf_header_bytes(_gguf([nested], []))


def test_limits_are_configurable() -> None:
    with pytest.raises(GGUFFormatError, match="over the limit"):
        read_gguf_header_bytes(_good(), limits=GGUFLimits(max_array_length=2))


def test_random_corruption_raises_only_format_errors(tiny_gguf: Path) -> None:
    data = tiny_gguf.read_bytes()
    rng = random.Random(1234)
    for _ in range(400):
        blob = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            blob[rng.randrange(10_000)] = rng.randrange(256)
        with contextlib.suppress(GGUFFormatError):
            read_gguf_header_bytes(bytes(blob))
