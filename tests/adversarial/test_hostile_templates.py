"""Hostile chat templates: sandbox escapes execute nothing, runaway templates stop in time.

Chat templates ship inside model files (llama-cpp-python's CVE-2024-34359 ran code from one).
Each template here renders through the engine's :class:`ChatFormat` in a spawned child process
with a hard timeout and a memory cap, so a template that hangs or eats memory fails its test
instead of the test run. Every one must end in :class:`TemplateError` within the renderer's
time bound (plus slack), and the canary file that escapes try to create must never appear.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_figures import Row, Section

HARD_TIMEOUT = 6.0  # the renderer promises 2 s; a child still busy at 6 s is hung
SLACK = 1.0  # the budget is checked between operations, not during one
MEMORY_HEADROOM = 512 << 20  # above the child's size after imports; a render needs far less
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
LEAK_MARKERS = ("<class", "<module", "<function", "<built-in", "<bound", "__", "os.", "Popen")

ESCAPES = {
    "str-class-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "attr-filter-walk": "{{ (''|attr('__class__')|attr('__mro__'))[1]|attr('__subclasses__')() }}",
    "attr-filter-chain-printed": "{{ ''|attr('__class__')|attr('__mro__') }}",
    "cycler-globals-os": "{{ cycler.__init__.__globals__.os.popen('touch @CANARY@').read() }}",
    "joiner-globals-os": "{{ joiner.__init__.__globals__.os.system('touch @CANARY@') }}",
    "namespace-builtins-import": "{{ namespace.__init__.__globals__['__builtins__']"
                                 "['__import__']('os').system('touch @CANARY@') }}",
    "lipsum-globals-os": "{{ lipsum.__globals__['os'].popen('touch @CANARY@').read() }}",
    "lipsum-subprocess": "{{ lipsum.__globals__.__builtins__.__import__('subprocess')"
                         ".run(['touch', '@CANARY@']) }}",
    "template-reference-context": "{{ self._TemplateReference__context }}",
    "template-reference-walk": "{{ self._TemplateReference__context.cycler.__init__"
                               ".__globals__.os.system('touch @CANARY@') }}",
    "self-init-globals": "{{ self.__init__.__globals__ }}",
    "loop-object-walk": "{% for m in messages %}{{ loop.__class__.__init__.__globals__ }}"
                        "{% endfor %}",
    "subclasses-popen": "{% for c in messages.__class__.__base__.__subclasses__() %}"
                        "{% if c.__name__ == 'Popen' %}{{ c(['touch', '@CANARY@']) }}{% endif %}"
                        "{% endfor %}",
    "raise-exception-globals": "{{ raise_exception.__globals__['os'].system('touch @CANARY@') }}",
    "strftime-globals": "{{ strftime_now.__globals__ }}",
    "range-function-globals": "{{ range.__func__.__globals__ }}",
    "format-method-walk": "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "percent-format-walk": "{{ '%s' % messages.__class__ }}",
    "dunder-by-item": "{{ messages['__class__'] }}",
    "generator-frame": "{{ (messages|map('string')).gi_frame.f_globals }}",
    "builtins-open": "{{ open('/etc/passwd').read() }}",
    "flask-style-config": "{{ config.__class__.__init__.__globals__['os']"
                          ".system('touch @CANARY@') }}",
    "import-tag": "{% import 'os' as os %}{{ os.system('touch @CANARY@') }}",
    "include-file": "{% include '/etc/passwd' %}",
    "append-to-messages": "{{ messages.append({'role': 'system', 'content': 'obey'}) }}",
    "update-a-message": "{{ messages[0].update({'content': 'obey'}) }}",
}

RUNAWAY_CPU = {
    "range-1e9": "{% for i in range(10**9) %}x{% endfor %}",
    "nested-range-loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}"
                          "{% endfor %}",
    "nested-list-loops": "{% set l = [1] * 100000 %}{% for a in l %}{% for b in l %}{% endfor %}"
                         "{% endfor %}",
    "nested-string-loops": "{% set s = 'ab' * 1000000 %}{% for a in s %}{% for b in s %}"
                           "{% endfor %}{% endfor %}",
    "sum-of-range": "{{ range(10**9)|sum }}",
    "recursive-macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "wide-recursive-macro": "{% macro f(n) %}{% if n < 40 %}{{ f(n + 1) }}{{ f(n + 1) }}"
                            "{% endif %}{% endmacro %}{{ f(0) }}",
    "recursive-loop": "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "divide-by-zero": "{{ 1 // 0 }}",
}
RUNAWAY_MEMORY = {
    "string-times-1e9": "{{ 'a' * 10**9 }}",
    "string-times-chained": "{% set s = 'a' * 1000000 %}{{ s * 1000 }}",
    "list-of-lists-times": "{{ [[1] * 100000] * 100000 }}",
    "doubling-tilde": "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                      "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "doubling-plus": "{% set ns = namespace(s='a') %}{% for i in range(64) %}"
                     "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "doubling-list": "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}"
                     "{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l }}",
    "center-filter-1e9": "{{ 'a'|center(10**9) }}",
    "indent-filter-1e9": "{{ 'a\nb'|indent(10**9) }}",
    "ljust-method-1e9": "{{ 'a'.ljust(10**9) }}",
    "format-filter-width": "{{ '%1000000000s'|format('a') }}",
    "percent-width": "{{ '%1000000000d' % 1 }}",
    "format-method-width": "{{ '{:>1000000000}'.format('a') }}",
    "replace-blowup": "{% set s = 'a' * 2000000 %}{{ s|replace('a', s) }}",
    "join-blowup": "{% set s = 'a' * 2000000 %}{{ (['x'] * 2000000)|join(s) }}",
    "batch-fill": "{{ [1]|batch(10**9, 0)|list }}",
    "power-tower": "{{ ((10 ** 1000) ** 1000) ** 1000 }}",
    "big-power": "{{ 2 ** 100000000 }}",
    "lipsum-paragraphs": "{{ lipsum(1000000) }}",
    "tojson-indent": "{{ messages|tojson(indent=3000000) }}",
    "many-big-pieces": "{% set s = 'a' * 3000000 %}{% for i in range(1000) %}"
                       "{% set t = s|replace('a', 'b') %}{% endfor %}",
    "map-center": "{{ (range(2000)|map('center', 3000000)|list)|length }}",
}
RUNAWAY = {**RUNAWAY_CPU, **RUNAWAY_MEMORY}

# Renderer gaps these tests find go here as name -> reason; each becomes a strict expected
# failure, so the fix that closes it must also remove it from this table.
PENDING: dict[str, str] = {}

THREATS = ("Sandbox escape", "Runaway CPU", "Runaway memory or output", "Mutating the caller")
SECTION = Section(
    "hostile_templates",
    "## Hostile chat templates",
    "Chat templates are Jinja code shipped inside model files (llama-cpp-python's "
    "CVE-2024-34359 executed one). The engine renders them in Jinja2's "
    "`ImmutableSandboxedEnvironment` with a budget (`localloom/engine/templates.py`). "
    "`tests/adversarial/test_hostile_templates.py` renders each hostile template in a child "
    "process with a hard timeout and a memory cap; escapes try to create a canary file.",
    (
        Row(THREATS[0], "Immutable sandbox: no `_`-attributes, no function globals, no "
            "imports or includes; unsafe access ends in `TemplateError`.",
            "`test_sandbox_escapes_execute_nothing_and_leak_nothing`, "
            "`test_sandbox_escapes_fail_with_a_template_error`"),
        Row(THREATS[1], "One budget per render: `range` iterations counted (200,000); the wall "
            "clock (2 s) checked at every loop item, call, filter and output piece; recursion "
            "and arithmetic errors end in `TemplateError`.",
            "`test_runaway_templates_stop_with_a_template_error_in_bounded_time`"),
        Row(THREATS[2], "Everything that multiplies its input is sized before it runs "
            "(repetition by printed size, `+`, `~`, `%`/`format` widths, `replace`, `join`, "
            "`indent`, `center`, `batch`, `tojson` indent, powers); `ljust`-style str methods "
            "and `lipsum` removed; output capped at 4 M chars.",
            "`test_runaway_templates_stop_with_a_template_error_in_bounded_time`"),
        Row(THREATS[3], "Immutable sandbox: `append`, `update`, `pop` refused.",
            "`test_sandbox_escapes_fail_with_a_template_error`"),
    ),
)


def _limit_child() -> None:
    try:
        import resource
    except ImportError:  # not POSIX: the hard timeout still applies
        return
    from localloom.engine import templates  # noqa: F401  (imports count toward the base size)

    with open("/proc/self/statm") as f:
        base = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (base + MEMORY_HEADROOM, base + MEMORY_HEADROOM))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _render_in_child(template: str,
                     messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Runs in the child: render and describe what happened (never raises)."""
    from localloom.engine.templates import ChatFormat
    from localloom.errors import TemplateError

    start = time.monotonic()
    try:
        fmt = ChatFormat.from_template(template, bos_token="<s>", eos_token="</s>")
        out = fmt.render([dict(m) for m in messages or MESSAGES])
        limit = fmt.limits.max_output_chars
        return {"outcome": "rendered", "seconds": time.monotonic() - start,
                "size": len(out), "limit": limit, "head": out[:300], "tail": out[-300:]}
    except TemplateError as exc:
        return {"outcome": "TemplateError", "seconds": time.monotonic() - start,
                "message": str(exc)[:300]}
    except BaseException as exc:  # reported to the test, which fails on it
        return {"outcome": type(exc).__name__, "seconds": time.monotonic() - start,
                "message": str(exc)[:300]}


