"""Chat prompts: GGUF/catalog Jinja templates in a sandbox, or a plain completion format.

Templates come from model files, which may come from anyone, so they render in Jinja2's
``ImmutableSandboxedEnvironment`` with a budget: ``range`` iterations are counted, every loop
item, call, filter and output piece checks the wall clock, and everything that can multiply
its input (repetition, ``+``/``~``, format widths, ``replace``, ``join``, ``indent``, powers,
...) is sized before it runs; going over, or touching an unsafe attribute, raises
:class:`TemplateError`. tests/adversarial/test_hostile_templates.py attacks all of it.

Example::

    fmt = ChatFormat.from_template(tmpl, bos_token="<s>", eos_token="</s>")
    prompt = fmt.render([{"role": "user", "content": "Hi"}])
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from localloom.errors import TemplateError

__all__ = ["COMPLETION_STOPS", "ChatFormat", "RenderLimits"]

# Text a render may build along the way, in multiples of max_output_chars: a long document
# passes through a few filters (replace, trim, ...) before it is printed once.
_WORK_FACTOR = 16
# Filters that can multiply their input, sized before they run (see _filter_growth).
_GROWING_FILTERS = frozenset(
    {"indent", "wordwrap", "join", "tojson", "center", "replace", "format"})
# Filters whose result can repeat one item many times (their fill value).
_PADDING_FILTERS = frozenset({"batch", "slice"})

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
        self.produced = 0
        # Sizes of lists already measured (lists are immutable in the sandbox), so a list
        # that doubles in a loop is not walked again at every step.
        self.sizes: dict[int, tuple[Any, int]] = {}

    def tick(self, n: int = 1) -> None:
        self.iterations += n
        if self.iterations > self.limits.max_range_iterations:
            raise TemplateError(
                "The chat template loops too much and was stopped. Use a simpler template "
                "(catalog entry 'chat_template') or report the model."
            )
        self.check_time()

    def produce(self, chars: int) -> None:
        """Count text filters and str methods make: ``map`` can keep thousands of results.

        ``~`` and ``+`` are not counted: templates legitimately grow a string in a loop, and
        keeping many of their results alive needs a list, which ``+`` and ``*`` size.
        """
        self.produced += chars
        if self.produced > self.limits.max_output_chars * _WORK_FACTOR:
            raise TemplateError(
                "The chat template builds far more text than it outputs and was stopped. Use "
                "a simpler template (catalog entry 'chat_template') or report the model."
            )

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateError(
                f"The chat template took over {self.limits.max_seconds} s to render and was "
                "stopped. Use a simpler template (catalog entry 'chat_template')."
            )


# Output-multiplying str methods that no chat template needs.
_REFUSED_STR_METHODS = frozenset(
    {"center", "ljust", "rjust", "zfill", "expandtabs", "translate", "format_map", "maketrans"})
_PRINTF_WIDTH = re.compile(r"%[-+ #0]*(?:\d{7,}|\d*\.\d{7,})")  # '%1000000000s'
_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{7,}")  # '{:>1000000000}'


def _oversized(what: str) -> TemplateError:
    return TemplateError(f"The chat template {what} and was stopped. Use a simpler template "
                         "(catalog entry 'chat_template') or report the model.")


def _weight(value: Any, cap: int) -> int:
    """About how many characters ``value`` prints as (shared items counted each time)."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple | dict):
        total = len(value)
        for item in value.items() if isinstance(value, dict) else value:
            total += _weight(item, cap)
            if total > cap:
                break
        return total
    return 1


def _arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _text_growth(name: str, s: str, args: Sequence[Any], kwargs: dict[str, Any]) -> int:
    """Characters a str method or filter of that name can produce from ``s``, at most."""
    if name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        return len(s) + (s.count(old) if old else len(s) + 1) * len(new)
    if name == "join":  # s.join(items): items come from the call, s is the separator
        items = _arg(args, kwargs, 0, "iterable", ())
        return _weight(items, 1 << 62) + len(s) * len(items) if isinstance(items, Sized) else 0
    if name in ("format", "printf"):
        if _PRINTF_WIDTH.search(s) or _FORMAT_WIDTH.search(s):
            return 1 << 62
        return len(s) + (s.count("%") + s.count("{")) * (
            _weight(list(args), 1 << 62) + _weight(kwargs, 1 << 62))
    return len(s)


