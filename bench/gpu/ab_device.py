"""A/B of the GPU step loop's greedy picks: made on the device vs on the host.

Run on the GPU machine after ``python -m bench --cuda`` (which leaves the models built)::

    python3 bench/gpu/ab_device.py MODEL OUT_JSON [REPS [DEVICE,PIPELINE]]

It measures the engine's aggregate decode rate with 1, 8 and 32 streams (the bench's
streams section, same prompts) in four set-ups taken in turns: greedy picks on the device
or on the host (``LOCALLOOM_DEVICE_SAMPLING``) times the step pipeline on or off
(``LOCALLOOM_STEP_PIPELINE``), and prints one line per level and set-up: mean and range.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from bench import engine_runs as er  # noqa: E402
from bench.machine import physical_cores  # noqa: E402
from bench.models import prepare_model  # noqa: E402
from bench.run import _write_models_toml  # noqa: E402

LEVELS = [1, 8, 32]


def main(argv: list[str]) -> int:
    """Measure, print the table, write the figures."""
    key, out = argv[0], Path(argv[1])
    reps = int(argv[2]) if len(argv) > 2 else 2
    work = REPO / "bench" / ".work"
    threads = physical_cores()
    model = prepare_model(key, work / "models", threads, print)
    _write_models_toml(work / "home", [model])
    opts = er.EngineOptions(home=work / "home", threads=threads, n_gpu_layers=None)
    # The first CUDA load on an asyncio worker thread crashed in llama_model_load (seen on
    # the H200, 2026-12-02, every set-up alike); the bench's streams follow a load on the
    # main thread, and so do these.
    with er._engine(opts, model, 1, 256):
        pass
    modes = [("1", "1"), ("0", "1"), ("1", "0"), ("0", "0")]  # (device, pipeline)
    if len(argv) > 3:  # one set-up only, e.g. "1,0"
        dev, pipe = argv[3].split(",")
        modes = [(dev, pipe)]
    rates: dict[tuple[str, str], list[list[float]]] = {m: [] for m in modes}
    for _ in range(reps):
        for dev, pipe in modes:
            os.environ["LOCALLOOM_DEVICE_SAMPLING"], os.environ["LOCALLOOM_STEP_PIPELINE"] = (
                dev, pipe)
            points = er.engine_streams(opts, model, levels=LEVELS, n_pp=128, n_tg=128)
            rates[(dev, pipe)].append([p.decode_ts for p in points])
    table = []
    for i, n in enumerate(LEVELS):
        row: dict[str, object] = {"streams": n}
        for (dev, pipe), runs in rates.items():
            xs = [r[i] for r in runs]
            name = f"device={dev} pipeline={pipe}"
            row[name] = xs
            print(f"{key} x{n} {name}: {statistics.fmean(xs):.0f} tok/s "
                  f"({min(xs):.0f}-{max(xs):.0f})", flush=True)
        table.append(row)
    out.write_text(json.dumps({"model": key, "reps": reps, "levels": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
