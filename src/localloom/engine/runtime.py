"""The seam to llama.cpp: load a GGUF, make a multi-sequence context, tokenize, sample.

Only llama-cpp-python's low-level C API is used here (``llama_cpp.llama_*``); the
high-level ``Llama`` class is not in the hot path. Everything that can fail in C is
checked and wrapped into :mod:`localloom.errors`.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import psutil

from localloom.config import Settings
from localloom.engine.backend import (
    BackendConfig,
    apply_config,
    cpu_has_amx,
    crash_now,
    simulated_crash,
)
from localloom.engine.params import SamplingParams
from localloom.errors import ConfigError, InvalidRequestError, ModelLoadError
from localloom.gguf_header import kv_bytes_per_token, starts_with_magic

__all__ = [
    "Batch",
    "Candidates",
    "LlamaContext",
    "LlamaModel",
    "LoadOptions",
    "LogControl",
    "SeqSampler",
    "Utf8State",
    "build_sampler",
    "free_sampler",
]

# Share of free RAM the KV cache of all parallel sequences may take on a CPU-only build.
_KV_RAM_SHARE = 0.5
_COUNT_CHUNK = 4096  # characters per chunk when counting a long text's tokens


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model and size its context; every field can be set via Settings."""

    n_gpu_layers: int
    use_mmap: bool
    n_threads: int
    flash_attn: int
    n_ctx: int | None
    max_default_ctx: int
    n_parallel: int
    n_batch: int = 512
    # The backend config the probe found working; None: llama.cpp's defaults.
    backend: BackendConfig | None = None
    simulate_crash: str | None = None  # Settings.simulate_crash (a test switch)
    adaptive_threads: bool = True
    # Plain greedy picks made in the model's graph (engine/ondevice.py); opt-in.
    device_sampling: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadOptions:
        """Decide hardware defaults (all layers on a GPU if there is one, physical cores)."""
        if settings.n_gpu_layers is not None:
            gpu_layers = settings.n_gpu_layers
        else:
            gpu_layers = -1 if llama_cpp.llama_supports_gpu_offload() else 0
        threads = settings.n_threads or psutil.cpu_count(logical=False) or os.cpu_count() or 1
        if settings.flash_attn is None:
            flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        elif settings.flash_attn:
            flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
        else:
            flash = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        # LOCALLOOM_DEVICE_SAMPLING=1 turns greedy picks on the device on (engine/ondevice.py).
        # Off by default: on the H200 it made 32 streams 13% slower (docs/PERFORMANCE.md).
        forced = os.environ.get("LOCALLOOM_DEVICE_SAMPLING", "").strip()
        if forced not in ("", "0", "1"):
            raise ConfigError(f"LOCALLOOM_DEVICE_SAMPLING must be 0 or 1, not {forced!r}; "
                              "unset it for the default (0).")
        device = forced == "1"
        return cls(
            device_sampling=device,
            n_gpu_layers=gpu_layers,
            use_mmap=settings.use_mmap,
            n_threads=threads,
            flash_attn=flash,
            n_ctx=settings.n_ctx,
            max_default_ctx=settings.max_default_ctx,
            n_parallel=settings.n_parallel,
            simulate_crash=settings.simulate_crash or None,
            adaptive_threads=settings.adaptive_threads,
        )


class LogControl:
    """Routes llama.cpp's log: silent by default, stderr when verbose.

    The C side keeps a raw pointer to the callback, so this object keeps it alive and,
    on :meth:`release`, hands logging back to llama-cpp-python's permanent callback.
    """

    def __init__(self, verbose: bool = False) -> None:
        self.verbose = verbose
        self._callback = llama_cpp.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes | None, user_data: Any) -> None:
        if self.verbose and text:
            sys.stderr.write(text.decode("utf-8", errors="replace"))

    def install(self) -> None:
        """Make this the process's llama.cpp log callback."""
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def release(self) -> None:
        """Restore the default callback if ours is still installed."""
        current = llama_cpp.llama_log_callback()
        user_data = ctypes.c_void_p()
        llama_cpp.llama_log_get(ctypes.byref(current), ctypes.byref(user_data))
        ours = ctypes.cast(self._callback, ctypes.c_void_p).value
        if ctypes.cast(current, ctypes.c_void_p).value == ours:
            from llama_cpp import _logger

            llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def check_file(path: Path) -> None:
    """Cheap checks first: the file exists, is readable and starts with the GGUF magic."""
    if not path.is_file():
        raise ModelLoadError(f"Model file '{path}' does not exist. Check the path or download "
                             "the model again (`localloom pull MODEL`).")
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelLoadError(f"Model file '{path}' cannot be read: {exc}. Check its "
                             "permissions.") from exc
    if not starts_with_magic(magic):
        raise ModelLoadError(f"'{path}' is not a GGUF file (it does not start with 'GGUF'). "
                             "LocalLoom runs GGUF models; convert or download a .gguf file.")


