"""Hardware fit: fits / tight / does not fit, and a recommendation with its reason."""

from __future__ import annotations

import pytest

from localloom.catalog import (
    GPU,
    Catalog,
    Hardware,
    detect_hardware,
    fit,
    recommend,
)
from localloom.config import Settings

LLAMA2 = "Llama-2-7b-chat-hf-q4f16_1-MLC"  # needs 6–8 GB
TINYLLAMA = "TinyLlama-1.1B-Chat-v1.0-q4f16_1-MLC"  # needs 1–2 GB


def _machine(ram: float, free: float | None = None, *, gpu_offload: bool = False,
             gpus: tuple[GPU, ...] = (), unified_memory: bool = False) -> Hardware:
    return Hardware(total_ram_gb=ram, available_ram_gb=ram if free is None else free,
                    gpu_offload=gpu_offload, gpus=gpus, unified_memory=unified_memory)


@pytest.mark.parametrize(("ram", "free", "status"), [
    (16, 16, "fits"),
    (16, 5, "tight"),  # enough in total, not free now
    (8, 8, "tight"),  # 8 GB leaves too little for the OS
    (6, 6, "tight"),
    (4, 4, "does_not_fit"),
])
def test_llama2_fit_follows_ram(ram: float, free: float, status: str) -> None:
    result = fit(Catalog(Settings()).get(LLAMA2), _machine(ram, free))
    assert result.status == status
    assert "6–8 GB" in result.reason


def test_fit_reasons_say_what_to_do() -> None:
    entry = Catalog(Settings()).get(LLAMA2)
    assert "close other programs" in fit(entry, _machine(16, 5)).reason
    assert "pick a smaller model" in fit(entry, _machine(4)).reason
    assert fit(entry, _machine(4)).label == "does not fit"


def test_a_big_enough_gpu_makes_a_model_fit_on_the_gpu() -> None:
    entry = Catalog(Settings()).get(LLAMA2)
    gpu = _machine(4, gpu_offload=True, gpus=(GPU("H100", 80.0, 79.0),))
    result = fit(entry, gpu)
    assert (result.status, result.device) == ("fits", "gpu")
    # The same card is useless to a llama.cpp built without a GPU backend.
    no_backend = _machine(4, gpu_offload=False, gpus=(GPU("H100", 80.0, 79.0),))
    assert fit(entry, no_backend).status == "does_not_fit"


def test_apple_silicon_counts_unified_memory_as_ram() -> None:
    mac = _machine(16, gpu_offload=True, unified_memory=True)
    result = fit(Catalog(Settings()).get(LLAMA2), mac)
    assert (result.status, result.device) == ("fits", "gpu")


def test_recommend_names_the_best_quality_chat_model_that_fits() -> None:
    catalog = Catalog(Settings())
    big = recommend(catalog, _machine(32))
    assert big.entry.quality == "high" and big.fit.status == "fits"
    assert "highest-quality" in big.reason
    small = recommend(catalog, _machine(4))
    assert small.entry.prompt_style == "chat" and small.entry.ram_max_gb <= 4 * 0.8
    assert small.entry.quality == "good"


def test_recommend_prefers_a_tight_chat_model_then_the_starter() -> None:
    catalog = Catalog(Settings())
    tight = recommend(catalog, _machine(1.5))
    assert tight.fit.status == "tight" and tight.entry.id != "gemma3-270m-starter"
    none = recommend(catalog, _machine(0.6))
    assert none.entry.id == "gemma3-270m-starter"
    assert "not for quality" in none.reason


def test_recommend_ignores_user_models() -> None:
    catalog = Catalog(Settings())
    entries = [e.model_copy(update={"origin": "x.toml"}) if e.id == TINYLLAMA else e
               for e in catalog.entries()]
    assert recommend(entries, _machine(2.6)).entry.id != TINYLLAMA


def test_detect_hardware_measures_this_machine() -> None:
    hw = detect_hardware()
    assert 0 < hw.available_ram_gb <= hw.total_ram_gb
    assert hw.logical_cores is None or hw.logical_cores >= 1
    assert isinstance(hw.gpu_offload, bool)
