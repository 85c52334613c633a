"""Save results into the user's history in a loop until killed (for test_history_kill.py).

Usage: ``python history_writer.py SEED``. Opens the history store of the user's data dir
(LOCALLOOM_HOME), prints ``READY``, then saves forever: single results of random sizes and,
every few rounds, an all-or-nothing import of three. After each call returns, it prints the
ids that call committed, one per line, flushed at once; a line printed is a promise that the
row survives a crash.
"""

from __future__ import annotations

import json
import random
import sys

from localloom.config import Settings
from localloom.history import HistoryStore, SavedResult


def _record(rng: random.Random, n: int) -> SavedResult:
    words = [f"w{rng.randrange(10_000)}" for _ in range(rng.choice([20, 200, 5_000]))]
    return SavedResult(task="summarize", model="kill-test", original=" ".join(words),
                       result=f"summary {n} token{n}x", parameters={"n": n},
                       timings={"total": float(n)})


def main() -> int:
    """Write until killed."""
    rng = random.Random(int(sys.argv[1]))
    store = HistoryStore.for_settings(Settings())
    print("READY", flush=True)
    n = 0
    while True:
        n += 1
        if n % 5 == 0:
            batch = [_record(rng, n * 10 + k) for k in range(3)]
            store.import_json(json.dumps([r.to_dict() for r in batch]))
            ids = [r.id for r in batch]
        else:
            ids = [store.save(_record(rng, n)).id]
        print("\n".join(ids), flush=True)


if __name__ == "__main__":
    sys.exit(main())
