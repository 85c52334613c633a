"""A/B of the GPU step loop's greedy picks: made on the device vs on the host.

Run on the GPU machine after ``python -m bench --cuda`` (which leaves the models built)::

    python3 bench/gpu/ab_device.py MODEL OUT_JSON [REPS]

It measures the engine's aggregate decode rate with 1, 8 and 32 streams (the bench's
streams section, same prompts) with ``LOCALLOOM_DEVICE_SAMPLING=1`` and ``=0`` in turns,
and prints one line per level: both means, their spread and the ratio.
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

LEVELS = [1, 8, 32]


def main(argv: list[str]) -> int:
    """Measure, print the table, write the figures."""
    key, out = argv[0], Path(argv[1])
    reps = int(argv[2]) if len(argv) > 2 else 2
    work = REPO / "bench" / ".work"
    threads = physical_cores()
    model = prepare_model(key, work / "models", threads, print)
    opts = er.EngineOptions(home=work / "home", threads=threads, n_gpu_layers=None)
    rates: dict[str, list[list[float]]] = {"1": [], "0": []}
    for _ in range(reps):
        for mode in ("1", "0"):
            os.environ["LOCALLOOM_DEVICE_SAMPLING"] = mode
            points = er.engine_streams(opts, model, levels=LEVELS, n_pp=128, n_tg=128)
            rates[mode].append([p.decode_ts for p in points])
    os.environ.pop("LOCALLOOM_DEVICE_SAMPLING")
    table = []
    for i, n in enumerate(LEVELS):
        on = [r[i] for r in rates["1"]]
        off = [r[i] for r in rates["0"]]
        row = {"streams": n, "device": on, "host": off,
               "ratio": statistics.fmean(on) / statistics.fmean(off)}
        table.append(row)
        print(f"{key} x{n}: device {statistics.fmean(on):.0f} ({min(on):.0f}-{max(on):.0f}) "
              f"host {statistics.fmean(off):.0f} ({min(off):.0f}-{max(off):.0f}) tok/s: "
              f"{row['ratio']:.3f}x")
    out.write_text(json.dumps({"model": key, "reps": reps, "levels": table}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