def _load_model(path: Path, options: LoadOptions,
                progress: Callable[[float], None] | None = None) -> Any:
    """Load weights; raises ModelLoadError and leaves the process usable on any failure.

    This is the one place a model file enters llama.cpp, so a subprocess trial load can
    hook in here later.
    """
    check_file(path)
    config = options.backend or BackendConfig("default", True, False, options.n_gpu_layers)
    simulate = options.simulate_crash
    if simulate and simulated_crash(config, simulate,
                                    amx_present=cpu_has_amx() or "amx" in simulate):
        crash_now()  # the test switch: this config "crashes" here as it would in llama.cpp
    params = llama_cpp.llama_model_default_params()
    overrides = apply_config(params, config, path)
    # llama.cpp 0.3.36 replaced the use_mmap flag with a load mode.
    params.load_mode = (llama_cpp.LLAMA_LOAD_MODE_MMAP if options.use_mmap
                        else llama_cpp.LLAMA_LOAD_MODE_NONE)

    def on_progress(fraction: float, user_data: Any) -> bool:
        if progress is not None:
            with contextlib.suppress(Exception):  # a failing UI callback must not abort
                progress(float(fraction))
        return True

    callback = llama_cpp.llama_progress_callback(on_progress)
    params.progress_callback = callback
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    del overrides  # llama.cpp reads the override patterns during the load only
    if not model:
        raise ModelLoadError(
            f"llama.cpp could not load '{path}': the file is corrupt or truncated, or its "
            "architecture is not supported by this llama.cpp. Delete it and download it "
            "again, or pick another model (`localloom models`)."
        )
    return model


