"""Help screens that read well at 80 columns.

Typer 0.2x prints a type beside every parameter (``--raw <bool>``, ``MODEL <str>``) and keeps
the docstring's line breaks, which the terminal then wraps again mid-sentence. Before the
command runs, :func:`tidy_help` walks the built command tree once: flags show no type,
options show a short placeholder (``N``, ``TEXT``, ``PATH``), arguments show their name
only, and each help paragraph is one line that the terminal wraps. It only sets public
fields (``metavar``, ``help``) and skips anything it does not recognise, so a Typer that
changes its internals prints its own defaults instead of failing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["tidy_help"]

_PLACEHOLDERS: dict[Any, str] = {int: "N", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _commands(command: Any) -> Iterator[Any]:
    yield command
    for sub in (getattr(command, "commands", None) or {}).values():
        yield from _commands(sub)


def _paragraphs(text: str) -> str:
    """Join the lines of each paragraph; keep blank lines and indented (literal) blocks."""
    blocks = re.split(r"\n\s*\n", inspect.cleandoc(text))
    out = []
    for block in blocks:
        if block.startswith(("\b", " ")) or "\n  " in block:
            out.append(block)  # an example or a list: its layout is meaningful
        else:
            out.append(" ".join(line.strip() for line in block.splitlines()))
    return "\n\n".join(out)


def _placeholder(param: Any) -> str:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for kind, name in _PLACEHOLDERS.items():
        if annotation is kind or (isinstance(annotation, type) and isinstance(kind, type)
                                  and issubclass(annotation, kind)):
            return name
    return "VALUE"


def _no_type(ctx: Any) -> None:
    return None


def _flag_help_option(cmd: Any) -> None:
    """``--help`` is made on demand, after the walk: give it no type when it is."""
    make = getattr(cmd, "get_help_option", None)
    if make is None:
        return

    def get_help_option(ctx: Any) -> Any:
        option = make(ctx)
        if option is not None and getattr(option, "metavar", "?") is None:
            option.metavar = ""
        return option

    cmd.get_help_option = get_help_option


def tidy_help(command: Any) -> Any:
    """Adjust the help of ``command`` and every subcommand in place; returns ``command``."""
    for cmd in _commands(command):
        if isinstance(getattr(cmd, "help", None), str):
            cmd.help = _paragraphs(cmd.help)
        _flag_help_option(cmd)
        for param in getattr(cmd, "params", []):
            kind = getattr(param, "param_type_name", "")
            if kind == "option" and getattr(param, "metavar", "?") is None:
                param.metavar = "" if getattr(param, "is_flag", False) else _placeholder(param)
            elif kind == "argument":
                if getattr(param, "metavar", "?") is None:
                    param.metavar = str(param.name).upper()
                if hasattr(param, "display_type_rich"):
                    param.display_type_rich = _no_type  # the name says what to give
    return command