class ChildRenderer:
    """A one-process pool rebuilt after each hang, so one bad template cannot block others."""

    def __init__(self) -> None:
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: multiprocessing.pool.Pool | None = None
        self.results: dict[str, dict[str, Any]] = {}

    def _ready_pool(self) -> multiprocessing.pool.Pool:
        if self._pool is None:
            self._pool = self._ctx.Pool(1, initializer=_limit_child)
            # Start-up (imports) takes seconds on a busy machine; not part of any render.
            self._pool.apply_async(_render_in_child, ("{{ 1 }}",)).get(timeout=300)
        return self._pool

    def render(self, name: str, template: str,
               messages: list[dict[str, str]] | None = None) -> dict[str, Any]:
        pending = self._ready_pool().apply_async(_render_in_child, (template, messages))
        start = time.monotonic()
        try:
            result = pending.get(timeout=HARD_TIMEOUT)
        except multiprocessing.TimeoutError:
            result = {"outcome": "hung", "seconds": time.monotonic() - start}
            self.close()
        self.results[name] = result
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


@pytest.fixture(scope="module")
def renderer() -> Iterator[ChildRenderer]:
    r = ChildRenderer()
    yield r
    r.close()
    _record(r.results)


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary") / "CANARY"


def _pending(cases: dict[str, str]) -> list[Any]:
    return [pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=PENDING[name]))
            if name in PENDING else name for name in cases]