def _filter_growth(name: str, value: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> int:
    """What a built-in filter can produce at most, for the filters that multiply."""
    size = _weight(value, 1 << 62)
    if name == "indent":
        width = _arg(args, kwargs, 0, "width", 4)
        pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        return size + pad * (str(value).count("\n") + 1)
    if name == "wordwrap":
        width = max(1, int(_arg(args, kwargs, 0, "width", 79)))
        wrap = _arg(args, kwargs, 2, "wrapstring", "\n") or "\n"
        return size + len(str(wrap)) * (size // width + 1)
    if name == "join":
        sep = str(_arg(args, kwargs, 0, "d", ""))
        return size + len(sep) * (len(value) if isinstance(value, Sized) else size)
    if name == "tojson":
        indent = _arg(args, kwargs, 0, "indent", 0)
        return size * 6 + (indent if isinstance(indent, int) else 0) * size
    if name == "center":
        return max(size, int(_arg(args, kwargs, 0, "width", 80)))
    if name in ("replace", "format") and isinstance(value, str):
        return _text_growth(name if name == "replace" else "printf", value, args, kwargs)
    return size


class _GuardLoops(NodeTransformer):
    """Sends every for-loop's items and every ``~`` through the environment's budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [node.iter], [],
                               None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Call(nodes.EnvironmentAttribute("bounded_concat"), list(node.nodes), [],
                          None, None, lineno=node.lineno)


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """A sandbox whose loops, calls, filters and operators all answer to one budget.

    Every loop item, call and filter checks the clock; every operation that can multiply
    its input (repetition, ``+``/``~``, ``%``/``format`` widths, ``replace``, ``join``,
    ``indent``, powers, ...) is sized before it runs, since one C call cannot be interrupted.
    """

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, undefined=jinja2.Undefined)
        # Renders run on many caller threads at once; each has its own budget.
        self.local = threading.local()
        self.globals["range"] = self._range
        del self.globals["lipsum"]  # lipsum(10**6) writes 10**6 paragraphs; no template uses it

    @property
    def budget(self) -> _Budget:
        budget: _Budget = self.local.budget
        return budget

    @property
    def _limit(self) -> int:
        return self.budget.limits.max_output_chars

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        for fname, fn in list(self.filters.items()):  # filters registered after __init__ too
            if not getattr(fn, "_ll_bounded", False):
                self.filters[fname] = self._bounded_filter(fname, fn)
        tree: nodes.Template = _GuardLoops().visit(super()._parse(source, name, filename))
        return tree

    def _range(self, *args: int) -> Iterator[int]:
        budget = self.budget
        rng = range(*args)
        budget.tick(0)
        if len(rng) > budget.limits.max_range_iterations:
            budget.tick(len(rng))
        for i in rng:
            budget.tick()
            yield i

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """A for-loop's items, with the clock checked before each."""
        check = self.budget.check_time
        for item in iterable:
            check()
            yield item

    def bounded_concat(self, *parts: Any) -> str:
        """Jinja's ``~``, refusing results over the output limit."""
        texts = [str(p) for p in parts]
        size = sum(map(len, texts))
        if size > self._limit:
            raise _oversized("builds an oversized string")
        return "".join(texts)

    def _bounded_filter(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1  # context, value

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            budget, limit = self.budget, self._limit
            budget.check_time()
            value, rest = args[skip - 1] if args[skip - 1:] else None, args[skip:]
            if any(isinstance(a, int) and abs(a) > limit for a in (*rest, *kwargs.values())):
                raise _oversized(f"passes an oversized number to the '{name}' filter")
            if name in _GROWING_FILTERS and _filter_growth(name, value, rest, kwargs) > limit:
                raise _oversized(f"makes the '{name}' filter produce an oversized result")
            result = fn(*args, **kwargs)
            if isinstance(result, str):
                if len(result) > limit:
                    raise _oversized(f"makes the '{name}' filter produce an oversized result")
                budget.produce(len(result))
            elif name in _PADDING_FILTERS and isinstance(result, list | tuple) and (
                    _weight(result, limit) > limit):
                raise _oversized(f"makes the '{name}' filter produce an oversized result")
            return result

        run._ll_bounded = True  # type: ignore[attr-defined]
        return run

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _REFUSED_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise TemplateError(
            f"The chat template failed to render: it tried to use '{attribute}' of a "
            f"{type(obj).__name__}, which templates may not touch. Use the model's official "
            "template (catalog entry 'chat_template')."
        )

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self.budget.check_time()
        owner = getattr(__obj, "__self__", None)
        if owner is __self:  # bounded_iter, bounded_concat, range: bounded themselves
            kwargs.pop("_loop_vars", None)  # Jinja's bookkeeping, for Context.call only
            kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        limit = __self._limit
        # Constructors (dict, namespace, cycler, joiner) store numbers; functions size by them.
        if not isinstance(__obj, type) and any(
                isinstance(a, int) and abs(a) > limit for a in (*args, *kwargs.values())):
            raise _oversized("passes an oversized number to a function")
        if isinstance(owner, str) and _text_growth(
                getattr(__obj, "__name__", ""), owner, args, kwargs) > limit:
            raise _oversized("builds an oversized string")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str):
            __self.budget.produce(len(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = str(value.__self__)

        def bounded(*args: Any, **kwargs: Any) -> str:
            if _text_growth("format", fmt, args, kwargs) > self._limit:
                raise _oversized("formats an oversized string")
            out = wrapped(*args, **kwargs)
            self.budget.produce(len(out))
            return out

        return bounded

    def _size(self, seq: Any) -> int:
        if isinstance(seq, str):
            return len(seq)
        known = self.budget.sizes.get(id(seq))
        if known is not None and known[0] is seq:
            return known[1]
        size = _weight(seq, self._limit)
        self.budget.sizes[id(seq)] = (seq, size)
        return size

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        limit = self._limit
        seqs = (str, list, tuple)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, seqs) and isinstance(times, int) and (
                    self._size(seq) * times > limit
                ):
                    raise _oversized("builds an oversized string")
        elif operator == "+" and isinstance(left, seqs) and isinstance(right, seqs):
            size = self._size(left) + self._size(right)
            if size > limit:
                raise _oversized("builds an oversized string")
            result = super().call_binop(context, operator, left, right)
            if isinstance(result, list | tuple):
                self.budget.sizes[id(result)] = (result, size)
            return result
        elif operator == "%" and isinstance(left, str) and _text_growth(
                "printf", left, right if isinstance(right, tuple) else (right,), {}) > limit:
            raise _oversized("formats an oversized string")
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and (
                right > 1000 or abs(left).bit_length() * right > 1 << 16):
            raise _oversized("computes an oversized power")
        result = super().call_binop(context, operator, left, right)
        if operator == "%" and isinstance(result, str):
            self.budget.produce(len(result))
        return result


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
    # The names the template reads besides its own: "tools", "enable_thinking", ...
    variables: frozenset[str] = field(default=frozenset(), init=False)

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
                fmt.variables = frozenset(meta.find_undeclared_variables(
                    env.parse(fmt.template)))
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

    def render(self, messages: Sequence[dict[str, Any]],
               add_generation_prompt: bool = True, **variables: Any) -> str:
        """The prompt for ``messages`` (dicts with 'role' and 'content' strings, and
        'tool_calls' and the like where a template reads them); ``variables`` are further
        template inputs (``tools``, ``enable_thinking``)."""
        if self._compiled is None or self._env is None:
            return _completion_prompt(messages)
        self._env.local.budget = _Budget(self.limits)
        try:
            return self._render_bounded(messages, add_generation_prompt, variables)
        except TemplateError:
            raise
        except (jinja2.TemplateError, TypeError, ValueError, LookupError, AttributeError,
                ArithmeticError, RecursionError) as exc:
            raise TemplateError(
                f"The chat template failed to render: {exc}. Check the message roles and "
                "order, or set 'chat_template' in the catalog entry."
            ) from exc
        finally:
            self._env.local.budget = None

    def _render_bounded(self, messages: Sequence[dict[str, Any]],
                        add_generation_prompt: bool, variables: dict[str, Any]) -> str:
        assert self._compiled is not None and self._env is not None
        budget = self._env.budget
        parts: list[str] = []
        size = 0
        stream = self._compiled.generate(
            messages=list(messages), add_generation_prompt=add_generation_prompt,
            bos_token=self.bos_token, eos_token=self.eos_token, **variables,
        )
        for piece in stream:
            size += len(piece)
            if size > self.limits.max_output_chars:
                raise TemplateError("The chat template's output is oversized and was stopped.")
            budget.tick(0)
            parts.append(piece)
        return "".join(parts)


def _completion_prompt(messages: Sequence[dict[str, Any]]) -> str:
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
