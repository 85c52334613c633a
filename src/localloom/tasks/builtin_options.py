"""The built-in tasks' options, their prompt phrases (English and Spanish) and limits.

Values and defaults follow Chrome's built-in AI: the Summarizer's `type`, `length` and
`format`, the Rewriter's `tone`, `length` and `format`, the Writer's `tone`, `length` and
`format`. Where a task's wording depends on several options at once (a summary's type and
length, the number of questions), a shape function builds it. docs/TASK_OPTIONS.md lists
every phrase and limit.

LocalLoom's summarize defaults to a one-sentence TL;DR (its summary before options
existed), where Chrome's Summarizer defaults to key points.
"""

from __future__ import annotations

from collections.abc import Mapping

from localloom.tasks.options import OptionValue, OutputRules, TaskOption, TextFormat

__all__ = [
    "COUNTER_LENGTH",
    "HEADLINE_WORDS",
    "KEY_POINTS",
    "QUESTION_COUNT",
    "REWRITE_FORMAT",
    "REWRITE_LENGTH",
    "REWRITE_TONE",
    "SUMMARY_LENGTH",
    "SUMMARY_SENTENCES",
    "SUMMARY_TYPE",
    "TEXT_FORMAT",
    "TRANSLATE_FROM",
    "WRITE_LENGTH",
    "WRITE_TONE",
    "question_shape",
    "summarize_shape",
]

LENGTHS = ("short", "medium", "long")
# Chrome's Summarizer lengths: sentences (tldr, teaser), bullets (key-points), words
# (headline).
SUMMARY_SENTENCES = {"short": 1, "medium": 3, "long": 5}
KEY_POINTS = {"short": 3, "medium": 5, "long": 7}
HEADLINE_WORDS = {"short": 12, "medium": 17, "long": 22}
_PLAIN = {"en": ", as plain text without markdown", "es": ", en texto plano sin markdown"}

SUMMARY_TYPE = TaskOption(
    name="type", default="tldr", choices=("key-points", "tldr", "teaser", "headline"),
    description="What kind of summary: key points (bullets), a TL;DR, a teaser that makes "
                "people want to read the text, or a headline.")
SUMMARY_LENGTH = TaskOption(
    name="length", default="short", choices=LENGTHS,
    description="short/medium/long: 1/3/5 sentences (tldr, teaser), 3/5/7 bullets "
                "(key-points), 12/17/22 words (headline).")
TEXT_FORMAT = TaskOption(
    name="format", default="markdown", choices=("markdown", "plain-text"),
    description="markdown, or plain text with no markdown at all.",
    phrases={"en": {"markdown": "", "plain-text": _PLAIN["en"]},
             "es": {"markdown": "", "plain-text": _PLAIN["es"]}},
    rules={"markdown": OutputRules(text_format="markdown"),
           "plain-text": OutputRules(text_format="plain-text")})

REWRITE_TONE = TaskOption(
    name="tone", default="as-is", choices=("more-formal", "as-is", "more-casual"),
    description="Make the text more formal, keep its tone, or make it more casual.",
    phrases={"en": {"more-formal": ", in a more formal tone", "as-is": "",
                    "more-casual": ", in a more casual tone"},
             "es": {"more-formal": ", con un tono más formal", "as-is": "",
                    "more-casual": ", con un tono más informal"}})
REWRITE_LENGTH = TaskOption(
    name="length", default="as-is", choices=("shorter", "as-is", "longer"),
    description="shorter: at most 0.8 times the text's words; as-is: at most 1.5 times; "
                "longer: at most 2.5 times.",
    phrases={"en": {"shorter": ", making it shorter", "as-is": "",
                    "longer": ", making it longer"},
             "es": {"shorter": ", haciéndolo más corto", "as-is": "",
                    "longer": ", haciéndolo más largo"}},
    rules={"shorter": OutputRules(words_per_input_word=0.8),
           "as-is": OutputRules(words_per_input_word=1.5),
           "longer": OutputRules(words_per_input_word=2.5)})
REWRITE_FORMAT = TaskOption(
    name="format", default="as-is", choices=("as-is", "markdown", "plain-text"),
    description="Keep the text's format, or answer in markdown or in plain text.",
    phrases={"en": {"as-is": "", "markdown": ", formatted as markdown",
                    "plain-text": _PLAIN["en"]},
             "es": {"as-is": "", "markdown": ", en formato markdown",
                    "plain-text": _PLAIN["es"]}},
    rules={"markdown": OutputRules(text_format="markdown"),
           "plain-text": OutputRules(text_format="plain-text")})

COUNTER_LENGTH = TaskOption(
    name="length", default="medium", choices=LENGTHS,
    description="short/medium/long: at most 2/4/8 sentences.",
    phrases={"en": {"short": ", in two sentences", "medium": ", in four sentences at most",
                    "long": ", in eight sentences at most"},
             "es": {"short": ", en dos frases", "medium": ", en cuatro frases como máximo",
                    "long": ", en ocho frases como máximo"}},
    rules={"short": OutputRules(max_sentences=2), "medium": OutputRules(max_sentences=4),
           "long": OutputRules(max_sentences=8)})

QUESTION_COUNT = TaskOption(
    name="count", kind="count", default=1, minimum=1, maximum=5,
    description="How many questions (1-5), one per line.")

TRANSLATE_FROM = TaskOption(
    name="from", kind="language", default="auto",
    description="The text's language, or 'auto' to detect it.")

