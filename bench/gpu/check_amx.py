"""On an Intel Xeon with AMX: a Q4_K model through the probe's ladder, CPU only (issue 10).

    python3 bench/gpu/check_amx.py $OUT/amx.json

Writes a small synthetic model, quantizes it to Q4_K_M with llama.cpp's quantizer, and runs
the trial with GPU offload off and the machine's thread count: on a CPU where llama.cpp's
AMX kernels crash on Q4_K, the verdict is ``no-amx``; then a generation runs through it and
llama.cpp's default (AMX where it runs), AMX off with repacking, and every extra buffer
type off are timed in three interleaved repetitions.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

from localloom import Engine, Settings
from localloom.engine.backend import cpu_extra_buffer_types
from localloom.engine.probe import probe_model
from localloom.testing import quantize_gguf, write_synthetic_gguf
from localloom.testing.gguf import ModelShape

SHAPE = ModelShape(n_vocab=8192, n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=2816,
                   n_ctx=1024)


ExtraBuffers = Literal["on", "no-amx", "off"]  # the Settings.extra_buffers values compared
MODES: tuple[ExtraBuffers, ...] = ("on", "no-amx", "off")


def _speed(home: Path, model: Path, mode: ExtraBuffers) -> dict[str, float]:
    settings = Settings(home=home, n_gpu_layers=0, n_parallel=1, n_ctx=1024, extra_buffers=mode)
    with Engine(settings) as engine:  # type: ignore[arg-type]
        engine.reload(str(model))
        prompt = "the " * 150
        t0 = time.perf_counter()
        r = engine.completions.create(prompt=prompt, temperature=0, max_tokens=1)
        assert r.usage is not None  # a whole (not streamed) completion always counts
        pre = r.usage.prompt_tokens / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        r = engine.completions.create(prompt="hello", temperature=0, max_tokens=64,
                                      logit_bias={2: -100.0})
        assert r.usage is not None
        dec = r.usage.completion_tokens / (time.perf_counter() - t0)
    return {"prefill_tok_s": round(pre, 1), "decode_tok_s": round(dec, 1)}


def main(out: Path) -> None:
    report: dict[str, object] = {"extra_buffer_types": list(cpu_extra_buffer_types()),
                                 "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        f16 = write_synthetic_gguf(root / "f16.gguf", SHAPE)
        q4k = root / "q4k.gguf"
        quantize_gguf(f16, q4k, "Q4_K_M")
        settings = Settings(home=root / "h", n_gpu_layers=0)
        probe = probe_model(q4k, settings=settings)
        report["verdict"] = probe.config.name
        report["fallback_from"] = list(probe.fallback_from)
        runs: dict[str, list[dict[str, float]]] = {}
        for rep in range(3):  # interleaved: the machine's speed drifts
            for mode in MODES:
                runs.setdefault(mode, []).append(_speed(root / f"{mode}{rep}", q4k, mode))
        report["runs"] = runs
    text = json.dumps(report, indent=1)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
