"""Grammars from strangers: checked as text, then compiled where a crash costs nothing.

``response_format`` becomes a GBNF grammar (llama-cpp-python's JSON-schema converter), and
llama.cpp parses and runs it in C++. Three things went wrong with hostile schemas:

* a repetition bound becomes that many nested groups, and llama.cpp's parser recurses once
  per group: ``{0,30000}`` (however the schema spells it: ``30_000``, ``+30000``, ``,30000``)
  overflows the native stack and kills the process;
* a schema of thousands of bounded properties takes seconds and gigabytes to compile;
* an ``enum`` of thousands of strings makes every constrained token cost seconds, because the
  grammar is checked against every token of the vocabulary.

So :func:`check_gbnf` bounds the converter's own output (size, nesting, GBNF repetitions) —
whatever spelling produced it — and a :class:`GrammarChecker` compiles each new grammar once
in a child process that holds only the model's vocabulary, with a time limit, and measures
what constraining one token costs. A crash, a hang or a grammar too slow to sample is a 400
for that request; the server keeps running. Verdicts are cached by the grammar's hash.

Example::

    check_gbnf(gbnf)                             # InvalidRequestError if unsafe to parse
    GrammarChecker(model_path).check(gbnf)       # then compiled once in a child, or a 400
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from localloom.engine.probe import child_command, child_env, no_core_dumps
from localloom.errors import InvalidRequestError

__all__ = ["MAX_GRAMMAR_BYTES", "MAX_GRAMMAR_DEPTH", "GrammarChecker", "check_gbnf",
           "json_schema_grammar"]

# The largest repetition the schema guard admits is 1,000 nested groups; JSON structure adds
# a few dozen more. llama.cpp's parser crashed at about 20,000.
MAX_GRAMMAR_DEPTH = 1200
MAX_GRAMMAR_BYTES = 512 * 1024
MAX_REPEAT = 1000  # x{m,n} written in GBNF itself
COMPILE_TIMEOUT_S = 10.0
# Constraining one token, over the whole vocabulary, may cost this much; a grammar that costs
# more would stall every stream decoding beside it.
MAX_APPLY_S = 0.5
_CACHE = 256
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_STRICT_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def json_schema_grammar(schema: Any, *, where: str = "response_format.json_schema.schema",
                        param: str = "response_format") -> str:
    """The GBNF grammar of a JSON schema (llama-cpp-python's converter), checked and bounded.

    ``where``/``param`` name the schema in errors. Example::

        gbnf = json_schema_grammar({"type": "object", "properties": {"a": {"type": "string"}}})
    """
    from llama_cpp import llama_grammar

    from localloom.engine.guards import check_schema

    # Huge repetition bounds crash llama.cpp's grammar code (a native stack overflow).
    check_schema(schema, where=where, param=param)
    try:
        gbnf: str = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises bare Exceptions on bad schemas
        raise InvalidRequestError(
            f"'{where}' cannot be turned into a grammar: {exc}. Use a JSON Schema with types, "
            "properties, enums and bounded strings.", param=param) from exc
    # llama-cpp-python's converter lets raw control characters into strings, which JSON
    # forbids; llama.cpp's own converter excludes them, and so do we.
    gbnf = gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR)
    # The converter's own output is what llama.cpp parses: bound it, whatever spelling of a
    # bound in the schema produced it (30_000, +30000, {,30000} ...).
    check_gbnf(gbnf)
    return gbnf


def _refuse(what: str, fix: str) -> None:
    raise InvalidRequestError(f"The response_format grammar {what}. {fix}",
                              param="response_format")


def check_gbnf(gbnf: str) -> None:
    """Refuse a GBNF grammar that llama.cpp's parser could not survive or afford."""
    if len(gbnf.encode("utf-8")) > MAX_GRAMMAR_BYTES:
        _refuse(f"is {len(gbnf.encode('utf-8')) // 1024} KiB (the limit is "
                f"{MAX_GRAMMAR_BYTES // 1024} KiB)",
                "Use fewer properties, enum values or smaller bounds.")
    depth = deepest = 0
    i, n = 0, len(gbnf)
    while i < n:
        c = gbnf[i]
        if c == '"' or c == "[":
            i = _skip_literal(gbnf, i, '"' if c == '"' else "]")
            continue
        if c == "#":
            end = gbnf.find("\n", i)
            i = n if end < 0 else end
            continue
        if c == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif c == ")":
            depth -= 1
        elif c == "{":
            _check_repeat(gbnf, i)
        i += 1
    if deepest > MAX_GRAMMAR_DEPTH:
        _refuse(f"nests {deepest} groups (the limit is {MAX_GRAMMAR_DEPTH})",
                "Lower maxLength / maxItems / {m,n} bounds in the schema (at most 1000).")


def _skip_literal(text: str, start: int, close: str) -> int:
    """Index after a string literal or character class starting at ``start``."""
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == close:
            return i + 1
        i += 1
    return i


def _check_repeat(text: str, start: int) -> None:
    end = text.find("}", start)
    body = text[start + 1:end] if end > 0 else ""
    for part in body.split(","):
        part = part.strip()
        if part.isdigit() and int(part) > MAX_REPEAT:
            _refuse(f"repeats something {{{body}}} times (the limit is {MAX_REPEAT})",
                    "Lower the bound.")


class GrammarChecker:
    """Compiles grammars for one model in a long-lived child that holds only the vocabulary.

    Thread-safe; one check at a time per model (a grammar compiles in milliseconds; the lock
    keeps the child's pipe in order). A child that crashed or hung is replaced at the next
    check.
    """

    def __init__(self, model_path: Path, *, timeout: float = COMPILE_TIMEOUT_S,
                 max_apply_s: float = MAX_APPLY_S) -> None:
        self.model_path = model_path
        self.timeout = timeout
        self.max_apply_s = max_apply_s
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._verdicts: OrderedDict[str, str | None] = OrderedDict()  # hash -> refusal text

    def check(self, gbnf: str) -> None:
        """Raise :class:`InvalidRequestError` if ``gbnf`` crashes, hangs or is too slow.

        ``gbnf`` comes from the request models, which ran :func:`check_gbnf` on it."""
        key = hashlib.sha256(gbnf.encode("utf-8")).hexdigest()
        with self._lock:
            if key not in self._verdicts:
                self._verdicts[key] = self._trial(gbnf)
                while len(self._verdicts) > _CACHE:
                    self._verdicts.popitem(last=False)
            refusal = self._verdicts[key]
        if refusal is not None:
            raise InvalidRequestError(refusal, param="response_format")

    def _trial(self, gbnf: str) -> str | None:
        proc = self._child()
        assert proc.stdin is not None and proc.stdout is not None
        reply: dict[str, Any] = {}
        try:
            proc.stdin.write(json.dumps({"gbnf": gbnf}) + "\n")
            proc.stdin.flush()
            reply = _read_line(proc, self.timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            self._stop()
            if isinstance(exc, TimeoutError):
                return (f"The response_format grammar took over {self.timeout:.0f} s to compile "
                        "and was stopped. Simplify the JSON schema (fewer properties, smaller "
                        "bounds).")
            return ("The response_format grammar crashed llama.cpp's grammar compiler (caught "
                    "in a separate process). Simplify the JSON schema.")
        if not reply.get("ok"):
            return ("The response_format grammar could not be compiled for this model. "
                    "Simplify the JSON schema.")
        apply_s = float(reply.get("apply_s", 0.0))
        if apply_s > self.max_apply_s:
            return (f"The response_format grammar costs {apply_s * 1000:.0f} ms to constrain one "
                    f"token (the limit is {self.max_apply_s * 1000:.0f} ms): it would stall every "
                    "other request. Use fewer enum values or alternatives.")
        return None

    def _child(self) -> subprocess.Popen[str]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                child_command(Path(__file__), str(self.model_path)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                text=True, env=child_env(1))
        return self._proc

    def _stop(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None

    def close(self) -> None:
        """Stop the child."""
        with self._lock:
            self._stop()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The child's next reply, or TimeoutError / ValueError (it died)."""
    assert proc.stdout is not None
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise TimeoutError
    if not box or not box[0]:
        raise ValueError("the grammar child exited")
    return dict(json.loads(box[0]))


# --------------------------------------------------------------------------- the child side


def _child_main(model_path: str) -> None:
    import llama_cpp

    no_core_dumps()
    quiet = llama_cpp.llama_log_callback(lambda level, text, user: None)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(model_path.encode(), params)
    if not model:
        return
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
    data: Any = (llama_cpp.llama_token_data * n_vocab)()
    for line in sys.stdin:
        gbnf = json.loads(line)["gbnf"]
        t0 = time.perf_counter()
        sampler = llama_cpp.llama_sampler_init_grammar(vocab, gbnf.encode("utf-8"), b"root")
        compile_s = time.perf_counter() - t0
        reply: dict[str, Any] = {"ok": bool(sampler), "compile_s": compile_s}
        if sampler:
            for i in range(n_vocab):
                data[i].id, data[i].logit, data[i].p = i, 0.0, 0.0
            arr = llama_cpp.llama_token_data_array(data, n_vocab, -1, False)
            t0 = time.perf_counter()
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(arr))
            reply["apply_s"] = time.perf_counter() - t0
            llama_cpp.llama_sampler_free(sampler)
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _child_main(sys.argv[1])
