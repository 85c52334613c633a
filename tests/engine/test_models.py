"""Loading models: WebLLM's reload semantics, progress reports, several models, stats."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import make_settings

from localloom.engine import Engine, InitProgressReport
from localloom.errors import ModelNotLoadedError
from localloom.testing import write_tiny_gguf


def _user_model(settings_home: Path, model_id: str, gguf: Path, *, style: str) -> None:
    config = settings_home / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "models.toml").write_text(
        f'''[[model]]
id = "{model_id}"
display_name = "Tiny test model"
download_size = {gguf.stat().st_size}
ram_min_gb = 0.1
ram_max_gb = 0.2
context_length = 2048
prompt_style = "{style}"
aliases = ["{model_id}-alias"]
[model.source]
kind = "local"
path = "{gguf}"
''')


def test_reload_reports_progress_up_to_one(tiny_gguf: Path, tmp_path: Path) -> None:
    reports: list[InitProgressReport] = []
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(tiny_gguf), progress_callback=reports.append)
    fractions = [r.progress for r in reports]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and "Finished" in reports[-1].text
    assert all(r.time_elapsed >= 0 for r in reports)


def test_reload_keeps_exactly_the_named_models(tiny_gguf: Path, tiny_gguf_no_template: Path,
                                               tmp_path: Path) -> None:
    a, b = str(tiny_gguf), str(tiny_gguf_no_template)
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload([a, b])
        assert eng.loaded_models == [a, b] and eng.loaded_model == b
        r = eng.chat.completions.create(model=a, messages=[{"role": "user", "content": "x"}],
                                        max_tokens=2)
        assert r.model == a
        eng.reload(b)
        assert eng.loaded_models == [b]
        eng.load(a)
        assert eng.loaded_models == [b, a] and eng.loaded_model == a
        eng.unload(a)
        assert eng.loaded_models == [b]
        eng.unload()
        assert eng.loaded_model is None


def test_catalog_model_loads_through_the_store(tiny_gguf: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert settings.home is not None
    _user_model(Path(settings.home), "tiny-local", tiny_gguf, style="completion")
    with Engine(settings) as eng:
        eng.reload("tiny-local")
        assert eng.loaded_model == "tiny-local"
        info = eng.model_info()
        assert info.prompt_style == "completion"  # the entry overrides the GGUF template
        r = eng.chat.completions.create(model="tiny-local-alias",
                                        messages=[{"role": "user", "content": "hi"}],
                                        max_tokens=3)
        assert r.model == "tiny-local"


def test_runtime_stats_and_model_info_describe_the_loaded_model(engine: Engine) -> None:
    engine.completions.create(prompt="the cat and the dog", temperature=0, max_tokens=16)
    stats = engine.runtime_stats()
    assert stats.prefill_tokens_per_s > 0 and stats.decode_tokens_per_s > 0
    assert 0 < stats.ttft_s < 60
    assert stats.memory_bytes > stats.model_bytes > 0
    assert stats.n_parallel == 8 and stats.n_ctx == 512
    assert "tokens/s" in stats.text
    info = engine.model_info()
    assert info.n_ctx == 512 and info.path.name == "tiny.gguf"
    assert info.last_used >= info.loaded_at


def test_count_tokens_matches_completion_usage(engine: Engine) -> None:
    r = engine.completions.create(prompt="hello world", max_tokens=1)
    assert r.usage is not None and r.usage.prompt_tokens == engine.count_tokens("hello world")


def test_prompt_written_with_bos_text_gets_a_single_bos(engine: Engine, tmp_path: Path) -> None:
    assert engine.count_tokens("<s>the cat") == engine.count_tokens("the cat")


def test_verbose_engine_still_generates(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "v.gguf")
    with Engine(make_settings(tmp_path), verbose=True) as eng:
        eng.reload(str(path))
        assert eng.completions.create(prompt="the", max_tokens=2).choices


def test_unloading_ends_a_running_stream_with_model_not_loaded(tiny_gguf: Path,
                                                               tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(tiny_gguf))
        stream = eng.chat.completions.create(messages=[{"role": "user", "content": "x"}],
                                             max_tokens=400, stream=True)
        next(stream)
        eng.unload()
        with pytest.raises(ModelNotLoadedError):
            for _ in stream:
                pass
