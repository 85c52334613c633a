"""Point 7: `localloom run` stops by itself, and takes --max-tokens, --seed, --system and -."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import localloom

PROMPT = "The capital of France is"


def _run(model: Path, *args: str, stdin: str | None = None) -> str:
    result = localloom("run", str(model), *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_raw_run_stops_by_itself_at_the_default_token_limit(tiny_gguf: Path) -> None:
    # The tiny model writes random tokens and rarely ends: before, `run --raw` went on
    # until the context was full. Now it stops at the default limit of 256 tokens.
    default = _run(tiny_gguf, PROMPT, "--raw", "--seed", "1")
    explicit = _run(tiny_gguf, PROMPT, "--raw", "--seed", "1", "--max-tokens", "256")
    short = _run(tiny_gguf, PROMPT, "--raw", "--seed", "1", "--max-tokens", "8")

    assert default == explicit  # the same seed gives the same text, cut at the same place
    assert len(short) < len(default)
    # The last token of the short run may end inside a multi-byte character.
    assert default.startswith(short.rstrip("\n")[:-3])


def test_prompt_from_stdin_with_dash_is_the_same_prompt(tiny_gguf: Path) -> None:
    piped = _run(tiny_gguf, "-", "--raw", "--seed", "3", "--max-tokens", "6", stdin=PROMPT)
    given = _run(tiny_gguf, PROMPT, "--raw", "--seed", "3", "--max-tokens", "6")

    assert piped == given and piped.strip()


def test_system_instructions_reach_the_chat_and_are_refused_with_raw(tiny_gguf: Path) -> None:
    plain = _run(tiny_gguf, "Hi", "--seed", "5", "--max-tokens", "12")
    with_system = _run(tiny_gguf, "Hi", "--seed", "5", "--max-tokens", "12",
                       "--system", "Answer in French, in one short sentence.")
    assert plain != with_system  # another prompt went in (same seed, same sampling draws)

    refused = localloom("run", str(tiny_gguf), "Hi", "--raw", "--system", "Be brief")
    assert refused.returncode == 1
    assert "--system" in refused.stderr and "drop --raw" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_run_without_a_prompt_says_how_to_give_one(tiny_gguf: Path) -> None:
    result = localloom("run", str(tiny_gguf))

    assert result.returncode == 1
    assert "localloom run MODEL" in result.stderr and "Traceback" not in result.stderr
