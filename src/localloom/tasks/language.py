"""Which language a text is in, and what languages are called.

`LanguageDetector` wraps langdetect with a fixed seed held by its own factory (never the
library's class-wide setting), so the same text always gets the same answer. Texts too
short for langdetect fall back to a small stopword count.

Example::

    detector = LanguageDetector()
    detector.detect("El gato duerme en la casa.")   # "es"
    language_name("es", in_language="en")            # "Spanish"
"""

from __future__ import annotations

import re
import threading
from typing import Any

__all__ = ["LANGUAGE_NAMES", "LanguageDetector", "language_name", "normalize_language"]

# Names of common languages, in English and in Spanish (the languages prompts come in).
LANGUAGE_NAMES: dict[str, tuple[str, str]] = {
    "en": ("English", "inglés"),
    "es": ("Spanish", "español"),
    "fr": ("French", "francés"),
    "de": ("German", "alemán"),
    "it": ("Italian", "italiano"),
    "pt": ("Portuguese", "portugués"),
    "nl": ("Dutch", "neerlandés"),
    "ca": ("Catalan", "catalán"),
    "pl": ("Polish", "polaco"),
    "ru": ("Russian", "ruso"),
    "uk": ("Ukrainian", "ucraniano"),
    "sv": ("Swedish", "sueco"),
    "tr": ("Turkish", "turco"),
    "ar": ("Arabic", "árabe"),
    "hi": ("Hindi", "hindi"),
    "zh": ("Chinese", "chino"),
    "ja": ("Japanese", "japonés"),
    "ko": ("Korean", "coreano"),
}
_BY_NAME = {name.lower(): code for code, names in LANGUAGE_NAMES.items() for name in names}

_STOPWORD_TEXT = {
    "en": "the and of to in is that it was for on are with as this be you what how "
          "hello thanks",
    "es": "el la de que y en los las del se por un una es con para qué cómo está "
          "hola gracias muy pero",
    "fr": "le la les de des et est que une un du pour dans pas qui",
    "de": "der die das und ist nicht ein eine zu den mit von sich auf",
    "it": "il lo la di che e un una per non sono con gli del della",
    "pt": "o a os as de que e do da em um uma para com não",
}
_STOPWORDS = {lang: frozenset(words.split()) for lang, words in _STOPWORD_TEXT.items()}
_SHORT_TEXT = 40  # characters; below this langdetect guesses poorly
_SAMPLE = 4000  # characters; language is clear long before this


def normalize_language(value: str) -> str:
    """'es', 'ES', 'es-MX', 'Spanish' or 'español' -> 'es'; unknown values pass through."""
    raw = value.strip()
    if raw.lower() in _BY_NAME:
        return _BY_NAME[raw.lower()]
    return raw.lower().replace("_", "-").split("-")[0]


def language_name(code: str, in_language: str = "en") -> str:
    """The name of language `code`, written in English or Spanish; the code if unknown."""
    names = LANGUAGE_NAMES.get(code)
    if names is None:
        return code
    return names[1] if in_language == "es" else names[0]


class LanguageDetector:
    """Detects a text's language (ISO 639-1 code), deterministically."""

    def __init__(self, seed: int = 0, default: str = "en") -> None:
        self.seed = seed
        self.default = default
        self._factory: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._factory is None:
                from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

                factory = DetectorFactory()
                factory.load_profile(PROFILES_DIRECTORY)
                # An instance attribute: the seed is ours, not langdetect's global one.
                factory.seed = self.seed
                self._factory = factory
            return self._factory

    def detect(self, text: str) -> str:
        """The language code of `text`; `default` when there is nothing to go on."""
        sample = text.strip()[:_SAMPLE]
        if len(sample) < _SHORT_TEXT:
            return self._by_stopwords(sample) or self.default
        from langdetect.lang_detect_exception import LangDetectException

        try:
            detector = self._load().create()
            detector.append(sample)
            code = str(detector.detect())
        except LangDetectException:
            return self._by_stopwords(sample) or self.default
        return normalize_language(code)

    def ranked(self, text: str) -> list[tuple[str, float]]:
        """Likely languages of `text` with their probabilities, most likely first (one guess
        with confidence 0.5 for texts too short for langdetect: a stopword count)."""
        sample = text.strip()[:_SAMPLE]
        if len(sample) >= _SHORT_TEXT:
            from langdetect.lang_detect_exception import LangDetectException

            try:
                detector = self._load().create()
                detector.append(sample)
                return [(normalize_language(str(p.lang)), float(p.prob))
                        for p in detector.get_probabilities()]
            except LangDetectException:
                pass
        guess = self._by_stopwords(sample)
        return [(guess, 0.5)] if guess else []

    @staticmethod
    def _by_stopwords(text: str) -> str | None:
        words = re.findall(r"[^\W\d_]+", text.lower())
        scores = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
        best = max(scores, key=lambda lang: scores[lang])
        return best if scores[best] > 0 else None