@pytest.mark.parametrize("name", list(ESCAPES))
def test_sandbox_escapes_execute_nothing_and_leak_nothing(
        name: str, renderer: ChildRenderer, canary: Path) -> None:
    result = renderer.render(name, ESCAPES[name].replace("@CANARY@", str(canary)))
    assert not canary.exists(), f"{name} executed code"
    assert result["outcome"] in ("TemplateError", "rendered"), result
    if result["outcome"] == "rendered":
        assert not any(m in result["head"] for m in LEAK_MARKERS), result
        assert result["size"] <= result["limit"]


@pytest.mark.parametrize("name", _pending(ESCAPES))
def test_sandbox_escapes_fail_with_a_template_error(
        name: str, renderer: ChildRenderer, canary: Path) -> None:
    result = renderer.results.get(name) or renderer.render(
        name, ESCAPES[name].replace("@CANARY@", str(canary)))
    assert result["outcome"] == "TemplateError", result
    assert not canary.exists()


@pytest.mark.parametrize("name", _pending(RUNAWAY))
def test_runaway_templates_stop_with_a_template_error_in_bounded_time(
        name: str, renderer: ChildRenderer) -> None:
    result = renderer.render(name, RUNAWAY[name])
    assert result["outcome"] == "TemplateError", result
    assert result["seconds"] < 2.0 + SLACK, result


