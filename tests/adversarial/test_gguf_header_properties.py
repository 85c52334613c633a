"""Property tests: LocalLoom's GGUF header reader survives anything, quickly and in little memory.

Whatever the bytes, ``read_gguf_header`` returns a :class:`GGUFInfo` or raises
:class:`GGUFFormatError` (never another exception), within a time and memory bound, and on
files written by the reference ``gguf.GGUFWriter`` it reports what was written.
"""

from __future__ import annotations

import io
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hostile_gguf import SECTION, THREATS

from localloom.gguf_header import (
    GGUFFormatError,
    GGUFInfo,
    read_gguf_header,
    read_gguf_header_bytes,
)
from localloom.testing.hostile import GGUFLayout, tiny_gguf_bytes

FAST = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=3000, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_SECONDS = 2.0  # per file, on a busy 2-core machine; typical is a few milliseconds
MAX_PEAK_BYTES = 16 * 1024 * 1024  # the base file is 0.5 MB; claims of 2^64 must not allocate

BASE = tiny_gguf_bytes()
HEADER_END = GGUFLayout.parse(BASE).serialize()[1]["data"]  # where tensor data starts
PREFIX = b"GGUF" + struct.pack("<I", 3)


@dataclass
class Tally:
    """What the properties saw, for docs/RELIABILITY.md."""

    reads: int = 0
    refused: int = 0
    slowest: float = 0.0
    peak: int = 0
    tests: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    t = Tally()
    yield t
    if len(t.tests) >= 8:  # a partial run (-k) keeps the last full figures
        SECTION.record({THREATS[5]: (
            f"{t.reads:,} reads over {len(t.tests)} properties (hypothesis, 300 examples "
            f"each by default, 3,000 under -m slow): {t.refused:,} GGUFFormatError, the rest "
            f"GGUFInfo, 0 other exceptions; slowest read {t.slowest * 1000:.0f} ms, peak "
            f"memory {t.peak / 2**20:.1f} MiB for headers claiming up to 2^64 entries.")})


def read_bounded(data: bytes, tally: Tally) -> GGUFInfo | None:
    """Read ``data``; only GGUFFormatError may escape, within the time bound."""
    start = time.monotonic()
    try:
        info: GGUFInfo | None = read_gguf_header_bytes(data)
    except GGUFFormatError as exc:
        assert str(exc), "a format error must say why"
        info = None
        tally.refused += 1
    elapsed = time.monotonic() - start
    tally.reads += 1
    tally.slowest = max(tally.slowest, elapsed)
    assert elapsed < MAX_SECONDS, f"reading took {elapsed:.2f} s"
    return info


def peak_memory(fn: Callable[[], object], tally: Tally) -> int:
    tracemalloc.start()
    try:
        fn()
        peak = tracemalloc.get_traced_memory()[1]
        tally.peak = max(tally.peak, peak)
        return peak
    finally:
        tracemalloc.stop()


@FAST
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_read_or_refused_with_a_format_error(tally: Tally, data: bytes) -> None:
    tally.tests.add("test_arbitrary_bytes_are_read_or_refused_with_a_format_error")
    read_bounded(data, tally)


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_after_a_valid_magic_and_version_are_refused_cleanly(
        tally: Tally, data: bytes) -> None:
    tally.tests.add("test_arbitrary_bytes_after_a_valid_magic_and_version_are_refused_cleanly")
    read_bounded(PREFIX + data, tally)


@FAST
@given(n_tensors=st.integers(0, 2**64 - 1), n_kv=st.integers(0, 2**64 - 1),
       rest=st.binary(max_size=256))
def test_declared_counts_up_to_2_64_never_allocate_or_hang(
        tally: Tally, n_tensors: int, n_kv: int, rest: bytes) -> None:
    tally.tests.add("test_declared_counts_up_to_2_64_never_allocate_or_hang")
    data = PREFIX + struct.pack("<QQ", n_tensors, n_kv) + rest
    assert peak_memory(lambda: read_bounded(data, tally), tally) < MAX_PEAK_BYTES


def flipped_and_cut(flips: list[tuple[int, int]], length: int) -> bytes:
    """The real model with bytes XOR-ed at ``flips``, cut to ``length``."""
    data = bytearray(BASE)
    for pos, mask in flips:
        data[pos] ^= mask
    return bytes(data[:length])


mutations = st.lists(st.tuples(st.integers(0, HEADER_END - 1), st.integers(1, 255)),
                     min_size=1, max_size=8)


@FAST
@given(mutations, st.integers(0, len(BASE)))
def test_a_real_file_with_flipped_header_bytes_and_any_length_is_refused_cleanly(
        tally: Tally, flips: list[tuple[int, int]], length: int) -> None:
    tally.tests.add("test_a_real_file_with_flipped_header_bytes_and_any_length_is_refused_cleanly")
    info = read_bounded(flipped_and_cut(flips, length), tally)
    if info is not None:  # a surviving file still describes bytes that exist
        assert info.tensor_data_end <= length == info.file_size


@FAST
@given(st.integers(24, HEADER_END - 8), st.integers(2**32, 2**64 - 1))
def test_a_huge_length_or_count_written_anywhere_in_the_header_is_refused_cheaply(
        tally: Tally, pos: int, value: int) -> None:
    tally.tests.add("test_a_huge_length_or_count_written_anywhere_in_the_header_is_refused_cheaply")
    data = bytearray(BASE)
    struct.pack_into("<Q", data, pos, value)
    assert peak_memory(lambda: read_bounded(bytes(data), tally), tally) < MAX_PEAK_BYTES


