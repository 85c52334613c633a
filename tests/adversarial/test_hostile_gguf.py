"""Hostile model files: every malformed GGUF ends in ModelLoadError or a clean load, never a crash.

Each variant from :mod:`localloom.testing.hostile` goes through ``probe_model``: LocalLoom's
header check in this process, then a trial load by llama.cpp in a throwaway child process.
The full run (``-m slow``) writes its figures into docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from reliability_figures import Row, Section

from localloom.config import Settings
from localloom.engine.probe import ProbeResult, probe_model, trial_load
from localloom.errors import ModelLoadError
from localloom.gguf_header import GGUFFormatError
from localloom.testing.hostile import HostileVariant, hostile_variants

THREATS = (
    "Malformed GGUF files",
    "A file that crashes llama.cpp",
    "A trial load that hangs",
    "Probing every load is slow",
    "A hostile file takes down a running Engine",
    "The header reader itself misbehaves",
)
SECTION = Section(
    "hostile_gguf",
    "## Hostile model files",
    "Model files come from the internet and llama.cpp parses them in C++. LocalLoom reads the "
    "header itself (a bounded pure-Python reader, `localloom/gguf_header.py`), then lets "
    "llama.cpp load the file once in a throwaway child process (`localloom/engine/probe.py`: "
    "weights, a 64-token context and one decoded token). The variants come from "
    "`localloom/testing/hostile.py` (seed 7): truncations of the header and of the tensor "
    "data, counts and string lengths near 2^64, tensor offsets past the end, absurd and "
    "overflowing dimensions, bad alignment, unknown architectures and tensor types, nested "
    "arrays, wrong value types, duplicates, absurd hyperparameters and random byte flips.",
    (
        Row(THREATS[0], "Header check first, in-process: every count and length is capped and "
            "checked against the bytes left before anything is allocated; every tensor must "
            "lie inside the file. Refusal: `ModelLoadError` with the reason.",
            "`test_hostile_gguf.py::"
            "test_every_hostile_variant_is_refused_or_loads_without_crashing_localloom` (slow)"),
        Row(THREATS[1], "Trial load in a child process; a signal or abnormal exit becomes "
            "`ModelLoadError` (\"llama.cpp crashed (SIGABRT) while loading ...\") and the "
            "verdict is cached, so the file never reaches llama.cpp in the LocalLoom process.",
            "the same; `test_a_sample_of_hostile_files_ends_in_model_load_error_or_a_clean_load`"),
        Row(THREATS[2], "The child is killed after 60 s + 30 s per GiB; `ModelLoadError`; "
            "timeouts are not cached.",
            "`test_a_trial_load_that_overruns_its_time_is_stopped_with_model_load_error`"),
        Row(THREATS[3], "Verdict cached per (path, size, mtime, n_ctx, llama-cpp-python "
            "version) in `cache_dir/probe-verdicts.json`.",
            "`test_a_good_model_is_probed_once_and_then_answered_from_the_cache`"),
        Row(THREATS[4], "The engine's load path calls `probe_model` before "
            "`llama_model_load_from_file`.",
            "`test_a_hostile_file_does_not_take_down_the_engine`"),
        Row(THREATS[5], "Hypothesis properties over `read_gguf_header`: arbitrary bytes, "
            "mutated and truncated real files, files from `gguf.GGUFWriter`.",
            "`tests/adversarial/test_gguf_header_properties.py`"),
    ),
)

FAST_NAMES = (
    "bad_magic-ggug", "bad_version-v4", "truncated_header-at-0",
    "huge_counts-n_tensors-18446744073709551615", "huge_counts-n_kv-18446744073709551615",
    "huge_string_length-first-key-2^64-1", "huge_string_length-tensor-name-wraps",
    "tensor_offset-output.weight-2^64-32", "absurd_dims-token_embd.weight-product-over-int64",
    "alignment-u32-0", "alignment-u32-1", "alignment-u32-2147483648", "nested_arrays-depth-200",
    "tensor_types-type-1000", "duplicates-kv-key",
    # These pass the header check and reach llama.cpp in the child:
    "hyperparameters-blocks-0",  # GGML_ASSERT while loading: SIGABRT
    "hyperparameters-eps-negative",  # GGML_ASSERT while decoding: SIGABRT
    "architecture-unknown",  # llama.cpp refuses
    "vocab-bos-at-n",  # llama.cpp loads it
)


@pytest.fixture(scope="module")
def variants() -> list[HostileVariant]:
    return hostile_variants(seed=7)


def _probe(variant: HostileVariant, folder: Path, settings: Settings) -> tuple[str, str]:
    """(outcome, detail) of one variant; outcome names the layer that stopped it."""
    path = folder / f"{variant.name}.gguf"
    path.write_bytes(variant.data())
    try:
        probe_model(path, settings=settings, timeout=120)
        return "loaded", ""
    except ModelLoadError as exc:
        cause = exc.__cause__
        assert str(path) in str(exc), "the error names the file"
        if isinstance(cause, GGUFFormatError):
            return "header", str(exc)
        if isinstance(cause, subprocess.CalledProcessError):
            return ("crash" if cause.returncode < 0 else "refused"), str(exc)
        if isinstance(cause, subprocess.TimeoutExpired):
            return "timeout", str(exc)
        return "other", f"{type(cause).__name__}: {exc}"
    finally:
        path.unlink()


def _run_all(chosen: list[HostileVariant], folder: Path) -> dict[str, tuple[str, str]]:
    settings = Settings()
    # Two threads: the work happens in child processes and the machine has two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = pool.map(lambda v: _probe(v, folder, settings), chosen)
        return {v.name: o for v, o in zip(chosen, outcomes, strict=True)}


def test_the_generator_makes_over_200_named_reproducible_variants(
        variants: list[HostileVariant]) -> None:
    names = [v.name for v in variants]
    assert len(variants) >= 200
    assert len(set(names)) == len(names)
    assert {v.category for v in variants} >= {
        "truncated_header", "truncated_data", "huge_counts", "huge_string_length",
        "tensor_offset", "absurd_dims", "alignment", "architecture", "nested_arrays",
        "value_types", "tensor_types", "duplicates", "bad_magic", "bad_version", "byte_flips"}
    again = hostile_variants(seed=7)
    assert [v.name for v in again] == names
    assert all(a.data() == b.data() for a, b in zip(variants[-60:], again[-60:], strict=True))
    other = {v.name: v for v in hostile_variants(seed=8)}
    flips = [v for v in variants if v.category == "byte_flips"]
    assert any(v.data() != other[v.name].data() for v in flips)


def test_a_sample_of_hostile_files_ends_in_model_load_error_or_a_clean_load(
        variants: list[HostileVariant], tmp_path: Path) -> None:
    by_name = {v.name: v for v in variants}
    chosen = [by_name[n] for n in FAST_NAMES]
    chosen += [next(v for v in variants if v.category == "truncated_data")]
    results = _run_all(chosen, tmp_path)
    outcome = {name: o for name, (o, _) in results.items()}
    assert outcome["hyperparameters-blocks-0"] == "crash"
    assert outcome["hyperparameters-eps-negative"] == "crash"
    assert outcome["architecture-unknown"] == "refused"
    assert outcome["vocab-bos-at-n"] == "loaded"
    assert {outcome[n] for n in FAST_NAMES[:15]} == {"header"}
    crash_message = results["hyperparameters-blocks-0"][1]
    assert "crashed (SIGABRT)" in crash_message and "pull it again" in crash_message


@pytest.mark.slow
def test_every_hostile_variant_is_refused_or_loads_without_crashing_localloom(
        variants: list[HostileVariant], tmp_path: Path) -> None:
    start = time.monotonic()
    results = _run_all(variants, tmp_path)
    elapsed = time.monotonic() - start
    counts = Counter(o for o, _ in results.values())
    assert not counts["other"], [r for r in results.items() if r[1][0] == "other"]
    assert sum(counts.values()) == len(variants) >= 200
    crashed = sorted(n for n, (o, _) in results.items() if o == "crash")
    SECTION.record({
        THREATS[0]: (
            f"{len(variants)} variants, 0 LocalLoom process crashes: {counts['header']} "
            f"refused by the header check, {counts['refused']} refused by llama.cpp in the "
            f"trial, {counts['crash']} crashed the trial process (contained), "
            f"{counts['timeout']} timed out, {counts['loaded']} loaded cleanly "
            f"(harmless mutations); {elapsed:.0f} s on 2 threads."),
        THREATS[1]: (
            f"{counts['crash']} native crashes contained, 0 reached LocalLoom: "
            + ", ".join(crashed) + "."),
    })


def test_a_good_model_is_probed_once_and_then_answered_from_the_cache(
        tiny_gguf: Path, tmp_path: Path) -> None:
    model = tmp_path / "good.gguf"
    model.write_bytes(tiny_gguf.read_bytes())
    first = probe_model(model)
    second = probe_model(model)
    assert isinstance(first, ProbeResult) and not first.cached
    assert second.cached and second.architecture == "llama"
    assert second.seconds < first.seconds
    os.utime(model, ns=(time.time_ns(), time.time_ns() + 10**9))  # the file changed
    third = probe_model(model)
    assert not third.cached
    SECTION.record({THREATS[3]: f"first probe {first.seconds:.1f} s, cached answer "
                                f"{second.seconds * 1000:.1f} ms; a changed mtime probes again."})


def test_a_crashing_file_is_reported_again_from_the_cache_without_a_new_crash(
        variants: list[HostileVariant], tmp_path: Path) -> None:
    path = tmp_path / "crash.gguf"
    path.write_bytes(next(v for v in variants if v.name == "hyperparameters-blocks-0").data())
    with pytest.raises(ModelLoadError):
        probe_model(path)
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="crashed") as info:
        probe_model(path)
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value.__cause__, subprocess.CalledProcessError)


def test_a_trial_load_that_overruns_its_time_is_stopped_with_model_load_error(
        tiny_gguf: Path) -> None:
    start = time.monotonic()
    with pytest.raises(ModelLoadError, match="took over") as info:
        probe_model(tiny_gguf, timeout=0.05)
    stopped = time.monotonic() - start
    assert isinstance(info.value.__cause__, subprocess.TimeoutExpired)
    assert stopped < 10
    assert probe_model(tiny_gguf, timeout=120).cached is False  # timeouts are not cached
    SECTION.record({THREATS[2]: f"a 0.05 s limit stopped the trial after {stopped:.2f} s; "
                                "the next probe ran afresh."})


def test_a_missing_or_non_gguf_file_is_refused_before_any_trial(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Cannot read"):
        probe_model(tmp_path / "nothing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("just text")
    with pytest.raises(ModelLoadError, match="not a usable GGUF") as info:
        probe_model(text)
    assert isinstance(info.value.__cause__, GGUFFormatError)


def test_the_trial_load_runs_from_the_command_line(tiny_gguf: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "localloom.engine.probe", str(tiny_gguf)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    verdict = json.loads(done.stdout.strip().splitlines()[-1].split(" ", 1)[1])
    assert verdict["ok"] is True and verdict["n_vocab"] == 323
    assert trial_load(tiny_gguf, n_ctx=0).status == "ok"


ENGINE_SCRIPT = """
import sys
from localloom.config import Settings
from localloom.engine import Engine
from localloom.errors import ModelLoadError