WRITE_TONE = TaskOption(
    name="tone", default="neutral", choices=("formal", "neutral", "casual"),
    description="The tone of the text.",
    phrases={"en": {"formal": ", in a formal tone", "neutral": "",
                    "casual": ", in a casual tone"},
             "es": {"formal": ", con un tono formal", "neutral": "",
                    "casual": ", con un tono informal"}})
WRITE_LENGTH = TaskOption(
    name="length", default="short", choices=LENGTHS,
    description="short/medium/long: at most 60/150/300 words.",
    phrases={"en": {"short": ", in at most 60 words", "medium": ", in at most 150 words",
                    "long": ", in at most 300 words"},
             "es": {"short": ", en 60 palabras como máximo",
                    "medium": ", en 150 palabras como máximo",
                    "long": ", en 300 palabras como máximo"}},
    rules={"short": OutputRules(max_words=60), "medium": OutputRules(max_words=150),
           "long": OutputRules(max_words=300)})

_EN_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 7: "seven"}
_ES_NUMBERS = {1: "una", 2: "dos", 3: "tres", 4: "cuatro", 5: "cinco", 7: "siete"}


def _summary_words(kind: str, length: str, plain: bool, lang: str) -> tuple[str, str]:
    """(chat instruction, completion label) of one summary type and length."""
    sentences, points = SUMMARY_SENTENCES[length], KEY_POINTS[length]
    words = HEADLINE_WORDS[length]
    marker = "•" if plain else "-"
    if lang == "es":
        frases = "una frase" if sentences == 1 else f"{_ES_NUMBERS[sentences]} frases"
        return {
            "tldr": (f"Resume el siguiente texto de manera concisa y clara, en {frases}",
                     "Resumen en una frase:" if sentences == 1 else f"Resumen en {frases}:"),
            "teaser": (f"Escribe un gancho de {frases} para el siguiente texto, que invite a "
                       "leerlo", f"Gancho de {frases} que invita a leerlo:"),
            "headline": (f"Escribe un titular de {words} palabras como máximo para el "
                         "siguiente texto", "Titular:"),
            "key-points": (f"Enumera los {_ES_NUMBERS[points]} puntos más importantes del "
                           "siguiente texto, uno por línea",
                           f"Los {_ES_NUMBERS[points]} puntos clave:\n{marker}"),
        }[kind]
    sentence_words = ("one sentence" if sentences == 1
                      else f"{_EN_NUMBERS[sentences]} sentences")
    return {
        "tldr": (f"Summarize the following text concisely and clearly, in {sentence_words}",
                 "One-sentence summary:" if sentences == 1
                 else f"Summary in {sentence_words}:"),
        "teaser": (f"Write a teaser of {sentence_words} for the following text, one that "
                   "makes people want to read it",
                   f"A teaser of {sentence_words} that makes you want to read it:"),
        "headline": (f"Write a headline of at most {words} words for the following text",
                     "Headline:"),
        "key-points": (f"List the {_EN_NUMBERS[points]} most important points of the "
                       "following text, one per line",
                       f"The {_EN_NUMBERS[points]} key points:\n{marker}"),
    }[kind]


def summarize_shape(chosen: Mapping[str, OptionValue],
                    lang: str) -> tuple[dict[str, str], OutputRules]:
    """The summary's wording and limits for its type x length x format."""
    kind, length = str(chosen["type"]), str(chosen["length"])
    text_format: TextFormat = "plain-text" if chosen["format"] == "plain-text" else "markdown"
    plain = text_format == "plain-text"
    instruction, label = _summary_words(kind, length, plain, lang)
    if kind == "key-points":
        rules = OutputRules(max_items=KEY_POINTS[length], list_style="bullets")
    elif kind == "headline":
        rules = OutputRules(max_lines=1, max_words=HEADLINE_WORDS[length])
    else:
        rules = OutputRules(max_sentences=SUMMARY_SENTENCES[length])
    return {"summary_instruction": instruction + (_PLAIN[lang] if plain else ""),
            "summary_label": label}, rules


def question_shape(chosen: Mapping[str, OptionValue],
                   lang: str) -> tuple[dict[str, str], OutputRules]:
    """One question on one line, or a numbered list of `count` of them."""
    count = int(chosen["count"])
    rules = OutputRules(max_items=count, list_style="lines")
    if lang == "es":
        if count == 1:
            return {"question_instruction": "Genera una pregunta reflexiva e interesante "
                                            "basada en el siguiente texto",
                    "question_label": "Una pregunta reflexiva sobre este texto:"}, rules
        n = _ES_NUMBERS[count]
        return {"question_instruction": f"Genera {n} preguntas reflexivas e interesantes "
                                        "basadas en el siguiente texto, una por línea",
                "question_label": f"{n.capitalize()} preguntas que haría un lector "
                                  "curioso sobre este texto:\n1."}, rules
    if count == 1:
        return {"question_instruction": "Generate a thoughtful and interesting question "
                                        "based on the following text",
                "question_label": "A thoughtful question about this text:"}, rules
    n = _EN_NUMBERS[count]
    return {"question_instruction": f"Generate {n} thoughtful and interesting questions "
                                    "based on the following text, one per line",
            # Measured on the starter: "a curious reader would ask" gets questions where
            # "thoughtful questions ..., one per line" now and then got a quiz.
            "question_label": f"{n.capitalize()} questions a curious reader would ask "
                              "about this text:\n1."}, rules
