"""The OpenAI wire: request models (validated, with every default defined once) and responses.

Requests convert to internal :class:`SamplingParams` with ``to_sampling_params()``; an
out-of-range value raises :class:`InvalidRequestError` naming the field and its range.
Responses have OpenAI's exact shape, so ``openai.types.chat.ChatCompletion.model_validate(
r.model_dump())`` accepts them.

Unknown fields are refused, never silently dropped: a field that would change the answer and
is not built (``functions``, ``num_ctx``...) is a 400 naming it. Tools (``tools``,
``tool_choice``, ``parallel_tool_calls``) and reasoning (``reasoning_effort``) are built: see
:mod:`localloom.engine.tools`. Only the OpenAI fields in
:data:`IGNORED_FIELDS`, which change nothing about the answer, are accepted and ignored.

Example::

    req = ChatCompletionRequest.parse({"messages": [{"role": "user", "content": "Hi"}],
                                       "temperature": 0.2})
    params = req.to_sampling_params()
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, TypedDict, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

from localloom._validation import invalid_request
from localloom.engine.params import SamplingParams
from localloom.engine.tools.protocol import (
    DeltaToolCall,
    ReasoningEffort,
    ToolCall,
    ToolChoice,
    ToolDefinition,
)
from localloom.errors import InvalidRequestError

__all__ = [
    "IGNORED_FIELDS",
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "ChatParams",
    "ChoiceLogprobs",
    "ChunkChoice",
    "ChunkDelta",
    "Completion",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionParams",
    "CompletionRequest",
    "FinishReason",
    "JsonSchemaFormat",
    "PromptTokensDetails",
    "ResponseFormat",
    "StreamOptions",
    "TokenLogprob",
    "TopLogprob",
    "Usage",
    "parse_keep_alive",
]

FinishReason = Literal["stop", "length", "tool_calls"]
MAX_STOP_STRINGS = 16
MAX_N = 16

_R = TypeVar("_R", bound="_RequestBase")

# OpenAI request fields that change nothing about the answer: accepted and ignored (the
# README lists them). Every other field a request model does not declare is refused.
IGNORED_FIELDS: Final[frozenset[str]] = frozenset({
    "user",                 # an end-user id for abuse monitoring
    "safety_identifier",    # its successor
    "store",                # keep the completion on OpenAI's servers
    "metadata",             # tags for stored completions
    "service_tier",         # OpenAI's processing tier
    "prompt_cache_key",     # a routing hint for OpenAI's prompt cache
})

# Fields refused unless they carry the value LocalLoom behaves as anyway.
_NEUTRAL_VALUES: Final[Mapping[str, tuple[object, ...]]] = {
    "functions": (None, []),
    "function_call": (None, "none"),
    "modalities": (None, ["text"]),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
}

# What a field accepts, where pydantic's own message does not say it.
_EXPLAIN: Final[Mapping[str, str]] = {
    "logit_bias": "Allowed: token ids mapped to biases from -100 to 100."}

_TOOLS = ("The deprecated '{0}' field is not supported: send the functions as 'tools' "
          "([{{\"type\": \"function\", \"function\": {{...}}}}]) and 'tool_choice' instead.")
_NOT_SUPPORTED: Final[Mapping[str, str]] = {
    "functions": _TOOLS, "function_call": _TOOLS,
    "num_ctx": "'num_ctx' is not supported per request: the context size is fixed when a "
               "model loads. Set LOCALLOOM_N_CTX for the server (Settings(n_ctx=...) in the "
               "library).",
    "options": "Ollama's 'options' object is not supported. Send its sampling fields "
               "(temperature, top_p, top_k, seed, stop, ...) at the top level of the body.",
    "modalities": "Only text output is supported: leave out '{0}' or send [\"text\"].",
    "audio": "Audio output ('{0}') is not supported: only text is.",
    "echo": "'echo' is not supported: the answer never repeats the prompt. Leave it out.",
    "best_of": "'best_of' is not supported. Use 'n' to get several answers.",
    "suffix": "'suffix' (fill-in-the-middle) is not supported. Leave it out.",
    "prediction": "Predicted outputs ('prediction') are not supported. The LocalLoom "
                  "extension \"prompt_lookup\": true guesses ahead from the prompt instead.",
}
_GO_DURATION = re.compile(r"(?:(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s))")
_DURATION_UNITS: Final[Mapping[str, float]] = {
    "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_keep_alive(value: object) -> float | None:
    """Ollama's ``keep_alive`` as seconds: a number, a numeric string or a Go duration
    ("5m", "1h30m", "-1m"); 0 means unload after the answer, negative means never (-1.0).

    Example::

        parse_keep_alive("1h30m") == 5400.0; parse_keep_alive(-5) == -1.0  # also "inf"
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected seconds (300) or a duration such as '5m' or '1h30m'")
    seconds = _duration(value.strip()) if isinstance(value, str) else float(value)
    if math.isnan(seconds):
        raise ValueError("expected a number of seconds, not NaN")
    return -1.0 if seconds < 0 or math.isinf(seconds) else seconds


