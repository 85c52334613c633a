"""Library callers get the same protection from crashing grammars as the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from localloom import Engine, InvalidRequestError


def test_a_json_schema_with_a_huge_bound_is_refused_not_a_crash(tiny_gguf: Path) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 20000}}}
    with Engine() as engine:
        engine.load(str(tiny_gguf))
        with pytest.raises(InvalidRequestError, match="maxLength"):
            engine.chat.completions.create(
                messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": schema}})
        # The engine still answers afterwards.
        ok = engine.chat.completions.create(messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=2)
        assert ok.choices[0].finish_reason in ("stop", "length")
