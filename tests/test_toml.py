"""The shared TOML reading and problem wording (localloom._toml) of models.toml and tasks.toml."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from localloom._toml import FileProblem, field_problems, read_toml


def test_read_toml_parses_or_says_why(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[model]]\nid = "x"\n', encoding="utf-8")
    assert read_toml(good) == {"model": [{"id": "x"}]}

    bad = tmp_path / "bad.toml"
    bad.write_text("[[model]\n", encoding="utf-8")
    problem = read_toml(bad)
    assert isinstance(problem, FileProblem) and problem.field == "(syntax)"
    assert problem.detail.startswith("not valid TOML: ")

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    problem = read_toml(binary)
    assert isinstance(problem, FileProblem) and problem.field == "(file)"
    assert problem.detail.startswith("unreadable: ")


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    size: int

    @field_validator("size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value


def test_field_problems_one_per_field_in_plain_words() -> None:
    with pytest.raises(ValidationError) as info:
        _Entry.model_validate({"size": 0, "colour": "red"})
    problems = dict(field_problems(info.value))
    assert problems["size"] == "must be positive"  # no "Value error, " prefix
    assert problems["colour"].startswith("unknown field")
    assert "name" in problems
