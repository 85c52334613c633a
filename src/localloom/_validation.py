"""The one formatter of pydantic validation errors into :class:`InvalidRequestError`.

Every boundary that validates a request (the engine's OpenAI requests, embeddings, the
Responses and Ollama APIs, FastAPI's own parameter checks) reports its first problem the
same way: ``Invalid 'messages[0].role': Input should be ... (got 'wizard').`` with
``param`` set to the top-level field, which is what clients (and OpenAI's own errors) key on.

Example::

    try:
        req = Model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors(), model=Model) from exc
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import annotated_types
from pydantic import BaseModel

from localloom.errors import InvalidRequestError

__all__ = ["invalid_request"]

# pydantic names the member of a union it tried in ``loc`` ('str', 'list[str]',
# 'function-after[...]'); those are not part of the field's path in the request.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none"})


def invalid_request(errors: Sequence[Mapping[str, Any]], *,
                    model: type[BaseModel] | None = None,
                    explain: Mapping[str, str] | None = None,
                    advice: str = "") -> InvalidRequestError:
    """The first of pydantic's ``errors`` as one :class:`InvalidRequestError`.

    ``model`` adds the allowed range of a bounded field and, for an unknown field, the
    supported ones; ``explain`` maps a top-level field to a sentence saying what it accepts
    (it wins over the range); ``advice`` ends every message (where to read more).
    """
    first: Mapping[str, Any] = errors[0] if errors else {}
    loc = [p for p in first.get("loc", ()) if not _is_type_tag(p)]
    field = str(loc[0]) if loc else None
    where = _path(loc) or "request body"
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
    if first.get("type") == "extra_forbidden":
        known = f" Supported fields: {', '.join(_fields(model))}." if model else ""
        text = f"Unknown field '{where[:80]}': LocalLoom does not support it.{known}"
    else:
        got = first.get("input")
        shown = f" (got {got!r:.60})" if isinstance(got, str | int | float | bool) else ""
        hint = (explain or {}).get(field or "") or _range_hint(model, field)
        text = f"Invalid '{where}': {msg}{shown}.{' ' + hint if hint else ''}"
    return InvalidRequestError(f"{text} {advice}".rstrip(), param=field)


def _is_type_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or "[" in part or "(" in part)


def _path(loc: Sequence[object]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _fields(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _range_hint(model: type[BaseModel] | None, field: str | None) -> str:
    info = model.model_fields.get(field) if model and field else None
    if info is None:
        return ""
    low = high = ""
    for m in info.metadata:
        if isinstance(m, annotated_types.Ge):
            low = f"{m.ge} <= "
        elif isinstance(m, annotated_types.Gt):
            low = f"{m.gt} < "
        elif isinstance(m, annotated_types.Le):
            high = f" <= {m.le}"
        elif isinstance(m, annotated_types.Lt):
            high = f" < {m.lt}"
    return f"Allowed range: {low}{field}{high}." if low or high else ""
