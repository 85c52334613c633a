"""One pull in a fresh process, for the kill, SIGTERM, disk-limit and concurrency tests.

Usage::

    python download_worker.py '<ModelEntry JSON>' [--go FILE] [--fsize BYTES]
                              [--sigterm-unwinds] [--retries N]

Settings come from the environment (LOCALLOOM_HOME, HF_ENDPOINT), as for a user. Prints
``READY`` once imported, waits for ``--go FILE`` to exist if given, then pulls and prints
``OK <path>`` or ``ERROR <ErrorClass>: <message>`` (exit 0 or 1). ``--fsize`` caps the size
of any file the process writes (a full disk, via RLIMIT_FSIZE); ``--sigterm-unwinds`` turns
SIGTERM into SystemExit, as a server does to shut down cleanly.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from localloom.catalog.entry import ModelEntry
from localloom.config import Settings
from localloom.errors import LocalLoomError
from localloom.store import ModelStore


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """Pull the entry given on the command line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("entry")
    parser.add_argument("--go")
    parser.add_argument("--fsize", type=int)
    parser.add_argument("--sigterm-unwinds", action="store_true")
    parser.add_argument("--retries", type=int, default=0)
    args = parser.parse_args()
    entry = ModelEntry.model_validate_json(args.entry)
    if args.fsize is not None:
        import resource

        # Writes past the limit fail with EFBIG (once SIGXFSZ is ignored): a full disk.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize, args.fsize))
    if args.sigterm_unwinds:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    store = ModelStore(Settings(), retries=args.retries, retry_wait=0.05, timeout=30)
    print("READY", flush=True)
    if args.go:
        go = Path(args.go)
        while not go.exists():
            time.sleep(0.002)
    try:
        path = store.pull(entry)
    except LocalLoomError as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    print(f"OK {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
