"""Broken downloads: cut connections, killed pullers, lying Hubs, full disks, races, escapes.

Everything is real: a fake Hub on 127.0.0.1 (tests/fakehub.py), pulls in this process or in
fresh processes (download_worker.py), real signals, a real tmpfs where root may mount one.
The promise checked after every attack: the cache holds a verified file or none, nothing
half-written is ever promoted, and nothing outside the cache directory changes.

The loops are seeded; the long ones are marked slow and write their figures into
docs/RELIABILITY.md (section "Broken downloads").
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from download_faults import (
    CacheState,
    CuttingProxy,
    assert_verified_and_clean,
    fill_disk,
    hub_entry,
    inspect_cache,
    pull_in_thread,
    settle,
    snapshot,
    start_worker,
    tmpfs,
    wait_until,
)
from pydantic import ValidationError
from reliability_figures import Row, Section

from fakehub import FakeHub
from localloom.catalog.entry import ModelEntry
from localloom.config import Settings
from localloom.errors import (
    DiskSpaceError,
    DownloadError,
    IntegrityError,
    LocalLoomError,
    UnsafePathError,
)
from localloom.store import ModelStore

SIZE = (1 << 20) + 321  # 1 MiB and a bit: no chunk size divides it
THROTTLE = 1 << 20  # bytes per second while a process is to be killed mid-download
SEED = 20261125

DROPPED = "Connection dropped at a random point"
KILLED = "Puller killed with SIGKILL at a random point"
TERMINATED = "Puller stopped with SIGTERM mid-download"
LYING = "Hub sends or announces the wrong bytes"
SIZES = "Hub announces the wrong size"
DISK = "Disk fills up"
CONCURRENT = "8 processes pull the same model at once"
NAMES = "Names that try to leave the cache"
LINKS = "Links planted in the cache"

SECTION = Section(
    key="downloads",
    heading="## Broken downloads",
    intro="""
The store's promise: after any failure the cache holds a verified file or none; a file
appears at its final path only by `os.replace` after its size and sha256 matched; nothing is
written outside the cache directory. `tests/adversarial/test_broken_downloads.py` attacks it
with a real fake Hub on 127.0.0.1, real processes and signals, and a real tmpfs (run as root).
Corrupt = a final file with wrong bytes; half-promoted = anything at the final path or vouched
for by a record that is not the exact file; partials are checked to be a prefix of the file.
Loops are seeded; `pytest -m slow tests/adversarial` reruns them and rewrites this table.
""",
    rows=(
        Row(DROPPED, "bytes go to `partial/<id>.part`, hashed as written; every response's "
            "status, Content-Length and Content-Range are checked; resume with Range; sha256 "
            "and size checked before `os.replace`", "`test_dropped_connections_leave_a_verified"
            "_file_or_none_and_a_retry_finishes`"),
        Row(KILLED, "same; the per-model lock is a kernel `flock`, released when the process "
            "dies, and stale temp files are swept under the lock",
            "`test_sigkill_mid_download_promotes_nothing_and_the_next_pull_resumes`"),
        Row(TERMINATED, "no cleanup is needed: a dying or unwinding puller leaves a resumable "
            "`.part`, never a final file", "`test_sigterm_during_a_pull_promotes_nothing_and_"
            "the_next_pull_completes`"),
        Row(LYING, "sha256 from the catalog pin or the Hub's LFS ETag, compared before "
            "promotion; a mismatch deletes the `.part` (IntegrityError)",
            "`test_wrong_bytes_or_hashes_raise_integrity_error_and_install_nothing`"),
        Row(SIZES, "announced size compared with the catalog pin, Content-Length and "
            "Content-Range; more bytes than announced abort the transfer",
            "`test_wrong_bytes_or_hashes_raise_integrity_error_and_install_nothing`"),
        Row(DISK, "free space checked before the download; ENOSPC/EDQUOT/EFBIG on any write in "
            "the cache become DiskSpaceError; the `.part` is kept for a resume",
            "`test_a_full_disk_gives_disk_space_error_and_the_pull_resumes_later`"),
        Row(CONCURRENT, "per-model `flock`; a waiter re-checks the verified record before "
            "downloading", "`test_eight_processes_pulling_one_model_download_it_once`"),
        Row(NAMES, "ids, repos, revisions and file names checked (also after URL-decoding) "
            "before any path or request is made", "`test_hostile_names_are_refused_and_touch_"
            "nothing`"),
        Row(LINKS, "every path resolved and required to stay under the cache; symlinked or "
            "hard-linked `.part` files are never appended to; listing and verifying skip "
            "linked folders", "`test_links_planted_in_the_cache_never_let_a_write_out`"),
    ),
)


# -- fixtures and small helpers ---------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A running fake Hub; HF_ENDPOINT points at it."""
    with FakeHub() as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        yield fake


