"""On a CUDA machine: the probe's trial and its fallbacks with GPU offload (issue 10).

Run there after run_device.sh has built the CUDA llama-cpp-python (see docs/GPU.md)::

    python3 bench/gpu/check_backends.py $OUT/backends.json

It writes a tiny model, then checks that the trial runs on the GPU with llama.cpp's defaults,
that a crash of the GPU path (LOCALLOOM_SIMULATE_CRASH=gpu) falls back to ``cpu-only``, that
a generation runs through each verdict, and what doctor's trial says. Prints JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from localloom import Engine, Settings
from localloom.doctor.checks import model_trial
from localloom.engine.backend import backend_devices
from localloom.engine.probe import probe_model
from localloom.testing import write_tiny_gguf


def _generate(home: Path, model: Path, **settings: object) -> dict[str, object]:
    with Engine(Settings(home=home, n_parallel=2, n_ctx=256, **settings)) as engine:  # type: ignore[arg-type]
        engine.reload(str(model))
        t0 = time.perf_counter()
        r = engine.completions.create(prompt="hello", temperature=0, max_tokens=16)
        info = engine.model_info()
        return {"text_chars": len(r.choices[0].text), "seconds": time.perf_counter() - t0,
                "backend": info.backend, "fallback": info.fallback}


def main(out: Path) -> None:
    report: dict[str, object] = {"devices": backend_devices()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = write_tiny_gguf(root / "tiny.gguf")
        for name, simulate in (("plain", None), ("gpu-crash", "gpu"),
                               ("extra-crash", "extra-buffers")):
            home = root / name
            settings = Settings(home=home, simulate_crash=simulate)
            t0 = time.perf_counter()
            probe = probe_model(model, settings=settings)
            report[name] = {"config": probe.config.to_json(), "fallback_from": probe.fallback_from,
                            "probe_s": round(time.perf_counter() - t0, 2),
                            "generation": _generate(home, model, simulate_crash=simulate)}
        trial = model_trial(Settings(home=root / "doctor", simulate_crash="gpu"), str(model))
        report["doctor"] = {"status": trial.status.value, "detail": trial.detail}
    text = json.dumps(report, indent=1)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