bad, good = sys.argv[1], sys.argv[2]
engine = Engine(Settings())
try:
    engine.load(bad)
except ModelLoadError as exc:
    print("REFUSED", str(exc).splitlines()[0][:200], flush=True)
else:
    sys.exit("the hostile file loaded")
engine.load(good)
out = engine.completions.create(prompt="Once upon a time", max_tokens=4)
print("GENERATED", repr(out.choices[0].text), flush=True)
engine.close()
"""


def _engine_calls_the_probe() -> bool:
    engine_dir = Path(__file__).resolve().parents[2] / "src" / "localloom" / "engine"
    return any("probe_model" in p.read_text(encoding="utf-8")
               for p in engine_dir.glob("*.py") if p.name != "probe.py")


@pytest.mark.xfail(not _engine_calls_the_probe(), strict=True,
                   reason="pending: the engine's load path does not call probe_model yet")
def test_a_hostile_file_does_not_take_down_the_engine(
        variants: list[HostileVariant], tiny_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "crashes-llama-cpp.gguf"
    bad.write_bytes(next(v for v in variants if v.name == "hyperparameters-blocks-0").data())
    # The engine runs in a child so that, without the probe, the crash fails this test
    # instead of killing pytest.
    done = subprocess.run([sys.executable, "-c", ENGINE_SCRIPT, str(bad), str(tiny_gguf)],
                          capture_output=True, text=True, timeout=300, check=False)
    survived = done.returncode == 0 and "GENERATED" in done.stdout
    SECTION.record({THREATS[4]: (
        "the engine refused a file that aborts llama.cpp, then loaded the good model and "
        "generated" if survived else
        f"pending the probe hook: the engine process died (exit {done.returncode})")})
    assert survived, done.stdout[-1000:] + done.stderr[-2000:]
    assert "REFUSED" in done.stdout
