"""Point 10: `recommend` judges speed (tokens/s estimated from memory bandwidth), not only RAM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localloom.catalog import (
    MIN_TOKENS_PER_S,
    Catalog,
    Hardware,
    estimate_tokens_per_s,
    recommend,
)
from localloom.catalog.bandwidth import memory_bandwidth
from localloom.config import Settings

PHI = "Phi-3.5-mini-instruct-Q4_K_M"


def _laptop(bandwidth: float | None, ram: float = 16) -> Hardware:
    """A CPU-only machine with plenty of RAM: only speed can rule a model out."""
    return Hardware(total_ram_gb=ram, available_ram_gb=ram, physical_cores=2,
                    logical_cores=2, memory_bandwidth_gbs=bandwidth)


def test_a_slow_two_core_machine_is_not_recommended_a_model_too_slow_for_it() -> None:
    catalog = Catalog(Settings())
    slow = _laptop(20.0)  # what a 2-core VM with DDR4 reads

    rec = recommend(catalog, slow)

    assert rec.entry.id != PHI  # the RAM-only answer was Phi-3.5-mini (about 7 tokens/s)
    assert rec.tokens_per_s is not None and rec.tokens_per_s >= MIN_TOKENS_PER_S
    assert estimate_tokens_per_s(catalog.get(PHI), slow) < MIN_TOKENS_PER_S  # type: ignore[operator]
    assert f"{rec.tokens_per_s:.0f} tokens/s" in rec.reason and "20 GB/s" in rec.reason
    # Every faster-than-needed model it passed over has lower quality or is slower.
    assert rec.entry.quality in ("good", "basic")


def test_a_fast_machine_gets_the_best_quality_model() -> None:
    rec = recommend(Catalog(Settings()), _laptop(200.0))

    assert rec.entry.quality == "high" and rec.tokens_per_s is not None
    assert "highest-quality" in rec.reason


def test_when_nothing_is_fast_enough_the_fastest_model_is_named_and_why() -> None:
    catalog = Catalog(Settings())
    rec = recommend(catalog, _laptop(4.0))

    chat = [e for e in catalog.entries() if e.origin == "builtin" and e.prompt_style == "chat"]
    assert rec.entry.download_size == min(e.download_size for e in chat)
    assert "no model that fits reaches" in rec.reason


def test_without_a_bandwidth_figure_speed_is_not_judged() -> None:
    rec = recommend(Catalog(Settings()), _laptop(None))

    assert rec.tokens_per_s is None and rec.entry.id == PHI


def test_the_bandwidth_probe_is_quick_plausible_and_cached() -> None:
    settings = Settings()
    start = time.perf_counter()
    first = memory_bandwidth(settings)
    took = time.perf_counter() - start

    assert first.source == "measured" and 0.5 < first.gb_per_s < 5000 and took < 5
    again = memory_bandwidth(settings)
    assert again.source == "cached" and again.gb_per_s == first.gb_per_s
    assert memory_bandwidth(settings, refresh=True).source == "measured"


def test_recommend_prints_the_estimate_and_the_bandwidth_it_used(isolated_home: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    localloom = Path(sys.executable).with_name("localloom")
    out = subprocess.run([str(localloom), "recommend", "--bandwidth-gbs", "20"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "tokens/s estimated" in text and "20 GB/s memory reads (as given)" in text
    assert PHI not in text

    doc = json.loads(subprocess.run([str(localloom), "recommend", "--json", "--bandwidth-gbs",
                                     "20", "--min-speed", "0"], capture_output=True,
                                    text=True, env=env, timeout=120).stdout)
    assert doc["id"] == PHI and doc["tokens_per_s"] == pytest.approx(20 * 0.9 / 2.393, 0.01)
