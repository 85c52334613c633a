"""Model catalog: built-in entries, user models.toml, GGUF inspection, hardware fit.

Example::

    from localloom.catalog import Catalog, detect_hardware, recommend
    catalog = Catalog()
    print([e.id for e in catalog.entries()])
    print(recommend(catalog, detect_hardware()).reason)
"""

from __future__ import annotations

from localloom.catalog.builtin import BUILTIN_ENTRIES, STARTER_ID, builtin_entries
from localloom.catalog.catalog import Catalog
from localloom.catalog.entry import (
    CAPABILITIES,
    Capability,
    ModelEntry,
    ModelSource,
    PromptStyle,
    QualityTier,
    SpeedTier,
)
from localloom.catalog.hardware import (
    GPU,
    MIN_TOKENS_PER_S,
    Fit,
    FitStatus,
    Hardware,
    Recommendation,
    detect_hardware,
    estimate_tokens_per_s,
    fit,
    format_gb_range,
    recommend,
)
from localloom.catalog.inspect import (
    entry_from_gguf,
    estimate_ram_gb,
    id_from_filename,
    kv_cache_bytes,
)
from localloom.catalog.user import UserModels, load_user_models, parse_models_file

__all__ = [
    "BUILTIN_ENTRIES",
    "CAPABILITIES",
    "GPU",
    "MIN_TOKENS_PER_S",
    "STARTER_ID",
    "Capability",
    "Catalog",
    "Fit",
    "FitStatus",
    "Hardware",
    "ModelEntry",
    "ModelSource",
    "PromptStyle",
    "QualityTier",
    "Recommendation",
    "SpeedTier",
    "UserModels",
    "builtin_entries",
    "detect_hardware",
    "entry_from_gguf",
    "estimate_ram_gb",
    "estimate_tokens_per_s",
    "fit",
    "format_gb_range",
    "id_from_filename",
    "kv_cache_bytes",
    "load_user_models",
    "parse_models_file",
    "recommend",
]
