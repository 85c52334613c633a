"""Run one pull in a fresh process (for the concurrency, SIGKILL and disk-limit tests).

Usage: ``python pull_worker.py '<ModelEntry JSON>' [file-size-limit-bytes]``. Prints
``OK <path>`` or ``ERROR <ErrorClass>: <message>`` and exits 0 or 1.
"""

from __future__ import annotations

import signal
import sys

from localloom.catalog.entry import ModelEntry
from localloom.config import Settings
from localloom.errors import LocalLoomError
from localloom.store import ModelStore


def main() -> int:
    """Pull the entry given on the command line."""
    entry = ModelEntry.model_validate_json(sys.argv[1])
    if len(sys.argv) > 2:
        import resource

        # A per-process file-size limit stands in for a full disk: writes past it fail
        # with EFBIG once SIGXFSZ is ignored.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = int(sys.argv[2])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        path = ModelStore(Settings(), retries=0).pull(entry)
    except LocalLoomError as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"OK {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