def _duration(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if not body or _GO_DURATION.sub("", body):
        raise ValueError(f"{text!r} is not a duration: send seconds (300) or a duration "
                         "such as '5m', '1h30m' or '-1' (never unload)")
    return sign * sum(float(n) * _DURATION_UNITS[u] for n, u in _GO_DURATION.findall(body))


_KeepAlive = Annotated[
    float | None, BeforeValidator(parse_keep_alive),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
                    "description": "Seconds or a duration ('5m'); 0 unloads the model after "
                                   "the answer, negative keeps it loaded."}),
]


def _screen(cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` without the ignored fields; any field neither declared nor ignored is an
    :class:`InvalidRequestError` naming it and saying what to do."""
    known = {f.alias or name for name, f in cls.model_fields.items()}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if key in known:
            kept[key] = value
        elif key in IGNORED_FIELDS or any(value == v for v in _NEUTRAL_VALUES.get(key, ())):
            continue
        elif key in _NOT_SUPPORTED:
            raise InvalidRequestError(_NOT_SUPPORTED[key].format(key), param=key)
        else:
            raise InvalidRequestError(_unknown_field(key[:80], known), param=key[:80])
    return kept


def _unknown_field(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return (f"Unknown field '{key}': LocalLoom does not support it.{hint} Supported fields: "
            f"{', '.join(sorted(known))}; accepted and ignored: "
            f"{', '.join(sorted(IGNORED_FIELDS))}.")


# --------------------------------------------------------------------------- requests


class ChatMessage(BaseModel):
    """One message of a conversation; ``content`` may be a string or a list of text parts.

    An assistant message may carry the ``tool_calls`` it made; a ``tool`` message answers
    one of them (``tool_call_id``)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @model_validator(mode="after")
    def _text_parts_only(self) -> ChatMessage:
        if isinstance(self.content, list):
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError(
                        "only text content parts ({'type': 'text', 'text': ...}) are supported"
                    )
        return self

    def text(self) -> str:
        """The message's text, with list-of-parts content joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(str(part["text"]) for part in self.content)


class JsonSchemaFormat(BaseModel):
    """``response_format.json_schema``: the schema the output must validate against."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """``{"type": "text" | "json_object" | "json_schema", "json_schema": {...}}``."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_present(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object with a 'schema'")
        return self


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a final chunk with token counts."""

    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


_Bias = Annotated[float, Field(ge=-100, le=100)]


def _document_ignored(schema: dict[str, Any]) -> None:
    props = schema.setdefault("properties", {})
    for name in sorted(IGNORED_FIELDS):
        props.setdefault(name, {"description": "An OpenAI field LocalLoom accepts and ignores."})


class _RequestBase(BaseModel):
    """Fields shared by chat and text completions. Defaults are llama.cpp's tuned values:
    small local models ramble at OpenAI's temperature 1 without any truncation.

    Undeclared fields are refused (:meth:`parse` names them), except :data:`IGNORED_FIELDS`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_ignored)

    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float = Field(default=0.8, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    top_k: int = Field(default=40, ge=0, le=1000)
    min_p: float = Field(default=0.05, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    repetition_penalty: float = Field(default=1.0, gt=0, le=2)
    logit_bias: dict[int, _Bias] | None = None
    response_format: ResponseFormat | None = None
    # LocalLoom extension (``extra_body`` in OpenAI's client): the answer copies much of the
    # prompt (a rewrite, a summary), so guessing ahead from the prompt may pay off.
    prompt_lookup: bool = False
    # LocalLoom extension: decode this request alone, from an empty cache, without prompt
    # lookup, so the same seeded request gives the same text even under concurrency
    # (None: the server's LOCALLOOM_DETERMINISTIC setting).
    deterministic: bool | None = None
    # LocalLoom extension, Ollama's: how long the server keeps the model loaded after this
    # request, in seconds (None: LOCALLOOM_KEEP_ALIVE). The library refuses it: there a
    # model stays loaded until ``engine.unload()``.
    keep_alive: _KeepAlive = None

    @classmethod
    def parse(cls: type[_R], data: dict[str, Any]) -> _R:
        """Validate a request body; errors become :class:`InvalidRequestError`.

        Fields in :data:`IGNORED_FIELDS` are dropped; any other undeclared field is refused.
        """
        try:
            req = cls.model_validate(_screen(cls, data))
        except ValidationError as exc:
            raise invalid_request(exc.errors(), model=cls, explain=_EXPLAIN) from exc
        req._check()
        return req

    def _check(self) -> None:
        stops = self.stop_strings()
        if len(stops) > MAX_STOP_STRINGS:
            raise InvalidRequestError(
                f"'stop' has {len(stops)} strings; at most {MAX_STOP_STRINGS} are allowed.",
                param="stop",
            )
        if any(not s for s in stops):
            raise InvalidRequestError("'stop' strings must not be empty.", param="stop")
        if self.stream_options is not None and not self.stream:
            raise InvalidRequestError(
                "'stream_options' is only allowed when 'stream' is true.", param="stream_options"
            )

    def stop_strings(self) -> tuple[str, ...]:
        """``stop`` as a tuple (a single string becomes a 1-tuple)."""
        if self.stop is None:
            return ()
        if isinstance(self.stop, str):
            return (self.stop,)
        return tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        """Whether a stream ends with a usage chunk."""
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def _grammar(self) -> str | None:
        from localloom.engine.grammar import json_schema_grammar

        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            from llama_cpp import llama_grammar

            return str(llama_grammar.JSON_GBNF)
        assert fmt.json_schema is not None
        return json_schema_grammar(fmt.json_schema.schema_)

    def _sampling(self, *, max_tokens: int | None, logprobs: bool,
                  top_logprobs: int) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            max_tokens=max_tokens,
            stop=self.stop_strings(),
            seed=self.seed,
            n=self.n,
            logprobs=logprobs,
            top_logprobs=top_logprobs,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            repetition_penalty=self.repetition_penalty,
            logit_bias=tuple(sorted((self.logit_bias or {}).items())),
            grammar=self._grammar(),
            prompt_lookup=self.prompt_lookup,
            deterministic=self.deterministic,
        )


class ChatCompletionRequest(_RequestBase):
    """``POST /v1/chat/completions`` body (and ``engine.chat.completions.create`` kwargs)."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # "none" turns thinking off where the chat template has a switch (Qwen3's
    # enable_thinking); the other values turn it on and reach templates that read them.
    reasoning_effort: ReasoningEffort | None = None

    def _check(self) -> None:
        super()._check()
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequestError(
                "'top_logprobs' needs 'logprobs' set to true.", param="top_logprobs"
            )
        self._check_tools()

    def _check_tools(self) -> None:
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise InvalidRequestError("Two tools in 'tools' have the same name; give each "
                                      "function its own name.", param="tools")
        choice = self.tool_choice
        if choice in (None, "none", "auto"):
            return
        if not names:
            raise InvalidRequestError(
                "'tool_choice' asks for a tool call but 'tools' is empty. Send the functions "
                "in 'tools', or leave out 'tool_choice'.", param="tool_choice")
        if not isinstance(choice, str) and choice.function.name not in names:
            raise InvalidRequestError(
                f"'tool_choice' names the function '{choice.function.name[:64]}', which is not "
                f"in 'tools' ({', '.join(names)}).", param="tool_choice")

    @property
    def uses_tools(self) -> bool:
        """Whether the model is offered tools (``tool_choice`` "none" offers none)."""
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def forced_tool(self) -> str | None:
        """The function ``tool_choice`` names, "" for "required", None if the model chooses."""
        choice = self.tool_choice
        if not self.uses_tools or choice is None or choice == "auto":
            return None
        return "" if choice == "required" else choice.function.name  # type: ignore[union-attr]

    def to_sampling_params(self) -> SamplingParams:
        """The internal parameters for the scheduler."""
        limit = self.max_completion_tokens if self.max_completion_tokens else self.max_tokens
        return self._sampling(max_tokens=limit, logprobs=self.logprobs,
                              top_logprobs=self.top_logprobs or 0)


class CompletionRequest(_RequestBase):
    """``POST /v1/completions`` body. ``logprobs`` is the legacy integer (top-k per token)."""

    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=20)

    def _check(self) -> None:
        super()._check()
        if isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise InvalidRequestError(
                "'prompt' must be one string (a list of exactly one string is accepted).",
                param="prompt",
            )

    @property
    def prompt_text(self) -> str:
        """The prompt as one string."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_sampling_params(self) -> SamplingParams:
        """The internal parameters for the scheduler."""
        return self._sampling(max_tokens=self.max_tokens, logprobs=self.logprobs is not None,
                              top_logprobs=self.logprobs or 0)


class _CommonParams(TypedDict, total=False):
    model: str | None
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    max_tokens: int | None
    stop: str | list[str] | None
    seed: int | None
    n: int
    response_format: dict[str, Any] | ResponseFormat | None
    stream_options: dict[str, Any] | StreamOptions | None
    frequency_penalty: float
    presence_penalty: float
    repetition_penalty: float
    logit_bias: dict[int, float] | dict[str, float] | None
    prompt_lookup: bool
    deterministic: bool | None


class ChatParams(_CommonParams, total=False):
    """Keyword arguments of ``engine.chat.completions.create`` besides messages/stream."""

    max_completion_tokens: int | None
    logprobs: bool
    top_logprobs: int | None
    tools: list[dict[str, Any]] | list[ToolDefinition] | None
    tool_choice: str | dict[str, Any] | None
    parallel_tool_calls: bool | None
    reasoning_effort: str | None


class CompletionParams(_CommonParams, total=False):
    """Keyword arguments of ``engine.completions.create`` besides prompt/stream."""

    logprobs: int | None


# -------------------------------------------------------------------------- responses


class PromptTokensDetails(BaseModel):
    """``cached_tokens``: prompt tokens whose KV cache was reused from an earlier request."""

    cached_tokens: int = 0


class Usage(BaseModel):
    """Token counts of one request (all choices together)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class TopLogprob(BaseModel):
    """One alternative token at a position."""

    token: str
    bytes: list[int] | None = None
    logprob: float


class TokenLogprob(TopLogprob):
    """The chosen token at a position, with the most likely alternatives."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    """Per-token log probabilities of a chat choice."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


def _drop_unset_extras(handler: SerializerFunctionWrapHandler, model: BaseModel,
                       keys: tuple[str, ...]) -> dict[str, Any]:
    # tool_calls and reasoning_content appear only when there are some, as in OpenAI's own
    # answers (and the openai SDK's stream helper merges deltas key by key).
    data: dict[str, Any] = handler(model)
    for key in keys:
        if data.get(key) is None:
            data.pop(key, None)
    return data


class AssistantMessage(BaseModel):
    """The generated message of a chat choice: its text, the reasoning the model wrote
    before it (``reasoning_content``) and the tools it called."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_unset_extras(handler, self, ("reasoning_content", "tool_calls"))


class ChatChoice(BaseModel):
    """One of the ``n`` answers."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChoiceLogprobs | None = None


class _ResponseBase(BaseModel):
    id: str
    created: int
    model: str
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChatCompletion(_ResponseBase):
    """A whole chat answer, OpenAI's ``chat.completion`` object."""

    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class ChunkDelta(BaseModel):
    """New text, reasoning or tool-call pieces of one choice since the previous chunk."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None

    @model_serializer(mode="wrap")
    def _serialize(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _drop_unset_extras(handler, self, ("reasoning_content", "tool_calls"))


class ChunkChoice(BaseModel):
    """One choice's part of a stream chunk."""

    index: int
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_ResponseBase):
    """One streamed piece, OpenAI's ``chat.completion.chunk`` object."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionLogprobs(BaseModel):
    """Legacy completions logprobs: parallel lists, one entry per token."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float] = Field(default_factory=list)
    top_logprobs: list[dict[str, float]] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    """One text completion; ``finish_reason`` is None only on intermediate stream chunks."""

    index: int
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(_ResponseBase):
    """OpenAI's ``text_completion`` object (the same shape when streamed)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]
