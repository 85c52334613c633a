"""The GPU half of the benchmark report: targets name the measured card, figures carry their
spread, and the CUDA artifacts survive a pack and unpack (real files, real strip and xz)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.gpu import artifacts  # noqa: E402
from bench.report import render  # noqa: E402
from bench.targets import card_name, evaluate_targets  # noqa: E402


def _cuda(gpu: str) -> dict[str, Any]:
    single = {"llama_bench": {"tg_ts": 900.0, "tg_sd": 5.0, "pp_ts": 27000.0, "pp_sd": 1500.0},
              "engine_single": {"decode_ts": 855.0, "decode_sd": 20.0, "prefill_ts": 34000.0,
                                "prefill_sd": 900.0, "reported_decode_ts": 840.0,
                                "reported_prefill_ts": 36000.0, "host_rss_bytes": 450 * 2**20,
                                "gpu_bytes": 1256 * 2**20},
              "runs": {"llama_bench_tg": [890.0, 900.0, 910.0],
                       "engine_decode": [840.0, 855.0, 870.0],
                       "llama_bench_pp": [25000.0, 27000.0, 29000.0],
                       "engine_prefill": [33000.0, 34000.0, 35000.0]},
              "decode_ratios": [0.94, 0.95, 0.96]}
    http = {"levels": [32], "max_tokens": 128, "per_client": 2, "streamed": True, "servers": {
        "localloom": [{"clients": 32, "tokens_per_s": 3400.0, "latency_p50_s": 1.1,
                       "latency_p95_s": 1.7, "ttft_p50_s": 0.15, "ttft_p95_s": 0.62,
                       "requests": 64}],
        "llama-server": [{"clients": 32, "tokens_per_s": 2000.0, "latency_p50_s": 1.5,
                          "latency_p95_s": 1.6, "ttft_p50_s": 0.3, "ttft_p95_s": 0.44,
                          "requests": 64}]}}
    model = {"file": {"bytes_per_token": 6e8, "file_bytes": 6.4e8}, **single, "single": single,
             "http": http,
             "batched_bench": [{"pl": 32, "speed_tg": 9000.0, "speed_tg_sd": 80.0,
                                "speed_tg_runs": [8900.0, 9000.0, 9100.0]}],
             "engine_streams": [{"streams": 32, "decode_ts": 7800.0, "decode_sd": 40.0,
                                 "decode_runs": [7760.0, 7800.0, 7840.0],
                                 "end_to_end_ts": 4000.0}]}
    return {"machine": {"gpu": gpu, "cpu": "x", "date": "2026-12-02", "llama_cpp_commit": "abc",
                        "llama_cpp_python": "0.3.36"},
            "settings": {"n_prompt": 512, "n_gen": 128, "reps": 3, "threads": 16,
                         "streams_pp": 128, "streams_tg": 128},
            "bandwidth": {"gb_per_s": 4300.0, "method": "m"}, "models": {"tiny": model},
            "skipped": ["big / streams: not enough time left"]}


def test_gpu_targets_name_the_card_the_results_record() -> None:
    targets = evaluate_targets({"models": {}}, _cuda("NVIDIA H200, 143771 MiB, 580.159.04"))
    assert targets and all(t.label.startswith("NVIDIA H200: ") for t in targets)
    assert not any("H100" in t.label for t in targets)
    assert card_name({"machine": {"gpu": ""}}) == "GPU"


def test_gpu_targets_use_issue_14s_thresholds_and_show_the_spread() -> None:
    by_key = {t.key: t for t in evaluate_targets({"models": {}}, _cuda("NVIDIA H200"))}
    single, streams, http = (by_key["cuda-single-decode.tiny"], by_key["cuda-streams-32.tiny"],
                             by_key["cuda-http32.tiny"])
    assert (single.need, streams.need, http.need) == (0.98, 1.0, 1.5)
    assert single.ratio == pytest.approx(855 / 900) and not single.met
    assert "0.94–0.96× over 3 runs" in single.measured
    assert "0.86–0.87× over 3 runs" in streams.measured  # 7760/8900 .. 7840/9100 per run
    assert http.ratio == pytest.approx(1.7) and http.met
    assert "LocalLoom 0.150 / 0.620 s, llama-server 0.300 / 0.440 s" in http.context


def test_the_gpu_section_reports_ranges_memory_http_and_what_was_skipped() -> None:
    cuda = _cuda("NVIDIA H200, 1 MiB, 1")
    cpu = {"models": {}, "settings": {**cuda["settings"], "quick": True}, "duration_s": 60,
           "machine": {"date": "d", "cpu": "c", "physical_cores": 2, "logical_cpus": 2,
                       "ram_gb": 8.0, "gpu": "none", "os": "o", "python": "3",
                       "llama_cpp_python": "0.3.36", "llama_cpp_commit": "abc",
                       "cpu_features": "f"}}
    doc = render(cpu, cuda, "", None)
    assert "own run on an NVIDIA H200 (2026-12-02)" in doc
    assert "900.0 ± 5.0 (890.0–910.0)" in doc  # llama-bench tg: mean ± sd (range)
    assert "| tiny | 450 | 1,256 |" in doc  # host RSS and GPU memory, MiB
    assert "| tiny | 32 | 3,400.0 | 2,000.0 | 1.70× | 0.150 / 0.620 | 0.300 / 0.440 |" in doc
    assert "**Not measured in this run**" in doc and "big / streams" in doc


def test_artifacts_pack_small_enough_and_unpack_to_the_same_files(tmp_path: Path) -> None:
    site, peers = tmp_path / "site", tmp_path / "peers"
    lib = site / "llama_cpp" / "lib"
    lib.mkdir(parents=True)
    peers.mkdir()
    payload = bytes(range(256)) * 4096  # 1 MiB
    (lib / "libggml.so.0.9.1").write_bytes(payload)
    (lib / "libggml.so.0").write_bytes(payload)  # a wheel's copy: packed as a link
    (site / "llama_cpp" / "__init__.py").write_text("x = 1\n")
    (peers / "llama-bench").write_bytes(b"#!/bin/sh\necho bench\n")
    out = tmp_path / "out"
    size = artifacts.pack(site, peers, out)
    assert 0 < size < len(payload)  # one copy, compressed
    parts = sorted(out.glob("artifacts.part-*"))
    assert parts and sum(p.stat().st_size for p in parts) == size
    site2, peers2 = tmp_path / "site2", tmp_path / "peers2"
    artifacts.unpack(out, site2, peers2)
    lib2 = site2 / "llama_cpp" / "lib"
    assert (lib2 / "libggml.so.0").read_bytes() == payload
    assert (lib2 / "libggml.so.0").is_symlink()
    assert (peers2 / "llama-bench").read_bytes() == b"#!/bin/sh\necho bench\n"
