"""Chat prompts: GGUF/catalog Jinja templates in a sandbox, or a plain completion format.

Templates come from model files, which may come from anyone, so they render in Jinja2's
``ImmutableSandboxedEnvironment`` with a budget: loop iterations through ``range``, the size
of multiplied strings and of the output, and wall-clock time are all bounded; going over
raises :class:`TemplateError`.

Example::

    fmt = ChatFormat.from_template(tmpl, bos_token="<s>", eos_token="</s>")
    prompt = fmt.render([{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from localloom.errors import TemplateError

__all__ = ["COMPLETION_STOPS", "ChatFormat", "RenderLimits"]

# A base model continues the transcript; these end its turn.
COMPLETION_STOPS: tuple[str, ...] = ("\nUser:", "\nAssistant:", "\n\n")


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one template render."""

    max_seconds: float = 2.0
    max_range_iterations: int = 200_000
    max_output_chars: int = 4_000_000


class _Budget:
    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.iterations = 0

    def tick(self, n: int = 1) -> None:
        self.iterations += n
        if self.iterations > self.limits.max_range_iterations:
            raise TemplateError(
                "The chat template loops too much and was stopped. Use a simpler template "
                "(catalog entry 'chat_template') or report the model."
            )
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"The chat template took over {self.limits.max_seconds} s to render and was "
                "stopped. Use a simpler template (catalog entry 'chat_template')."
            )


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Counts ``range`` iterations and refuses huge string/list repetition."""

    intercepted_binops = frozenset(["*", "**"])

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
        # Renders run on many caller threads at once; each has its own budget.
        self.local = threading.local()
        self.globals["range"] = self._range

    @property
    def budget(self) -> _Budget:
        budget: _Budget = self.local.budget
        return budget

    def _range(self, *args: int) -> Iterator[int]:
        budget = self.budget
        rng = range(*args)
        budget.tick(0)
        if len(rng) > budget.limits.max_range_iterations:
            budget.tick(len(rng))
        for i in rng:
            budget.tick()
            yield i

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self.budget.limits.max_output_chars
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and (
                    len(seq) * times > limit
                ):
                    raise TemplateError("The chat template builds an oversized string.")
        if operator == "**" and isinstance(right, int) and right > 1000:
            raise TemplateError("The chat template computes an oversized power.")
        return super().call_binop(context, operator, left, right)


def _raise_exception(message: str) -> NoReturn:
    raise TemplateError(f"The chat template refused the conversation: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, indent: int | None = None, separators: tuple[str, str] | None = None,
            sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    """Hugging Face's ``tojson``: plain JSON, not Jinja's HTML-escaped variant."""
    return json.dumps(value, indent=indent, separators=separators, sort_keys=sort_keys,
                      ensure_ascii=ensure_ascii)


@dataclass
class ChatFormat:
    """Turns messages into one prompt string, plus stop strings the format implies."""

    template: str | None
    bos_token: str = ""
    eos_token: str = ""
    limits: RenderLimits = field(default_factory=RenderLimits)
    _compiled: jinja2.Template | None = field(default=None, init=False, repr=False)
    _env: _BoundedEnvironment | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_template(cls, template: str | None, *, bos_token: str = "",
                      eos_token: str = "", limits: RenderLimits | None = None) -> ChatFormat:
        """A Jinja chat format, or the completion format when ``template`` is None/empty."""
        fmt = cls(template or None, bos_token, eos_token, limits or RenderLimits())
        if fmt.template is not None:
            env = fmt._env = _BoundedEnvironment()
            env.globals["raise_exception"] = _raise_exception
            env.globals["strftime_now"] = _strftime_now
            env.filters["tojson"] = _tojson
            try:
                fmt._compiled = env.from_string(fmt.template)
            except jinja2.TemplateError as exc:
                raise TemplateError(
                    f"The model's chat template does not compile: {exc}. Set 'chat_template' "
                    "in the catalog entry to a working one."
                ) from exc
        return fmt

    @property
    def is_completion_style(self) -> bool:
        """True for base models: a plain "User:/Assistant:" transcript."""
        return self._compiled is None

    @property
    def stops(self) -> tuple[str, ...]:
        """Stop strings implied by the format (the template's own end tokens are EOG)."""
        return COMPLETION_STOPS if self.is_completion_style else ()

    def render(self, messages: Sequence[dict[str, str]],
               add_generation_prompt: bool = True) -> str:
        """The prompt for ``messages`` (dicts with 'role' and 'content' strings)."""
        if self._compiled is None or self._env is None:
            return _completion_prompt(messages)
        self._env.local.budget = _Budget(self.limits)
        try:
            return self._render_bounded(messages, add_generation_prompt)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as exc:
            raise TemplateError(
                f"The chat template failed to render: {exc}. Check the message roles and "
                "order, or set 'chat_template' in the catalog entry."
            ) from exc
        finally:
            self._env.local.budget = None

    def _render_bounded(self, messages: Sequence[dict[str, str]],
                        add_generation_prompt: bool) -> str:
        assert self._compiled is not None and self._env is not None
        budget = self._env.budget
        parts: list[str] = []
        size = 0
        stream = self._compiled.generate(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token, eos_token=self.eos_token,
        )
        for piece in stream:
            size += len(piece)
            if size > self.limits.max_output_chars:
                raise TemplateError("The chat template's output is oversized and was stopped.")
            budget.tick(0)
            parts.append(piece)
        return "".join(parts)


def _completion_prompt(messages: Sequence[dict[str, str]]) -> str:
    """A transcript a base model continues: system text, then User:/Assistant: turns."""
    lines: list[str] = []
    for m in messages:
        role, content = m["role"], m["content"].strip()
        if role in ("system", "developer"):
            lines.append(content + "\n")
        elif role == "assistant":
            lines.append(f"Assistant: {content}")
        else:
            lines.append(f"User: {content}")
    return "\n".join(lines) + "\nAssistant:"
