"""Schemathesis hooks for test_schemathesis.py (loaded through ``SCHEMATHESIS_HOOKS``).

The schema says a model is any string, so random names would only ever reach the 404 of
an unknown model. These hooks make the registered test model ("tiny") the valid choice
(the negative mode still sends other names), say what the server validates beyond the
schema (text-only content parts, token ids as ``logit_bias`` keys) so that generated
requests also run through the engine, and cap ``max_tokens`` so those generations stay
short. Everything else is left to schemathesis, invalid data included.
"""

from __future__ import annotations

from typing import Any

import schemathesis

MODEL = "tiny"
_REQUESTS = ("ChatCompletionRequest", "CompletionRequest")


@schemathesis.hook
def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
    """Offer the test model wherever a model is named; keep generations short."""
    schemas = raw_schema.get("components", {}).get("schemas", {})
    for name in _REQUESTS:
        request = schemas.get(name)
        if not request:
            continue
        props = request["properties"]
        # Valid data names the test model; invalid data (negative mode) names anything else.
        # ({"anyOf": [{"const": ...}, {"type": "string"}]} would be simplified to any string.)
        props["model"] = {"enum": [MODEL]}
        # What the server validates but the schema does not say: token ids as keys.
        props["logit_bias"] = {"anyOf": [{"type": "null"}, {
            "type": "object", "propertyNames": {"pattern": "^[0-9]{1,3}$"},
            "additionalProperties": {"type": "number", "minimum": -100, "maximum": 100}}]}
        props["max_tokens"] = {"type": "integer", "minimum": 1, "maximum": 32}
        request["required"] = sorted({*request.get("required", []), "model", "max_tokens"})
        if "max_completion_tokens" in props:
            props["max_completion_tokens"] = {"anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 32}, {"type": "null"}]}
    message = schemas.get("ChatMessage")
    if message:  # only text parts are supported; the schema allows any object
        message["properties"]["content"] = {"anyOf": [
            {"type": "string"}, {"type": "null"},
            {"type": "array", "items": {"type": "object", "required": ["type", "text"],
                                        "properties": {"type": {"const": "text"},
                                                       "text": {"type": "string"}}}}]}
    for path in raw_schema.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else ():
                if parameter.get("name") == "model_id":
                    parameter["schema"] = {"enum": [MODEL]}