@FAST
@given(st.integers(0, len(BASE) - 1))
def test_every_truncation_of_a_real_model_is_refused(tally: Tally, length: int) -> None:
    tally.tests.add("test_every_truncation_of_a_real_model_is_refused")
    assert read_bounded(BASE[:length], tally) is None


# ----------------------------------------------------------------- files from gguf.GGUFWriter

keys = st.from_regex(r"[a-z][a-z0-9_]{0,12}(\.[a-z0-9_]{1,12}){0,2}", fullmatch=True).filter(
    lambda k: k not in ("general.architecture", "general.alignment"))
texts = st.text(max_size=40)
u32 = st.integers(0, 2**32 - 1)
i64 = st.integers(-(2**63), 2**63 - 1)
VT = gguf.GGUFValueType
values: st.SearchStrategy[tuple[Any, Any, Any]] = st.one_of(
    st.tuples(u32, st.just(VT.UINT32), st.none()),
    st.tuples(i64, st.just(VT.INT64), st.none()),
    st.tuples(st.integers(0, 255), st.just(VT.UINT8), st.none()),
    st.tuples(st.floats(width=32, allow_nan=False), st.just(VT.FLOAT32), st.none()),
    st.tuples(st.booleans(), st.just(VT.BOOL), st.none()),
    st.tuples(texts, st.just(VT.STRING), st.none()),
    st.tuples(st.lists(u32, min_size=1, max_size=20), st.just(VT.ARRAY), st.just(VT.UINT32)),
    st.tuples(st.lists(texts, min_size=1, max_size=20), st.just(VT.ARRAY), st.just(VT.STRING)),
    st.tuples(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=20),
              st.just(VT.ARRAY), st.just(VT.FLOAT32)),
)
tensor_types = st.sampled_from([(np.float32, None), (np.float16, None),
                                (np.uint8, gguf.GGMLQuantizationType.Q8_0)])
tensors = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 4), tensor_types),
                   max_size=5)


def write_with_gguf(arch: str, meta: dict[str, tuple[Any, Any, Any]],
                    shapes: list[tuple[int, int, tuple[Any, Any]]], alignment: int) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.gguf"
        w = gguf.GGUFWriter(str(path), arch)
        if alignment != 32:
            w.add_custom_alignment(alignment)
        for key, (value, vtype, sub) in meta.items():
            w.add_key_value(key, value, vtype, sub)
        for i, (rows, cols32, (dtype, raw)) in enumerate(shapes):
            cols = cols32 * 32
            if raw is None:
                w.add_tensor(f"t{i}", np.zeros((rows, cols), dtype=dtype))
            else:  # Q8_0: 34 bytes per 32 elements
                w.add_tensor(f"t{i}", np.zeros((rows, cols // 32 * 34), dtype=np.uint8),
                             raw_dtype=raw)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


@FAST
@given(arch=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
       meta=st.dictionaries(keys, values, max_size=8), shapes=tensors,
       alignment=st.sampled_from([8, 32, 64, 256]))
def test_files_written_by_the_reference_writer_are_read_exactly(
        tally: Tally, arch: str, meta: dict[str, tuple[Any, Any, Any]],
        shapes: list[tuple[int, int, tuple[Any, Any]]], alignment: int) -> None:
    tally.tests.add("test_files_written_by_the_reference_writer_are_read_exactly")
    data = write_with_gguf(arch, meta, shapes, alignment)
    info = read_bounded(data, tally)
    assert info is not None
    assert info.architecture == arch
    assert info.n_tensors == len(shapes)
    assert info.alignment == alignment
    assert info.tensor_data_end <= info.file_size == len(data)
    for key, (value, vtype, _) in meta.items():
        if vtype == VT.ARRAY:
            assert info.arrays[key][1] == len(value)
        else:  # 32-bit floats drawn by hypothesis are exact in float32
            assert info.metadata[key] == value


@FAST
@given(meta=st.dictionaries(keys, values, max_size=6), shapes=tensors, data=st.data())
def test_reference_files_cut_or_corrupted_anywhere_are_refused_cleanly(
        tally: Tally, meta: dict[str, tuple[Any, Any, Any]],
        shapes: list[tuple[int, int, tuple[Any, Any]]], data: st.DataObject) -> None:
    tally.tests.add("test_reference_files_cut_or_corrupted_anywhere_are_refused_cleanly")
    blob = bytearray(write_with_gguf("llama", meta, shapes, 32))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(blob) - 1), st.integers(1, 255)),
                               max_size=4))
    for pos, mask in flips:
        blob[pos] ^= mask
    cut = data.draw(st.integers(0, len(blob)))
    read_bounded(bytes(blob[:cut]), tally)


@pytest.mark.slow
@SLOW
@given(st.binary(max_size=1 << 16))
def test_slow_arbitrary_large_inputs_are_read_or_refused(tally: Tally, data: bytes) -> None:
    tally.tests.add("test_slow_arbitrary_large_inputs_are_read_or_refused")
    read_bounded(PREFIX + data, tally)


@pytest.mark.slow
@SLOW
@given(mutations, st.integers(0, len(BASE)))
def test_slow_flipped_and_cut_real_files_are_refused_cleanly(
        tally: Tally, flips: list[tuple[int, int]], length: int) -> None:
    tally.tests.add("test_slow_flipped_and_cut_real_files_are_refused_cleanly")
    read_bounded(flipped_and_cut(flips, length), tally)


def test_reading_a_multi_megabyte_model_reads_only_its_header() -> None:
    class CountingReader(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            out = super().read(n)
            CountingReader.read_bytes += len(out)
            return out

    padded = BASE + bytes(32 * 1024 * 1024)  # 32 MB of weights the reader must not touch
    info = read_gguf_header(CountingReader(padded))
    assert info.file_size == len(padded)
    assert CountingReader.read_bytes <= 2 * 1024 * 1024
