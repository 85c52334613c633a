"""Chat prompts: the model's own template, the plain format for base models, and the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import make_settings

from localloom.engine import Engine
from localloom.errors import TemplateError
from localloom.testing import write_tiny_gguf

TURNS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hello"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "the cat"},
]


def test_chat_uses_the_gguf_chat_template(engine: Engine) -> None:
    r = engine.chat.completions.create(messages=TURNS, temperature=0, max_tokens=2)
    rendered = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in TURNS)
    rendered += "<|im_start|>assistant\n"
    assert r.usage is not None
    assert r.usage.prompt_tokens == engine.count_tokens(rendered)


def test_model_without_template_gets_a_plain_transcript(tiny_gguf_no_template: Path,
                                                        tmp_path: Path) -> None:
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(tiny_gguf_no_template))
        r = eng.chat.completions.create(messages=TURNS, temperature=0, max_tokens=12)
        transcript = "Be brief.\n\nUser: hello\nAssistant: yes\nUser: the cat\nAssistant:"
        assert r.usage is not None
        assert r.usage.prompt_tokens == eng.count_tokens(transcript)
        assert eng.model_info().prompt_style == "completion"
        text = r.choices[0].message.content or ""
        assert "\nUser:" not in text and not text.startswith(" ")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
         "loops"),
        ("{{ 'x' * 100000000 }}", "oversized"),
        ("{{ ''.__class__.__mro__ }}", "render"),
        ("{{ raise_exception('roles must alternate') }}", "roles must alternate"),
    ],
)
def test_hostile_or_failing_template_raises_template_error(
        tmp_path: Path, template: str, problem: str) -> None:
    path = write_tiny_gguf(tmp_path / "hostile.gguf", chat_template=template)
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(path))
        with pytest.raises(TemplateError, match=problem):
            eng.chat.completions.create(messages=TURNS, max_tokens=2)
        # plain completions do not need the template and keep working
        assert eng.completions.create(prompt="the cat", max_tokens=2).choices


def test_template_that_does_not_compile_fails_only_chat(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "badsyntax.gguf", chat_template="{% for %}")
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(path))
        with pytest.raises(TemplateError, match="does not compile"):
            eng.chat.completions.create(messages=TURNS, max_tokens=2)


def test_template_tojson_writes_plain_json_like_hugging_face(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "json.gguf",
                           chat_template="{{ messages | tojson }}\n")
    with Engine(make_settings(tmp_path)) as eng:
        eng.reload(str(path))
        msgs = [{"role": "user", "content": "<b>é</b>"}]
        r = eng.chat.completions.create(messages=msgs, max_tokens=1)
        assert r.usage is not None
        assert r.usage.prompt_tokens == eng.count_tokens(json.dumps(msgs, ensure_ascii=False))
