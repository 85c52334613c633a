"""Pack a GPU machine's CUDA build so a later call can carry it back instead of rebuilding.

    python3 bench/gpu/artifacts.py pack SITE PEERS OUT_DIR     # on the GPU machine
    python3 bench/gpu/artifacts.py unpack PARTS_DIR SITE PEERS  # on the next one

What is packed: the installed ``llama_cpp`` package (with its CUDA libraries) and the peer
programs. A wheel stores ``libX.so``, ``libX.so.0`` and ``libX.so.0.N.M`` as three copies of
one library; packed, the copies become links, so the CUDA library travels once. The archive
is split into parts of at most 15 MiB (the tool brings back files of up to 16 MiB). Before
packing, the libraries and programs lose their symbol tables (``strip --strip-unneeded``,
where ``strip`` exists) and the archive is xz-compressed: the CUDA kernels in
libggml-cuda are already compressed by nvcc, so the symbols and xz are what is left to win.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PART = 15 * 2**20
LIMIT = 46 * 2**20  # leaves room, in a 64 MiB carry, for the wheels and the working tree
_VERSIONED = re.compile(r"^(lib.+\.so)((?:\.\d+)+)$")


def _links(lib_dir: Path) -> dict[str, str]:
    """{copy name: name of the fullest-versioned file with the same bytes}."""
    out: dict[str, str] = {}
    for full in sorted(lib_dir.glob("lib*.so.*"), key=lambda p: -len(p.name)):
        m = _VERSIONED.match(full.name)
        if not m or full.is_symlink() or full.name in out:
            continue
        stem, parts = m.group(1), m.group(2).split(".")[1:]
        for k in range(len(parts)):
            alias = lib_dir / ".".join([stem, *parts[:k]])
            if (alias.is_file() and not alias.is_symlink()
                    and alias.stat().st_size == full.stat().st_size
                    and alias.read_bytes() == full.read_bytes()):
                out[alias.name] = full.name
    return out


def _strip(paths: list[Path]) -> None:
    """Drop symbol tables the programs do not need at run time (best effort)."""
    exe = shutil.which("strip")
    if exe is None:
        return
    for path in paths:
        if path.is_file() and not path.is_symlink():
            subprocess.run([exe, "--strip-unneeded", str(path)], capture_output=True, check=False)


def pack(site: Path, peers: Path, out_dir: Path) -> int:
    """Write OUT_DIR/artifacts.part-NN; returns the archive's size (0: too big, none written)."""
    pkg = site / "llama_cpp"
    links = _links(pkg / "lib")
    _strip([p for p in (pkg / "lib").glob("lib*.so*") if p.name not in links]
           + [p for p in peers.iterdir()])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz", preset=6) as tar:
        for path in sorted(pkg.rglob("*")):
            if "__pycache__" in path.parts:
                continue
            arc = "llama_cpp/" + path.relative_to(pkg).as_posix()
            if path.parent == pkg / "lib" and path.name in links:
                info = tarfile.TarInfo(arc)
                info.type, info.linkname = tarfile.SYMTYPE, links[path.name]
                tar.addfile(info)
            else:
                tar.add(path, arcname=arc, recursive=False)
        tar.add(peers, arcname="peers")
    data = buf.getvalue()
    print(f"packed (stripped, xz): {len(data) / 2**20:.1f} MiB")
    if len(data) > LIMIT:
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for i in range(0, len(data), PART):
        (out_dir / f"artifacts.part-{i // PART:02d}").write_bytes(data[i:i + PART])
    return len(data)


def unpack(parts_dir: Path, site: Path, peers: Path) -> None:
    """Restore ``llama_cpp`` into SITE and the peer programs into PEERS."""
    data = b"".join(p.read_bytes() for p in sorted(parts_dir.glob("artifacts.part-*")))
    staging = site.parent / (site.name + ".unpack")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        if sys.version_info >= (3, 12):
            tar.extractall(staging, filter="tar")
        else:
            tar.extractall(staging)
    _replace_dir(staging / "llama_cpp", site / "llama_cpp")
    _replace_dir(staging / "peers", peers)
    shutil.rmtree(staging, ignore_errors=True)


def _replace_dir(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


def main(argv: list[str]) -> int:
    """Command line: pack or unpack."""
    if len(argv) == 4 and argv[0] == "pack":
        size = pack(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        print(f"artifacts: {size / 2**20:.1f} MiB" if size else
              f"artifacts over {LIMIT // 2**20} MiB: not written (a later call rebuilds)")
        return 0
    if len(argv) == 4 and argv[0] == "unpack":
        unpack(Path(argv[1]), Path(argv[2]), Path(argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