class LlamaModel:
    """Loaded weights plus the vocabulary: tokenize, detokenize, metadata."""

    def __init__(self, path: Path, options: LoadOptions,
                 progress: Callable[[float], None] | None = None) -> None:
        self.path = path
        self.ptr = _load_model(path, options, progress)
        self.vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self.ptr))
        # Recurrent (and hybrid) caches cannot drop a tail of their tokens.
        self.recurrent = bool(llama_cpp.llama_model_is_recurrent(self.ptr)
                              or llama_cpp.llama_model_is_hybrid(self.ptr))
        self.size_bytes = int(llama_cpp.llama_model_size(self.ptr))
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}

    def close(self) -> None:
        """Free the weights (idempotent)."""
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None."""
        size = 256
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    @property
    def chat_template(self) -> str | None:
        """``tokenizer.chat_template`` from the file, if any."""
        raw = llama_cpp.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8", errors="replace") if raw else None

    def special_text(self, token: int) -> str:
        """Text of a special token such as BOS ('' when the model has none)."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    @property
    def bos(self) -> int:
        """Beginning-of-sequence token id (-1 if none)."""
        return int(llama_cpp.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        """End-of-sequence token id (-1 if none)."""
        return int(llama_cpp.llama_vocab_eos(self.vocab))

    def tokenize(self, text: str, *, add_special: bool = True,
                 parse_special: bool = True) -> list[int]:
        """Token ids of ``text`` (thread-safe: the vocabulary is read-only)."""
        data = text.encode("utf-8")
        cap = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, cap,
                                         add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            cap = -n

    @functools.cached_property
    def utf8_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(leading UTF-8 continuation bytes, length, well-formed after them) of every
        token's piece: what a grammar needs to keep byte tokens from forming malformed
        UTF-8."""
        lead = np.zeros(self.n_vocab, dtype=np.int16)
        size = np.zeros(self.n_vocab, dtype=np.int16)
        sound = np.zeros(self.n_vocab, dtype=bool)
        for t in range(self.n_vocab):
            piece = self.piece(t)
            k = 0
            while k < len(piece) and piece[k] & 0xC0 == 0x80:
                k += 1
            lead[t], size[t] = k, len(piece)
            try:  # the rest is whole characters, possibly ending in a partial one
                codecs.getincrementaldecoder("utf-8")().decode(piece[k:], final=False)
                sound[t] = True
            except UnicodeDecodeError:
                sound[t] = False
        return lead, size, sound

    @functools.cached_property
    def max_piece_bytes(self) -> int:
        """Bytes of the longest token: no text of more than n × this is n tokens or fewer."""
        return max(1, max((len(self.piece(t, special=True)) for t in range(self.n_vocab)),
                          default=1))

    def count_tokens_upto(self, text: str, limit: int) -> int:
        """Tokens of ``text`` counted in chunks split at whitespace (linear time, whatever
        the text), stopping once past ``limit``; within a few tokens per chunk of the exact
        count. llama.cpp's tokenizer is quadratic on some texts (``"a\n" * 40000``: 20 s)."""
        total, start, n = 0, 0, len(text)
        while start < n and total <= limit:
            end = min(n, start + _COUNT_CHUNK)
            if end < n:
                cut = text.rfind("\n", start + _COUNT_CHUNK // 2, end)
                cut = cut if cut > 0 else text.rfind(" ", start + _COUNT_CHUNK // 2, end)
                end = cut + 1 if cut > 0 else end
            total += len(self.tokenize(text[start:end], add_special=False))
            start = end
        return total

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes a token stands for; control tokens are empty unless ``special``."""
        if not special:
            cached = self._pieces.get(token)
            if cached is not None:
                return cached
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 64, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, -n, 0, special)
        out = buf.raw[:n]
        if not special:
            self._pieces[token] = out
        return out

    def is_eog(self, token: int) -> bool:
        """End-of-generation tokens (EOS, EOT, ...)."""
        eog = self._eog.get(token)
        if eog is None:
            eog = self._eog[token] = bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))
        return eog

    def kv_bytes_per_token(self) -> int:
        """Estimated F16 K+V bytes one token takes in the cache."""
        arch = self.meta("general.architecture") or "llama"
        key_len = self.meta(f"{arch}.attention.key_length")
        return kv_bytes_per_token(
            n_layer=int(llama_cpp.llama_model_n_layer(self.ptr)),
            n_embd=int(llama_cpp.llama_model_n_embd(self.ptr)),
            n_head=max(1, int(llama_cpp.llama_model_n_head(self.ptr))),
            n_head_kv=int(llama_cpp.llama_model_n_head_kv(self.ptr)),
            key_length=int(key_len) if key_len else None)


class Batch:
    """A ``llama_batch`` whose arrays are numpy buffers, so filling it is vectorised.

    Every token belongs to exactly one sequence; ``seq_id[i]`` points at ``seq[i]``.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        ptr_t = ctypes.POINTER(llama_cpp.llama_seq_id)
        base = self.seq.ctypes.data
        self._seq_ptrs = (ptr_t * capacity)(
            *[ctypes.cast(base + 4 * i, ptr_t) for i in range(capacity)]
        )
        # Any: llama-cpp-python's stubs type these pointer fields as arrays.
        struct: Any = llama_cpp.llama_batch()
        struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        struct.embd = None
        struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        struct.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(ptr_t))
        struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.struct = struct
        self.n = 0

    def clear(self) -> None:
        """Start a new batch."""
        self.n = 0

    def add(self, token: int, pos: int, seq: int, output: bool) -> int:
        """Append one token; returns its index (the index to sample from)."""
        i = self.n
        self.token[i] = token
        self.pos[i] = pos
        self.seq[i] = seq
        self.logits[i] = output
        self.n = i + 1
        return i

    def add_span(self, tokens: list[int], start_pos: int, seq: int, output_last: bool) -> int:
        """Append a prompt chunk; returns the index of its last token."""
        i, k = self.n, len(tokens)
        self.token[i:i + k] = tokens
        self.pos[i:i + k] = np.arange(start_pos, start_pos + k, dtype=np.int32)
        self.seq[i:i + k] = seq
        self.logits[i:i + k] = 0
        if output_last:
            self.logits[i + k - 1] = 1
        self.n = i + k
        return i + k - 1


class LlamaContext:
    """One llama_context holding ``n_parallel`` independent sequences (one KV stream each)."""

    def __init__(self, model: LlamaModel, options: LoadOptions) -> None:
        per_seq = options.n_ctx or min(model.n_ctx_train or 4096, options.max_default_ctx)
        n_par = _fit_parallel(model, per_seq, options)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = per_seq * n_par
        params.n_seq_max = n_par
        # Separate KV streams: each sequence attends over its own cells only (faster
        # than a unified cache when prompts differ, and sequences cannot disturb others).
        params.kv_unified = False
        params.n_batch = max(options.n_batch, n_par)
        params.n_ubatch = min(512, params.n_batch)
        params.n_threads = options.n_threads
        params.n_threads_batch = options.n_threads
        params.flash_attn_type = options.flash_attn
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {per_seq} tokens x {n_par} "
                f"sequences for '{model.path.name}' (out of memory?). Lower LOCALLOOM_N_CTX "
                "or LOCALLOOM_N_PARALLEL."
            )
        self.ptr = ctx
        self.n_threads = options.n_threads
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.n_parallel = int(llama_cpp.llama_n_seq_max(ctx))
        self.n_ctx_seq = int(llama_cpp.llama_n_ctx_seq(ctx))
        self.n_batch = int(llama_cpp.llama_n_batch(ctx))
        self.kv_bytes = model.kv_bytes_per_token() * self.n_ctx_seq * self.n_parallel
        self.batch = Batch(self.n_batch)
        self.device_sampling = options.device_sampling
        # llama_decode returns before the GPU is done (the host waits at the logits): the
        # step loop does its text work in that time (StepLoop's pipeline).
        self.offloaded = options.n_gpu_layers != 0 and bool(
            llama_cpp.llama_supports_gpu_offload())
        self._views: dict[tuple[int | None, int], np.ndarray] = {}

    def set_threads(self, n_threads: int) -> None:
        """Compute threads for the next decodes (prompt and generation alike)."""
        if n_threads != self.n_threads:
            llama_cpp.llama_set_n_threads(self.ptr, n_threads, n_threads)
            self.n_threads = n_threads

    def decode(self) -> int:
        """Run the batch; 0 on success (llama_decode's codes otherwise)."""
        self.batch.struct.n_tokens = self.batch.n
        return int(llama_cpp.llama_decode(self.ptr, self.batch.struct))

    def clear_seq(self, seq: int) -> None:
        """Forget every cached token of sequence ``seq``."""
        llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)

    def trim_seq(self, seq: int, keep: int) -> bool:
        """Keep the first ``keep`` tokens of ``seq``; False if this cache cannot do that."""
        if not llama_cpp.llama_memory_seq_rm(self.mem, seq, keep, -1):
            return False
        return int(llama_cpp.llama_memory_seq_pos_max(self.mem, seq)) == keep - 1 and int(
            llama_cpp.llama_memory_seq_pos_min(self.mem, seq)) <= 0

    def copy_seq(self, src: int, dst: int) -> None:
        """Give ``dst`` the whole cache of ``src`` (a shared prompt, for n > 1)."""
        llama_cpp.llama_memory_seq_cp(self.mem, src, dst, -1, -1)

    def output_logits(self, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
        """Every logits row of the last decode as one (n_outputs, n_vocab) view, and the
        row of each batch index (-1 where that token had no output); valid until the
        next decode. llama.cpp keeps the rows in batch order."""
        flags = self.batch.logits[:self.batch.n]
        rows = np.cumsum(flags, dtype=np.int64) - 1
        n_out = int(rows[-1]) + 1 if rows.size else 0
        if n_out < flags.size:
            rows[flags == 0] = -1
        ptr = llama_cpp.llama_get_logits(self.ptr)
        if n_out == 0 or not ptr:
            return np.zeros((0, n_vocab), dtype=np.float32), rows
        # llama.cpp reuses one output buffer: keep the numpy views of it (as_array costs
        # ~20 us a step); a reallocated buffer has a new address, hence a new key.
        key = (ctypes.cast(ptr, ctypes.c_void_p).value, n_out)
        view = self._views.get(key)
        if view is None:
            if len(self._views) > 256:
                self._views.clear()
            view = self._views[key] = np.ctypeslib.as_array(ptr, shape=(n_out, n_vocab))
        return view, rows

    def close(self) -> None:
        """Free the context (idempotent)."""
        if self.ptr:
            llama_cpp.llama_free(self.ptr)
            self.ptr = None


def _fit_parallel(model: LlamaModel, per_seq: int, options: LoadOptions) -> int:
    """Fewer parallel sequences when their KV cache would not fit in RAM (CPU builds)."""
    wanted = max(1, min(options.n_parallel, int(llama_cpp.llama_max_parallel_sequences())))
    if options.n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload():
        return wanted
    budget = psutil.virtual_memory().available * _KV_RAM_SHARE
    per_seq_bytes = max(1, model.kv_bytes_per_token() * per_seq)
    return max(1, min(wanted, int(budget // per_seq_bytes)))


class Candidates:
    """One reusable ``llama_token_data_array`` over the whole vocabulary (numpy-backed)."""

    def __init__(self, n_vocab: int) -> None:
        self.n_vocab = n_vocab
        self.data = np.zeros(n_vocab, dtype=[("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])
        self._ids = np.arange(n_vocab, dtype=np.int32)
        ptr = ctypes.cast(self.data.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data))
        self.struct = llama_cpp.llama_token_data_array(ptr, n_vocab, -1, False)
        self._one: Any = (llama_cpp.llama_token_data * 1)()
        self.one = llama_cpp.llama_token_data_array(self._one, 1, -1, False)

    def fill(self, row: np.ndarray) -> Any:
        """Every token with its logit; returns the pointer samplers take."""
        self.data["id"] = self._ids
        self.data["logit"] = row
        self.data["p"] = 0.0
        s: Any = self.struct  # llama-cpp-python's stubs type the pointer field as an array
        s.data = ctypes.cast(self.data.ctypes.data, ctypes.POINTER(llama_cpp.llama_token_data))
        s.size, s.selected, s.sorted = self.n_vocab, -1, False
        return ctypes.byref(s)

    def selected(self) -> int:
        """The token the chain picked."""
        s = self.struct
        return int(s.data[s.selected].id)

    def single(self, token: int) -> Any:
        """A one-token array, to ask a grammar about that token alone."""
        one: Any = self._one
        one[0].id, one[0].logit, one[0].p = token, 0.0, 0.0
        self.one.size, self.one.selected, self.one.sorted = 1, -1, False
        return ctypes.byref(self.one)


class Utf8State:
    """How many continuation bytes the text owes, and which tokens may come next."""

    def __init__(self, model: LlamaModel, pending: bytes) -> None:
        self.lead, self.size, self.sound = model.utf8_tables
        self.owed = 0
        if pending:
            first = pending[0]
            want = 2 if first >= 0xF0 else 1 if first >= 0xE0 else 0 if first >= 0xC0 else -1
            self.owed = max(0, want + 1 - (len(pending) - 1)) if want >= 0 else 0

    def allows(self, token: int) -> bool:
        """Whether ``token`` continues the text as well-formed UTF-8 (at its start)."""
        lead, size = int(self.lead[token]), int(self.size[token])
        if not self.sound[token]:
            return False
        if self.owed == 0:
            return lead == 0
        return lead == self.owed or (lead == size and 0 < size < self.owed)

    def mask(self) -> np.ndarray:
        """:meth:`allows` for every token at once."""
        if self.owed == 0:
            return np.asarray(self.sound & (self.lead == 0))
        return np.asarray(self.sound & ((self.lead == self.owed)
                                        | ((self.lead == self.size) & (self.size > 0)
                                           & (self.size < self.owed))))


class SeqSampler:
    """One choice's C sampler chain, and its grammar kept apart from it.

    A grammar checked against every token of a 262,144-token vocabulary costs milliseconds
    to seconds a step; so, as llama.cpp's own server does, the chain picks a token first
    and the grammar only checks that one. Only when it is not allowed does the grammar
    filter the whole vocabulary and the chain pick again. For plain sampling this draws
    from exactly the constrained distribution; for greedy it is the constrained argmax.
    """

    def __init__(self, chain: Any, grammar: Any = None) -> None:
        self.chain = chain
        self.grammar = grammar

    def sample(self, ctx: Any, idx: int, row: Callable[[], np.ndarray],
               cand: Candidates, utf8: Utf8State | None = None) -> int:
        """Pick (and accept) the next token from batch index ``idx``'s logits.

        With a grammar, ``utf8`` (the bytes still owed to a partial character) also keeps
        byte tokens to well-formed UTF-8: llama.cpp's grammar lets a lead byte be followed
        by anything, and JSON with broken characters is not JSON a client can read."""
        if self.grammar is None:
            return int(llama_cpp.llama_sampler_sample(self.chain, ctx, idx))
        logits = row()
        llama_cpp.llama_sampler_apply(self.chain, cand.fill(logits))
        token = cand.selected()
        llama_cpp.llama_sampler_apply(self.grammar, cand.single(token))
        allowed = cand.one.data[0].logit != float("-inf")
        if not allowed or (utf8 is not None and not utf8.allows(token)):
            arr = cand.fill(logits)
            if utf8 is not None:
                cand.data["logit"][~utf8.mask()] = float("-inf")
            llama_cpp.llama_sampler_apply(self.grammar, arr)
            llama_cpp.llama_sampler_apply(self.chain, arr)
            token = cand.selected()
        llama_cpp.llama_sampler_accept(self.grammar, token)
        llama_cpp.llama_sampler_accept(self.chain, token)
        return token

    def free(self) -> None:
        """Free both samplers (idempotent)."""
        for sampler in (self.chain, self.grammar):
            if sampler:
                llama_cpp.llama_sampler_free(sampler)
        self.chain = self.grammar = None


def build_sampler(model: LlamaModel, params: SamplingParams, seed: int) -> SeqSampler:
    """The samplers of one sequence; sampling and acceptance then run in C.

    Raises InvalidRequestError when the grammar does not parse or a logit_bias id is
    outside the vocabulary. Free with :func:`free_sampler`.
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    grammar = None
    try:
        if params.logit_bias:
            add(chain, _logit_bias_sampler(model, params))
        if params.has_penalties:
            add(chain, llama_cpp.llama_sampler_init_penalties(
                model.n_vocab, params.penalty_last_n, params.repetition_penalty,
                params.frequency_penalty, params.presence_penalty))
        if params.greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(_dist_seed(seed)))
        if params.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                model.vocab, params.grammar.encode(), b"root")
            if not grammar:
                raise InvalidRequestError(
                    "The response_format grammar could not be compiled for this model. "
                    "Simplify the JSON schema.", param="response_format")
    except BaseException:
        llama_cpp.llama_sampler_free(chain)
        raise
    return SeqSampler(chain, grammar)


def _dist_seed(seed: int) -> int:
    """A 32-bit seed; llama.cpp reads 0xFFFFFFFF as "pick one at random", so avoid it."""
    value = seed & 0xFFFFFFFF
    return 0xFFFFFFFE if value == llama_cpp.LLAMA_DEFAULT_SEED else value


def _logit_bias_sampler(model: LlamaModel, params: SamplingParams) -> Any:
    arr: Any = (llama_cpp.llama_logit_bias * len(params.logit_bias))()
    for i, (token, bias) in enumerate(params.logit_bias):
        if not 0 <= token < model.n_vocab:
            raise InvalidRequestError(
                f"'logit_bias' names token {token}, but the model's vocabulary has "
                f"{model.n_vocab} tokens (ids 0..{model.n_vocab - 1}).", param="logit_bias")
        arr[i].token = token
        arr[i].bias = bias
    return llama_cpp.llama_sampler_init_logit_bias(model.n_vocab, len(params.logit_bias), arr)


def free_sampler(sampler: SeqSampler | None) -> None:
    """Free what :func:`build_sampler` made."""
    if sampler is not None:
        sampler.free()
