"""The option checks on fixed texts: what an answer may look like, and what it becomes.

No model here: these are the rules that hold whatever a model writes (the runner passes
every answer through the same OutputShaper).
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from localloom.config import Settings
from localloom.errors import InvalidRequestError
from localloom.tasks import TaskRegistry
from localloom.tasks.checks import OutputShaper, enforce, has_markdown, strip_markdown, violations
from localloom.tasks.corrections import apply_corrections, find_corrections
from localloom.tasks.options import OutputRules, resolve_options

KEY_POINTS_SHORT = OutputRules(max_items=3, list_style="bullets", text_format="markdown")
KEY_POINTS_PLAIN = OutputRules(max_items=3, list_style="bullets", text_format="plain-text")
HEADLINE = OutputRules(max_lines=1, max_words=12, text_format="markdown")
# An independent statement of "no markdown", so the checks are not tested against themselves.
MARKDOWN = re.compile(r"^\s*(?:#|[-*+]\s|>)|\*\*|__|`|\]\(|~~", re.MULTILINE)

MESSY = ("## Herons\n\n* **Patience** is how the heron hunts.\n1. They nest in `colonies`.\n"
         "- See [the survey](https://example.org) for counts.\n+ Volunteers count nests.\n"
         "> The marsh is protected.")


def _streamed(text: str, rules: OutputRules, size: int) -> tuple[str, str, bool]:
    """What the shaper releases when `text` arrives in pieces of `size` characters."""
    shaper = OutputShaper(rules)
    out = []
    for i in range(0, len(text), size):
        out.append(shaper.feed(text[i:i + size]))
        if shaper.full:
            break
    out.append(shaper.finish())
    return "".join(out), shaper.text, shaper.full


def test_short_key_points_are_at_most_three_markdown_bullets() -> None:
    out = enforce(MESSY, KEY_POINTS_SHORT)
    lines = out.splitlines()
    assert len(lines) == 3 and all(line.startswith("- ") for line in lines)
    assert lines[0] == "- Herons"  # a heading line became a point, its marks gone
    assert violations(out, KEY_POINTS_SHORT) == []
    assert violations(MESSY, KEY_POINTS_SHORT)  # the raw text breaks the rules


def test_plain_text_key_points_use_bullet_characters_and_no_markdown() -> None:
    out = enforce(MESSY, KEY_POINTS_PLAIN)
    assert out.splitlines() == ["• Herons", "• Patience is how the heron hunts.",
                                "• They nest in colonies."]
    assert not MARKDOWN.search(out) and not has_markdown(out)


def test_plain_text_strips_every_kind_of_markdown_but_keeps_the_words() -> None:
    rules = OutputRules(text_format="plain-text")
    out = enforce(MESSY + "\n\n| a | b |\n|---|---|\n| 1 | 2 |\n***\nAn *emphasised* word.",
                  rules)
    assert not MARKDOWN.search(out), out
    for word in ("Herons", "Patience", "colonies", "the survey", "Volunteers", "protected",
                 "emphasised", "1, 2"):
        assert word in out
    assert "https://example.org" not in out
    assert strip_markdown("**bold** and __strong__ and ~~gone~~") == "bold and strong and gone"


def test_a_headline_is_one_line_of_at_most_its_words() -> None:
    text = ("Herons return to the marsh as the colony grows every spring since protection "
            "began thirty years ago\nSecond line")
    out = enforce(text, HEADLINE)
    assert "\n" not in out and len(out.split()) == 12
    assert violations(out, HEADLINE) == [] and violations(text, HEADLINE)


def test_sentence_limits_cut_at_a_sentence_end() -> None:
    rules = OutputRules(max_sentences=2)
    out = enforce("The heron waits. It strikes! Then it flies home? Yes.", rules)
    assert out == "The heron waits. It strikes!"
    # "3.5" and "e.g." inside a sentence do not end it early.
    assert enforce("It weighs 3.5 kg. It is grey. It is tall.", rules) == (
        "It weighs 3.5 kg. It is grey.")


def test_word_limits_keep_whole_sentences_when_one_fits() -> None:
    rules = OutputRules(max_words=8)
    assert enforce("One two three four. Five six seven eight nine ten.", rules) == (
        "One two three four.")
    assert enforce("One two three four five six seven eight nine ten", rules) == (
        "One two three four five six seven eight")


def test_questions_are_one_per_line_without_numbers() -> None:
    rules = OutputRules(max_items=3, list_style="lines")
    out = enforce("1. Why do herons wait?\n2) Where do they nest?\n\n- Who counts them?\n"
                  "4. When?", rules)
    assert out.splitlines() == ["Why do herons wait?", "Where do they nest?",
                                "Who counts them?"]


def test_stray_marker_tokens_are_dropped_and_end_sentences() -> None:
    rules = OutputRules(max_sentences=2, text_format="plain-text")
    text = "<start_of_image>It waits.<start_of_image>It eats.<start_of_image>It sleeps."
    assert enforce(text, rules) == "It waits. It eats."


@pytest.mark.parametrize("rules", [KEY_POINTS_SHORT, KEY_POINTS_PLAIN, HEADLINE,
                                   OutputRules(max_sentences=3, text_format="plain-text"),
                                   OutputRules(max_words=15),
                                   OutputRules(max_items=2, list_style="lines")])
@pytest.mark.parametrize("size", [1, 3, 17, 10_000])
def test_what_streams_is_the_answer_and_keeps_the_rules_in_any_pieces(
        rules: OutputRules, size: int) -> None:
    text = MESSY + "\nIt waits. It strikes. It eats. It flies away over the tall reeds now."
    streamed, final, _ = _streamed(text, rules, size)
    assert streamed.strip() == final  # nothing shown is taken back
    assert final == enforce(text, rules)  # however the pieces fall
    assert violations(final, rules) == []


def test_the_shaper_says_full_as_soon_as_a_limit_is_reached() -> None:
    shaper = OutputShaper(OutputRules(max_sentences=1))
    shaper.feed("The heron waits. It")  # the second sentence has begun: stop generating
    assert shaper.full and shaper.text == "The heron waits."
    bullets = OutputShaper(KEY_POINTS_SHORT)
    bullets.feed("One\n- Two\n- Three\n")
    assert bullets.full and bullets.text.count("\n") == 2


def test_random_text_always_comes_out_within_the_rules() -> None:
    rng = random.Random(5)
    alphabet = "ab c.!?\n*-#`_>[]()1. " + "xyz" * 3
    cases = [KEY_POINTS_SHORT, KEY_POINTS_PLAIN, HEADLINE,
             OutputRules(max_sentences=1, text_format="plain-text"),
             OutputRules(max_items=3, list_style="lines", max_words=20)]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
        for rules in cases:
            out = enforce(text, rules)
            assert violations(out, rules) == [], (text, rules, out)


def test_rules_merge_to_the_stricter_and_input_relative_limits_become_words() -> None:
    merged = OutputRules(max_words=50, text_format="markdown").merge(
        OutputRules(max_words=20, max_sentences=2, text_format="plain-text"))
    assert (merged.max_words, merged.max_sentences, merged.text_format) == (
        20, 2, "plain-text")
    shorter = OutputRules(words_per_input_word=0.8).for_input(100)
    assert shorter.max_words == 80 and shorter.words_per_input_word is None
    assert OutputRules(words_per_input_word=1.5).for_input(2).max_words == 10  # room to fix
    assert OutputRules(max_items=3).token_cap() == 3 * 48 + 8
    assert OutputRules(text_format="markdown").token_cap() is None


def test_options_are_checked_and_errors_name_the_allowed_values() -> None:
    registry = TaskRegistry.default(Settings())
    summarize = registry.get("summarize")
    assert resolve_options(summarize, None) == {"type": "tldr", "length": "short",
                                                "format": "markdown"}
    assert resolve_options(summarize, {"type": "Key-Points"})["type"] == "key-points"
    with pytest.raises(InvalidRequestError,
                       match="'length' cannot be 'tiny': use short, medium, long") as bad:
        resolve_options(summarize, {"length": "tiny"})
    assert bad.value.param == "length"
    with pytest.raises(InvalidRequestError, match=r"no option 'tone'\. Its options: type, "
                                                  r"length, format"):
        resolve_options(summarize, {"tone": "more-formal"})
    question = registry.get("question")
    assert resolve_options(question, {"count": "3"}) == {"count": 3}
    for bad_count in (0, 6, "many", True):
        with pytest.raises(InvalidRequestError, match="whole number from 1 to 5"):
            resolve_options(question, {"count": bad_count})
    translate = registry.get("translate")
    assert resolve_options(translate, {"from": "Spanish"}) == {"from": "Spanish"}
    with pytest.raises(InvalidRequestError, match="a language code"):
        resolve_options(translate, {"from": "not a language"})
    with pytest.raises(InvalidRequestError, match="takes no options"):
        resolve_options(registry.get("proofread"), {"length": "short"})


CORRECTION_PAIRS = [
    ("Teh cat sat on teh mat", "The cat sat on the mat."),
    ("The heron stand motionless  at teh edge.", "The heron stands motionless at the edge."),
    ("Herons wait.\n\nThey nest in colonys", "Herons wait.\n\nThey nest in colonies."),
    ("", "Something new."),
    ("Nothing to fix.", "Nothing to fix."),
    ("Delete the the repeated word.", "Delete the repeated word."),
]


@pytest.mark.parametrize(("original", "corrected"), CORRECTION_PAIRS)
def test_corrections_point_into_the_original_and_rebuild_the_corrected_text(
        original: str, corrected: str) -> None:
    fixes = find_corrections(original, corrected)
    assert apply_corrections(original, fixes) == corrected
    for fix in fixes:
        assert original[fix.start:fix.end] == fix.original
    starts = [f.start for f in fixes]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in itertools.pairwise(fixes))
    if original == corrected:
        assert fixes == []


def test_corrections_are_word_sized() -> None:
    fixes = find_corrections("Teh cat sat on teh mat", "The cat sat on the mat.")
    assert [(f.start, f.end, f.original, f.correction) for f in fixes] == [
        (0, 3, "Teh", "The"), (15, 18, "teh", "the"), (22, 22, "", ".")]


def test_corrections_hold_for_random_edits() -> None:
    rng = random.Random(11)
    words = ["the", "heron", "waits", "by", "water", "and", "eats", "fish", "at", "dawn", ",",
             ".", "teh", "watr"]
    for _ in range(200):
        original = " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
        edited = [w for w in original.split(" ") if rng.random() > 0.2]
        edited += [rng.choice(words) for _ in range(rng.randint(0, 3))]
        corrected = ("  " if rng.random() < 0.2 else " ").join(edited)
        assert apply_corrections(original, find_corrections(original, corrected)) == corrected
