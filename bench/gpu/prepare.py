"""Prepare what a GPU run needs to carry to the lent machine (it cannot reach a registry).

Run here, from the repository root::

    python bench/gpu/prepare.py

It writes
- ``bench/.work/gpu/llama_cpp_python-<pin>-stripped.tar.gz``: the pinned sdist without git
  history, docs and vocabulary test files (the whole sdist is over the 64 MiB carry limit),
  with the vendored llama.cpp commit recorded in ``vendor/llama.cpp/LLAMA_CPP_COMMIT``;
- ``bench/.work/gpu/PIN``: the llama-cpp-python version;
- ``.whl/``: wheels (Python 3.12, manylinux x86-64) of every distribution the benchmark
  imports that the GPU image lacks, at the versions installed here, plus the build backend.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import re
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "src")]

from bench.native import _commit, _fetch_sdist, llama_cpp_pin  # noqa: E402

GPU = REPO / "bench" / ".work" / "gpu"
WHEELS = REPO / ".whl"
KINDS = Path("/work/.library/device/KINDS.md")
# Modules a --cuda run imports (the engine path, model writing, the bench itself).
IMPORTS = ("localloom", "localloom.engine", "localloom.testing", "localloom.server",
           "localloom.server.runner", "localloom.cli", "gguf",
           "tomli_w", "httpx",
           "bench.run", "bench.__main__", "llama_cpp")
# Always carried: the build backend llama-cpp-python's sdist needs (--no-build-isolation)
# and llama-cpp-python's own runtime needs.
ALWAYS = ("scikit-build-core", "diskcache", "typing_extensions")
NEVER = ("llama_cpp_python", "localloom", "setuptools", "pip")
# Seen in the image's package list (KINDS.md, 2026-11-17) when that file is not at hand.
_IMAGE_FALLBACK = (
    "anyio", "certifi", "click", "filelock", "h11", "httpcore", "httpx", "huggingface-hub",
    "idna", "jinja2", "markupsafe", "numpy", "packaging", "pathspec", "psutil", "pygments",
    "pyyaml", "requests", "rich", "scikit-build-core", "shellingham", "tqdm", "typer",
    "urllib3", "matplotlib", "torch", "cmake", "ninja",
)
_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
              "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_24_x86_64",
              "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64")
_STRIP = re.compile(
    r"^[^/]+/(\.git(/|$)|vendor/llama\.cpp/\.git$|vendor/llama\.cpp/docs(/|$)"
    r"|vendor/llama\.cpp/models/.*\.gguf.*$|vendor/llama\.cpp/build[^/]*(/|$)"
    r"|build[^/]*(/|$)|vendor/llama\.cpp/media(/|$))"
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    """Distributions the GPU image already has."""
    if KINDS.exists():
        m = re.search(r"Packages: (.+?)\.\s*$", KINDS.read_text(), re.M)
        if m:
            return {_norm(p.strip()) for p in m.group(1).split(",")}
    return {_norm(p) for p in _IMAGE_FALLBACK}


def imported_distributions() -> dict[str, str]:
    """{distribution: version} of everything the --cuda run imports."""
    for name in IMPORTS:
        importlib.import_module(name)
    by_module = md.packages_distributions()
    dists = {d for mod in list(sys.modules) for d in by_module.get(mod.split(".")[0], [])}
    return {d: md.version(d) for d in sorted(dists)}


def download_wheels() -> list[str]:
    """Wheels of what the image lacks, at this machine's versions, into .whl/."""
    have = image_packages()
    wanted = {d: v for d, v in imported_distributions().items()
              if _norm(d) not in have and _norm(d) not in {_norm(n) for n in NEVER}}
    for name in ALWAYS:
        wanted.setdefault(name, md.version(name) if _installed(name) else "")
    WHEELS.mkdir(exist_ok=True)
    for old in WHEELS.glob("*.whl"):
        old.unlink()  # one version of each: two stop the whole install there
    plat = [a for p in _PLATFORMS for a in ("--platform", p)]
    for dist, version in sorted(wanted.items()):
        spec = f"{dist}=={version}" if version else dist
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--python-version", "3.12", "--implementation",
                        "cp", *plat, "-d", str(WHEELS), spec], check=True)
    return sorted(p.name for p in WHEELS.glob("*.whl"))


def _installed(name: str) -> bool:
    try:
        md.version(name)
    except md.PackageNotFoundError:
        return False
    return True


def strip_sdist() -> Path:
    """The pinned sdist, small enough to carry, with its llama.cpp commit written in."""
    pin = llama_cpp_pin(REPO)
    src = _fetch_sdist(REPO / "bench" / ".work", pin, print)
    llama_dir = src / "vendor" / "llama.cpp"
    commit = _commit(llama_dir)
    GPU.mkdir(parents=True, exist_ok=True)
    (GPU / "PIN").write_text(pin + "\n")
    out = GPU / f"llama_cpp_python-{pin}-stripped.tar.gz"
    stamp = GPU / "LLAMA_CPP_COMMIT"
    stamp.write_text(commit + "\n")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if _STRIP.match(info.name) else info

    with tarfile.open(out, "w:gz", compresslevel=9) as tar:
        tar.add(src, arcname=src.name, filter=keep)
        tar.add(stamp, arcname=f"{src.name}/vendor/llama.cpp/LLAMA_CPP_COMMIT")
    return out


def main() -> int:
    """Write the stripped sdist and the wheel folder; print what to carry."""
    exclude = REPO / ".git" / "info" / "exclude"
    if exclude.exists() and "/.whl/" not in exclude.read_text():
        with exclude.open("a") as f:
            f.write("/.whl/\n")
    sdist = strip_sdist()
    wheels = download_wheels()
    size = sum(p.stat().st_size for p in WHEELS.glob("*.whl"))
    print(f"sdist: {sdist} ({sdist.stat().st_size / 2**20:.1f} MiB)")
    print(f"wheels ({size / 2**20:.1f} MiB): {' '.join(wheels)}")
    print('carry: [".whl", "bench/.work/gpu"]')
    return 0


if __name__ == "__main__":
    sys.exit(main())