def _publish(hub: FakeHub, name: str, data: bytes, **source: object) -> ModelEntry:
    entry = hub_entry(name, repo=f"adv-org/{name}-GGUF", file=f"{name}.Q4_0.gguf",
                      download_size=len(data), **source)
    hub.add_file(entry.source.repo or "", entry.source.file or "", data)
    return entry


def _use_home(monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
    """Point LOCALLOOM_HOME (here and in child processes) at ``home``."""
    monkeypatch.setenv("LOCALLOOM_HOME", str(home))
    return Settings()


def _body_gets(hub: FakeHub, entry: ModelEntry) -> list[tuple[str | None, int]]:
    """(Range, bytes sent) of each GET of the entry's file that returned bytes."""
    return [(r.range, r.body_bytes) for r in hub.body_requests(entry.source.file)]


# -- connection dropped -----------------------------------------------------------------------


def _drop_plan(rng: random.Random, hub: FakeHub, proxy_budgets: list[int | None]) -> str:
    """Arm one random fault: the Hub cuts a body, or the proxy cuts anywhere (headers too)."""
    if rng.random() < 0.5:
        cut, times = rng.randint(0, SIZE - 1), rng.randint(1, 3)
        hub.cut_after(cut, times=times)
        hub.ignore_range = rng.random() < 0.2
        return f"body cut at {cut} x{times}" + (" (Range ignored)" if hub.ignore_range else "")
    proxy_budgets.extend(rng.choice([rng.randint(0, 400), rng.randint(0, SIZE + 600)])
                         for _ in range(rng.randint(1, 3)))
    return f"proxy cuts after {proxy_budgets} bytes"


def _one_dropped_run(rng: random.Random, hub: FakeHub, home: Path, name: str,
                     monkeypatch: pytest.MonkeyPatch, tally: Counter[str]) -> None:
    data = rng.randbytes(SIZE)
    entry = _publish(hub, name, data)
    settings = _use_home(monkeypatch, home)
    budgets: list[int | None] = []
    plan = _drop_plan(rng, hub, budgets)
    with CuttingProxy(hub.url, budgets) as proxy:
        if budgets:
            monkeypatch.setenv("HF_ENDPOINT", proxy.url)
        store = ModelStore(settings, retries=rng.choice([0, 1, 3]), retry_wait=0.01,
                           timeout=10)
        try:
            store.pull(entry)
            tally["finished within the pull"] += 1
        except DownloadError:
            tally["stopped with DownloadError"] += 1
        tally["connections cut"] += proxy.cuts + sum(
            1 for r in hub.body_requests(entry.source.file) if r.body_bytes < _expected(r))
    state = inspect_cache(settings, entry, data)
    _tally_state(tally, state)
    assert state.verified_or_none and not state.stray, (plan, state)
    hub.cut_after(None)
    hub.ignore_range = False
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    settle(hub)
    ModelStore(settings, retries=3, retry_wait=0.01, timeout=10).pull(entry)
    gets = _body_gets(hub, entry)
    tally["resumed with Range"] += bool(gets and gets[0][0])
    assert_verified_and_clean(settings, entry, data)
    tally["verified after one more pull"] += 1


def _expected(record: object) -> int:
    rng_header = getattr(record, "range", None)
    start = int(rng_header.split("=")[1].split("-")[0]) if rng_header else 0
    return SIZE - start if getattr(record, "status", 0) == 206 else SIZE


def _tally_state(tally: Counter[str], state: CacheState) -> None:
    tally["corrupt files"] += state.final_exists and not state.final_intact
    tally["half-promoted files"] += state.half_promoted
    tally["partials with wrong bytes"] += state.corrupt_partial
    tally["runs"] += 1


_OneRun = Callable[[random.Random, FakeHub, Path, str, pytest.MonkeyPatch, "Counter[str]"],
                   None]


def _loop(one_run: _OneRun, seed: int, runs: int, prefix: str, hub: FakeHub, tmp_path: Path,
          monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Run ``one_run`` ``runs`` times (seeded), each in a new home; check the totals."""
    rng = random.Random(seed)
    tally: Counter[str] = Counter()
    for run in range(runs):
        one_run(rng, hub, tmp_path / f"run{run}", f"{prefix}{run}", monkeypatch, tally)
    assert tally["verified after one more pull"] == runs
    assert tally["corrupt files"] == tally["half-promoted files"] == 0
    assert tally["partials with wrong bytes"] == 0
    return tally


@pytest.mark.parametrize("runs", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_dropped_connections_leave_a_verified_file_or_none_and_a_retry_finishes(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int) -> None:
    tally = _loop(_one_dropped_run, SEED + runs, runs, "drop", hub, tmp_path, monkeypatch)

    if runs >= 20:
        SECTION.record({DROPPED: (
            f"{runs} runs (seed {SEED + runs}): {tally['connections cut']} connections cut, "
            f"{tally['stopped with DownloadError']} pulls stopped with DownloadError, "
            f"{tally['finished within the pull']} finished by retrying; "
            f"{tally['corrupt files']} corrupt files, {tally['half-promoted files']} "
            f"half-promoted, {tally['partials with wrong bytes']} partials with wrong bytes; "
            f"{tally['verified after one more pull']}/{runs} verified after one more pull "
            f"({tally['resumed with Range']} resumed with Range)")})


# -- killed pullers ---------------------------------------------------------------------------


def _kill_point(rng: random.Random) -> tuple[str, float]:
    mode = rng.choice(["bytes", "bytes", "bytes", "end", "time"])
    if mode == "bytes":
        return mode, rng.uniform(0, SIZE)
    if mode == "end":
        return mode, SIZE
    return mode, rng.uniform(0.0, 1.4)


def _kill_when(proc: subprocess.Popen[str], point: tuple[str, float], part: Path,
               final: Path, sig: int) -> None:
    assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    mode, value = point
    if mode == "time":
        time.sleep(value)
    else:
        def reached() -> bool:
            try:
                return (proc.poll() is not None or final.exists()
                        or part.stat().st_size >= value)
            except OSError:
                return False
        wait_until(reached, what=f"{part} to reach {value:.0f} bytes")
    proc.send_signal(sig)
    proc.communicate(timeout=60)


def _one_killed_run(rng: random.Random, hub: FakeHub, home: Path, name: str,
                    monkeypatch: pytest.MonkeyPatch, tally: Counter[str]) -> None:
    data = rng.randbytes(SIZE)
    entry = _publish(hub, name, data)
    settings = _use_home(monkeypatch, home)
    final = ModelStore(settings).path_for(entry)
    part = settings.cache_dir / "partial" / f"{entry.id}.part"
    hub.throttle(THROTTLE)
    point = _kill_point(rng)
    _kill_when(start_worker(entry), point, part, final, signal.SIGKILL)
    state = inspect_cache(settings, entry, data)
    _tally_state(tally, state)
    tally["killed after promoting (intact)"] += state.final_intact
    assert state.verified_or_none and not state.stray, (point, state)
    tally["lock files left behind"] += (settings.cache_dir / "locks" / f"{name}.lock").exists()
    hub.throttle(None)
    settle(hub)
    pull_in_thread(ModelStore(settings, retries=3, retry_wait=0.01), entry)
    gets = _body_gets(hub, entry)
    if state.part_size == SIZE and not state.final_exists:
        assert gets == [], (point, gets)  # every byte was kept: verify and promote only
        tally["resumed from the kept bytes"] += 1
    elif state.part_size and not state.final_exists:
        assert gets and gets[0][0] == f"bytes={state.part_size}-", (point, gets)
        tally["resumed from the kept bytes"] += 1
    assert_verified_and_clean(settings, entry, data)
    tally["verified after one more pull"] += 1


@pytest.mark.parametrize("runs", [3, pytest.param(20, marks=pytest.mark.slow)])
def test_sigkill_mid_download_promotes_nothing_and_the_next_pull_resumes(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: int) -> None:
    tally = _loop(_one_killed_run, SEED * 3 + runs, runs, "kill", hub, tmp_path, monkeypatch)

    if runs >= 20:
        SECTION.record({KILLED: (
            f"{runs} runs (seed {SEED * 3 + runs}): {tally['corrupt files']} corrupt files, "
            f"{tally['half-promoted files']} half-promoted, "
            f"{tally['partials with wrong bytes']} partials with wrong bytes; "
            f"kills that landed after the verified rename: "
            f"{tally['killed after promoting (intact)']} (the file was whole); "
            f"{tally['lock files left behind']} lock files left behind, none blocked; "
            f"{tally['resumed from the kept bytes']} next pulls resumed from the kept bytes; "
            f"{tally['verified after one more pull']}/{runs} verified after one more pull")})


MODELS_TOML = """
[[model]]
id = "{id}"
display_name = "Victim"
download_size = {size}
ram_min_gb = 0.1
ram_max_gb = 0.2
context_length = 2048
[model.source]
kind = "hub"
repo = "{repo}"
file = "{file}"
"""


def _add_to_user_models(entry: ModelEntry) -> None:
    toml = Settings().config_dir / "models.toml"
    toml.parent.mkdir(parents=True, exist_ok=True)
    toml.write_text(MODELS_TOML.format(id=entry.id, size=SIZE, repo=entry.source.repo,
                                       file=entry.source.file))


def _cli_pull(entry: ModelEntry) -> subprocess.Popen[str]:
    """`localloom pull ID` as a user runs it; prints READY first so timing matches the worker."""
    code = ("print('READY', flush=True); import sys; from localloom.cli import main; "
            f"sys.argv = ['localloom', 'pull', {entry.id!r}]; main()")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def _one_terminated_pull(hub: FakeHub, home: Path, how: str,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(f"{SEED}{how}").randbytes(SIZE)
    entry = _publish(hub, f"term-{how}", data)
    settings = _use_home(monkeypatch, home)
    _add_to_user_models(entry)
    part = settings.cache_dir / "partial" / f"{entry.id}.part"
    hub.throttle(THROTTLE)
    proc = _cli_pull(entry) if how == "cli" else start_worker(entry, "--sigterm-unwinds")

    _kill_when(proc, ("bytes", SIZE / 3), part, ModelStore(settings).path_for(entry),
               signal.SIGTERM)

    assert proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM), proc.returncode
    state = inspect_cache(settings, entry, data)
    assert not state.final_exists and state.verified_or_none and not state.stray, state
    assert 0 < state.part_size < SIZE
    hub.throttle(None)
    settle(hub)
    done = subprocess.run([sys.executable, "-m", "localloom", "pull", entry.id],
                          capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    assert _body_gets(hub, entry)[0][0] == f"bytes={state.part_size}-"
    assert_verified_and_clean(settings, entry, data)


def test_sigterm_during_a_pull_promotes_nothing_and_the_next_pull_completes(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `localloom pull` dies by the signal; a server-like process unwinds (SystemExit).
    for how in ("cli", "unwinding"):
        _one_terminated_pull(hub, tmp_path / how, how, monkeypatch)

    SECTION.record({TERMINATED: (
        "SIGTERM at 1/3 of the file, to `localloom pull` (dies by the signal) and to a "
        "puller that unwinds on SIGTERM (SystemExit): 0 files promoted, 0 partials with wrong "
        "bytes; both times the next `localloom pull` resumed from the kept bytes and verified")})


# -- lying Hubs -------------------------------------------------------------------------------


def _other_sha(data: bytes) -> str:
    return hashlib.sha256(data + b"!").hexdigest()


def _integrity_cases(data: bytes) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """Case -> (add_file overrides, entry source overrides)."""
    return {
        "Hub announces another sha256": ({"sha256": _other_sha(data)}, {}),
        "Hub gives no sha256 (not an LFS file)": ({"sha256": "not-a-sha256"}, {}),
        "catalog pins another sha256": ({}, {"sha256": _other_sha(data)}),
        "a byte flipped in transit": ({}, {}),
        "Hub announces a size 4 KiB larger": ({"size": len(data) + 4096}, {}),
        "Hub announces a size 4 KiB smaller": ({"size": len(data) - 4096}, {}),
        "catalog pins another size": ({}, {"size": len(data) + 1}),
    }


def _one_lying_hub(hub: FakeHub, home: Path, index: int, case: str,
                   overrides: tuple[dict[str, Any], dict[str, Any]],
                   monkeypatch: pytest.MonkeyPatch) -> int:
    data = random.Random(SEED + index).randbytes(SIZE)
    hub_args, source = overrides
    entry = hub_entry(f"lie{index}", repo=f"adv-org/lie{index}", file="lie.gguf", **source)
    hub.add_file(entry.source.repo or "", "lie.gguf", data, **hub_args)
    settings = _use_home(monkeypatch, home)
    hub.corrupt(len(data) // 2 if "flipped" in case else None)
    hub.reset_requests()

    with pytest.raises(IntegrityError,
                       match=r"(nothing was installed|Nothing was downloaded|cannot be verified)"
                       ) as info:
        ModelStore(settings, retries=1, retry_wait=0.01).pull(entry)

    state = inspect_cache(settings, entry, data)
    assert not state.final_exists and state.part_size == 0 and not state.stray, (case, state)
    assert f"localloom pull lie{index}" in str(info.value) or "entry" in str(info.value)
    hub.corrupt(None)
    return sum(n for _, n in _body_gets(hub, entry))


def test_wrong_bytes_or_hashes_raise_integrity_error_and_install_nothing(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(SEED).randbytes(SIZE)
    received = {}
    for index, (case, overrides) in enumerate(_integrity_cases(data).items()):
        received[case] = _one_lying_hub(hub, tmp_path / f"case{index}", index, case,
                                        overrides, monkeypatch)

    # A verified copy survives a forced re-pull that receives damaged bytes.
    keep = _publish(hub, "keep", data)
    settings = _use_home(monkeypatch, tmp_path / "keep")
    store = ModelStore(settings, retries=0)
    store.pull(keep)
    hub.corrupt(123)
    with pytest.raises(IntegrityError):
        store.pull(keep, force=True)
    assert_verified_and_clean(settings, keep, data)

    refused_early = [case for case, n in received.items() if n == 0]
    assert set(refused_early) >= {"catalog pins another sha256", "catalog pins another size"}
    lying = [c for c in received if "size" not in c]
    sizes = [c for c in received if "size" in c]
    SECTION.record({
        LYING: (f"{len(lying) + 1} cases ({'; '.join(lying)}; a forced re-pull of a verified "
                f"file receiving a flipped byte): {len(lying) + 1} IntegrityError, 0 files "
                "installed, 0 partial bytes kept, the verified copy kept"),
        SIZES: (f"{len(sizes)} cases ({'; '.join(sizes)}): {len(sizes)} IntegrityError, "
                f"{sum(1 for c in sizes if received[c] == 0)} before any byte was received, "
                "0 files installed, 0 partial bytes kept"),
    })


# -- full disks -------------------------------------------------------------------------------


def _fsize_limit(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    data = random.Random(SEED + 11).randbytes(SIZE)
    entry = _publish(hub, "fsize", data)
    settings = _use_home(monkeypatch, tmp_path / "fsize")
    limit = SIZE // 3
    proc = start_worker(entry, "--fsize", str(limit))
    out, err = proc.communicate(timeout=120)
    assert out.splitlines()[-1].startswith("ERROR DiskSpaceError"), out + err
    state = inspect_cache(settings, entry, data)
    assert not state.final_exists and 0 < state.part_size <= limit and state.verified_or_none
    return _resume(hub, settings, entry, data, state)


def _resume(hub: FakeHub, settings: Settings, entry: ModelEntry, data: bytes,
            state: CacheState) -> str:
    hub.throttle(None)
    settle(hub)
    ModelStore(settings, retries=1).pull(entry)
    gets = _body_gets(hub, entry)
    assert_verified_and_clean(settings, entry, data)
    return "resumed" if state.part_size and gets[0][0] == f"bytes={state.part_size}-" else "ok"


def _tmpfs_case(case: str, hub: FakeHub, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> str:
    data = random.Random(f"{SEED}{case}").randbytes(SIZE)
    entry = _publish(hub, case, data)
    size = SIZE // 2 if case == "small" else 3 * SIZE
    with tmpfs(tmp_path / f"mnt-{case}", size) as mount:
        settings = _use_home(monkeypatch, mount / "home")
        filler = mount / "filler"
        if case == "full":
            fill_disk(filler)
        hub.reset_requests()
        if case == "fills":
            hub.throttle(THROTTLE)
            proc = start_worker(entry)
            part = settings.cache_dir / "partial" / f"{entry.id}.part"
            wait_until(lambda: part.exists() and part.stat().st_size > SIZE // 3)
            fill_disk(filler)
            out, err = proc.communicate(timeout=120)
            message = out.splitlines()[-1] if out else err
        else:
            with pytest.raises(DiskSpaceError) as info:
                ModelStore(settings, retries=0).pull(entry)
            message = f"ERROR DiskSpaceError: {info.value}"
        assert message.startswith("ERROR DiskSpaceError"), (case, out, err)
        assert "localloom" in message
        state = inspect_cache(settings, entry, data)
        assert not state.final_exists and state.verified_or_none and not state.stray, state
        if case != "fills":
            assert _body_gets(hub, entry) == [] and state.part_size == 0
        filler.unlink(missing_ok=True)
        # Room again (the small disk gets a bigger home): the same pull now completes.
        if case == "small":
            settings = _use_home(monkeypatch, tmp_path / "roomy")
        return _resume(hub, settings, entry, data, state)


def test_a_full_disk_gives_disk_space_error_and_the_pull_resumes_later(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = {"file-size limit (RLIMIT_FSIZE) at 1/3": _fsize_limit(hub, tmp_path, monkeypatch)}
    tmpfs_cases = {"small": "tmpfs smaller than the file",
                   "full": "tmpfs already full", "fills": "tmpfs filled up mid-download"}
    for case, label in tmpfs_cases.items():
        try:
            results[label] = _tmpfs_case(case, hub, tmp_path, monkeypatch)
        except pytest.skip.Exception as why:
            results[label] = f"skipped ({why})"

    assert results["file-size limit (RLIMIT_FSIZE) at 1/3"] == "resumed"
    ran = {k: v for k, v in results.items() if not v.startswith("skipped")}
    skipped = sorted(set(results) - set(ran))
    SECTION.record({DISK: (
        f"{len(ran)} cases ({'; '.join(ran)}): {len(ran)} DiskSpaceError naming what to do, "
        f"0 files installed, 0 partials with wrong bytes; "
        f"{sum(v == 'resumed' for v in ran.values())} resumed from the kept bytes once there "
        "was room, all verified" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))})


# -- concurrent pulls -------------------------------------------------------------------------


def test_eight_processes_pulling_one_model_download_it_once(
        hub: FakeHub, tmp_path: Path) -> None:
    data = random.Random(SEED + 8).randbytes(SIZE)
    entry = _publish(hub, "crowd", data)
    settings = Settings()
    go = tmp_path / "go"
    procs = [start_worker(entry, "--go", str(go)) for _ in range(8)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "READY"
    hub.throttle(THROTTLE)  # about a second: every process is waiting while one downloads
    hub.reset_requests()

    go.touch()
    outputs = [proc.communicate(timeout=180) for proc in procs]

    final = ModelStore(settings).path_for(entry)
    assert [out.strip() for out, _ in outputs] == [f"OK {final}"] * 8, outputs
    model_requests = [r for r in hub.requests if "/resolve/" in r.path]
    gets = [r for r in model_requests if r.method == "GET"]
    heads = [r for r in model_requests if r.method == "HEAD"]
    assert len(gets) == 1 and gets[0].body_bytes == SIZE
    assert_verified_and_clean(settings, entry, data)
    SECTION.record({CONCURRENT: (
        f"8 processes released at once: 8 got the same path, 1 verified file, {len(gets)} body "
        f"GET ({len(heads)} HEAD), 0 partial files left")})


# -- escapes: names and planted links ---------------------------------------------------------


HOSTILE_SOURCES: tuple[tuple[str, dict[str, str]], ...] = (
    ("id ../", {"model_id": "../victim"}),
    ("id absolute", {"model_id": "/tmp/victim"}),
    ("id URL-encoded ../", {"model_id": "%2e%2e%2fvictim"}),
    ("id with a slash", {"model_id": "a/../../victim"}),
    ("id ..", {"model_id": ".."}),
    ("repo ../", {"repo": "../../api/models"}),
    ("repo absolute", {"repo": "/etc/passwd"}),
    ("repo URL-encoded ../", {"repo": "adv-org/%2e%2e%2f%2e%2e%2fx"}),
    ("revision ../", {"revision": "../../main"}),
    ("revision inner ../", {"revision": "refs/../../../x"}),
    ("revision absolute", {"revision": "/main"}),
    ("revision URL-encoded ../", {"revision": "%2e%2e%2f%2e%2e%2fmain"}),
    ("revision URL-encoded ..", {"revision": "..%2f..%2fmain"}),
    ("file ../", {"file": "../escape.gguf"}),
    ("file inner ../", {"file": "sub/../../../escape.gguf"}),
    ("file absolute", {"file": "/etc/passwd"}),
    ("file URL-encoded ../", {"file": "%2e%2e%2fescape.gguf"}),
    ("file URL-encoded .. part", {"file": "sub/%2e%2e/%2e%2e/%2e%2e/escape.gguf"}),
    ("file double URL-encoded ../", {"file": "%252e%252e%252fescape.gguf"}),
    ("file URL-encoded absolute", {"file": "%2fetc%2fpasswd"}),
    ("file backslash ..", {"file": "..\\escape.gguf"}),
    ("file Windows drive", {"file": "C:\\escape.gguf"}),
    ("file NUL byte", {"file": "victim.gguf\x00.txt"}),
    ("file hidden (the sidecar's name)", {"file": ".localloom.json"}),
)

_OPERATIONS: tuple[tuple[str, Callable[[ModelStore, ModelEntry], object]], ...] = (
    ("path_for", lambda s, e: s.path_for(e)),
    ("is_cached", lambda s, e: s.is_cached(e)),
    ("ensure", lambda s, e: s.ensure(e)),
    ("pull", lambda s, e: s.pull(e)),
    ("pull --force", lambda s, e: s.pull(e, force=True)),
    ("verify", lambda s, e: s.verify(e)),
    ("delete", lambda s, e: s.delete(e)),
)


def test_hostile_names_are_refused_and_touch_nothing(
        hub: FakeHub, tmp_path: Path) -> None:
    hub.add_file("adv-org/victim-GGUF", "victim.Q4_0.gguf", b"v" * 4096)
    store = ModelStore(Settings(), retries=0)
    ModelStore(Settings()).cache_dir.mkdir(parents=True)
    (tmp_path / "escape.gguf").write_bytes(b"precious")
    before = snapshot(tmp_path)
    not_refused = []

    schema_refused = 0
    for label, hostile in HOSTILE_SOURCES:
        entry, by_schema = _entry_past_the_schema(dict(hostile))
        schema_refused += by_schema
        for op_name, operation in _OPERATIONS:
            try:
                operation(store, entry)
            except UnsafePathError as exc:
                assert "not allowed" in str(exc) and "models.toml" in str(exc)
                continue
            except LocalLoomError as exc:
                not_refused.append(f"{label}: {op_name} raised {type(exc).__name__}: {exc}")
                continue
            not_refused.append(f"{label}: {op_name} went ahead")

    assert not_refused == []
    assert hub.requests == []
    assert snapshot(tmp_path) == before
    attempts = len(HOSTILE_SOURCES) * len(_OPERATIONS)
    SECTION.record({NAMES: (
        f"{len(HOSTILE_SOURCES)} hostile ids, repos, revisions and file names (`../`, absolute, "
        f"`%2e%2e%2f`, double-encoded, backslash, drive, NUL, hidden) x {len(_OPERATIONS)} "
        f"operations: {attempts}/{attempts} refused with UnsafePathError ({schema_refused} "
        "ids are refused by the catalog schema already; the store was handed them anyway), "
        "0 requests to the Hub, 0 files created or changed anywhere")})


def _entry_past_the_schema(source: dict[str, Any]) -> tuple[ModelEntry, bool]:
    """An entry with these names; True if the catalog's own schema refuses them first.

    A schema-refused entry is built without validation, as buggy or hostile calling code
    could, to prove the store checks the names itself.
    """
    model_id = source.pop("model_id", "victim")
    repo = source.pop("repo", "adv-org/victim-GGUF")
    try:
        return hub_entry(model_id, repo=repo, **source), False
    except ValidationError:
        return hub_entry("victim", repo=repo, **source).model_copy(update={"id": model_id}), True


def _plant(cache: Path, outside: Path, plant: str) -> Path:
    """Make the planted link ``plant`` (relative to the cache) and what it points at."""
    kind, _, where = plant.partition(":")
    link = cache / where
    link.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        target = outside / "dir"
        link.symlink_to(target, target_is_directory=True)
    elif kind == "file":
        link.symlink_to(outside / "precious.bin")
    elif kind == "dangling":
        link.symlink_to(outside / "created-by-attacker")
    else:  # a hard link: same inode as the user's file outside
        os.link(outside / "precious.bin", link)
    return link


def _outside(tmp_path: Path, data: bytes) -> Path:
    """A folder of user files that the planted links point at, with decoys for the store."""
    outside = tmp_path / "outside"
    decoy = outside / "dir" / "linkvictim"
    decoy.mkdir(parents=True)
    (outside / "precious.bin").write_bytes(b"user data " * 1000)
    (outside / "dir" / "linkvictim.part").write_bytes(data[:1000])
    (decoy / "linkvictim.Q4_0.gguf").write_bytes(b"not the model")
    (decoy / ".localloom.json").write_text(
        '{"id": "linkvictim", "kind": "hub", "file": "linkvictim.Q4_0.gguf", '
        '"sha256": "00", "size": 1}')
    return outside


PLANTS = (
    "dir:models", "dir:models/linkvictim", "dir:partial", "dir:locks",
    "file:models/linkvictim/linkvictim.Q4_0.gguf",
    "dangling:models/linkvictim/linkvictim.Q4_0.gguf",
    "file:models/linkvictim/.localloom.json", "dangling:models/linkvictim/.localloom.json",
    "file:partial/linkvictim.part", "dangling:partial/linkvictim.part",
    "file:partial/linkvictim.part.json", "file:locks/linkvictim.lock",
    "dangling:locks/linkvictim.lock",
    "hard:partial/linkvictim.part", "hard:models/linkvictim/linkvictim.Q4_0.gguf",
    "hard:locks/linkvictim.lock",
)

_LOOKS: tuple[tuple[str, Callable[[ModelStore, ModelEntry], object]], ...] = (
    ("is_cached", lambda s, e: s.is_cached(e)),
    ("verify", lambda s, e: s.verify(e)),
    ("verify_all", lambda s, e: s.verify_all()),
    ("list_cached", lambda s, e: s.list_cached()),
    ("cache_size", lambda s, e: s.cache_size()),
    ("pull", lambda s, e: s.pull(e)),
    ("delete", lambda s, e: s.delete(e)),
)


def _one_plant(hub: FakeHub, root: Path, plant: str, entry: ModelEntry, data: bytes,
               monkeypatch: pytest.MonkeyPatch) -> tuple[bool, list[str]]:
    """Plant, attack with every store operation; (pull refused?, problems found)."""
    settings = _use_home(monkeypatch, root / "home")
    cache = settings.cache_dir
    outside = _outside(root, data)
    link = _plant(cache, outside, plant)
    if plant == "hard:partial/linkvictim.part":
        # The matching record makes the store trust the kept bytes: the real attack.
        (cache / "partial" / "linkvictim.part.json").write_text(
            f'{{"file": "{entry.source.file}", "repo": "{entry.source.repo}", '
            f'"sha256": "{hashlib.sha256(data).hexdigest()}", "size": {len(data)}}}')
    before = snapshot(root, skip=[cache])
    store = ModelStore(settings, retries=0)
    problems, refused = [], False
    for name, operation in _LOOKS:
        try:
            operation(store, entry)
        except UnsafePathError:
            refused = refused or name == "pull"
        except LocalLoomError as exc:
            problems.append(f"{plant}: {name} raised {type(exc).__name__}: {exc}")
    if snapshot(root, skip=[cache]) != before:
        problems.append(f"{plant}: a file outside the cache changed")
    if link.is_symlink():
        link.unlink()  # what the refusal message tells the user to do
    state = inspect_cache(settings, entry, data)
    if state.half_promoted or (state.verified and not state.final_intact):
        problems.append(f"{plant}: the cache vouches for the wrong bytes")
    store.pull(entry)
    assert_verified_and_clean(settings, entry, data)
    if snapshot(root, skip=[cache]) != before:
        problems.append(f"{plant}: a file outside the cache changed after recovery")
    return refused, problems


def test_links_planted_in_the_cache_never_let_a_write_out(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(SEED + 13).randbytes(SIZE // 4)
    entry = _publish(hub, "linkvictim", data)
    problems: list[str] = []
    refused = 0
    for index, plant in enumerate(PLANTS):
        was_refused, found = _one_plant(hub, tmp_path / f"plant{index}", plant, entry, data,
                                        monkeypatch)
        refused += was_refused
        problems += found
        if not plant.startswith("hard:"):
            assert was_refused, f"pull went ahead through the planted link {plant}"

    assert problems == [], "\n".join(problems)
    symlinks = sum(not p.startswith("hard:") for p in PLANTS)
    SECTION.record({LINKS: (
        f"{len(PLANTS)} plants (symlinks to a folder, a file or nowhere as the models, "
        "model, partial and locks folders, the file, its record, `.part`, `.part.json` and "
        "lock; hard links as the `.part`, the file and the lock), each followed by is_cached, "
        f"verify, verify_all, list_cached, cache_size, pull and delete: {refused}/{symlinks} "
        f"symlink plants refused, {len(PLANTS) - symlinks} hard links ignored or replaced, "
        "0 files outside the cache changed, every cache verified after removing the link")})