def test_an_ordinary_template_still_renders_quickly(renderer: ChildRenderer) -> None:
    from localloom.testing.gguf import CHATML_TEMPLATE

    result = renderer.render("chatml", CHATML_TEMPLATE)
    assert result["outcome"] == "rendered", result
    assert result["head"].startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert result["seconds"] < 0.5


REALISTIC = (  # the features real chat templates use, with the renderer's bounds in place
    "{% set ns = namespace(system='', n=0) %}"
    "{% for m in messages %}{% if m['role'] == 'system' %}{% set ns.system = m['content'] %}"
    "{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}"
    "{{ bos_token }}{% if ns.system %}{{ '<<SYS>>' ~ ns.system|trim ~ '<</SYS>>' }}{% endif %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "{{ '[' ~ m['role']|upper ~ ' ' ~ loop.index ~ '/' ~ loop.length ~ '] ' }}"
    "{{ m['content']|replace('word', 'w')|trim }}{% if not loop.last %} | {% endif %}"
    "{% endfor %}{{ ' roles=' ~ (messages|map(attribute='role')|join(',')) }}"
    "{% set ids = namespace(first=1700000000) %}"
    "{{ ' first=' ~ messages[1]|tojson }}{{ ' %d turns' % ns.n }}{{ ' id-' ~ ids.first }}"
)


def test_a_realistic_template_renders_a_million_character_message_quickly(
        renderer: ChildRenderer) -> None:
    big = "word " * 200_000  # a long document to summarize
    messages = [*MESSAGES, {"role": "assistant", "content": "Sure."},
                {"role": "user", "content": big}]
    result = renderer.render("realistic", REALISTIC, messages)
    assert result["outcome"] == "rendered", result
    assert result["head"].startswith("<s><<SYS>>Be brief.<</SYS>>[USER 1/3] Hi | [ASSISTANT 2/3]")
    assert result["tail"].endswith(
        ' roles=system,user,assistant,user first={"role": "user", "content": "Hi"} 4 turns '
        "id-1700000000")
    assert result["size"] > 400_000
    assert result["seconds"] < 1.0


def _tally(rs: list[dict[str, Any]]) -> str:
    counts = Counter(r["outcome"] for r in rs)
    stopped = counts.pop("TemplateError", 0)
    rest = ", ".join(f"{n} {'hung (killed at 6 s)' if o == 'hung' else o}"
                     for o, n in sorted(counts.items()))
    return f"{stopped}/{len(rs)} stopped with TemplateError" + (f"; {rest}" if rest else "")


def _record(results: dict[str, dict[str, Any]]) -> None:
    if not set(ESCAPES) | set(RUNAWAY) <= set(results):
        return  # a partial run (-k) does not overwrite the figures
    escapes = [results[n] for n in ESCAPES]
    stopped = [r for r in results.values() if r["outcome"] == "TemplateError"]
    pending = f" Renderer gaps still open: {len(PENDING)} (PENDING in the test)." if PENDING else ""
    SECTION.record({
        THREATS[0]: f"{len(escapes)} escape templates: 0 executed (the canary never appeared); "
                    f"{_tally(escapes)} (and printed nothing: no leak).{pending}",
        THREATS[1]: f"{len(RUNAWAY_CPU)} loops, recursions and errors: "
                    f"{_tally([results[n] for n in RUNAWAY_CPU])}; slowest stop "
                    f"{max((r['seconds'] for r in stopped), default=0):.2f} s.",
        THREATS[2]: f"{len(RUNAWAY_MEMORY)} oversized string, list, power, format and filter "
                    f"templates, child capped at +512 MiB: "
                    f"{_tally([results[n] for n in RUNAWAY_MEMORY])}.",
        THREATS[3]: "append and update on the messages: "
                    f"{_tally([results['append-to-messages'], results['update-a-message']])}.",
    })
