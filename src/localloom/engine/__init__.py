"""The inference engine: OpenAI-compatible generation on llama.cpp, batched per model.

Example::

    from localloom.engine import Engine
    with Engine() as engine:
        engine.reload("/path/to/model.gguf")
        print(engine.completions.create(prompt="Once upon", max_tokens=16).choices[0].text)
"""

from __future__ import annotations

from localloom.engine.engine import (
    AsyncEngine,
    Engine,
    InitProgressReport,
    LoadedModelInfo,
    MessageInput,
    RuntimeStats,
)
from localloom.engine.params import SamplingParams
from localloom.engine.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChatParams,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionParams,
    CompletionRequest,
    JsonSchemaFormat,
    PromptTokensDetails,
    ResponseFormat,
    StreamOptions,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from localloom.engine.streams import AsyncStream, Stream
from localloom.engine.tools.protocol import (
    DeltaToolCall,
    FunctionCall,
    ToolCall,
    ToolDefinition,
)

__all__ = [
    "AssistantMessage",
    "AsyncEngine",
    "AsyncStream",
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
    "DeltaToolCall",
    "Engine",
    "FunctionCall",
    "InitProgressReport",
    "JsonSchemaFormat",
    "LoadedModelInfo",
    "MessageInput",
    "PromptTokensDetails",
    "ResponseFormat",
    "RuntimeStats",
    "SamplingParams",
    "Stream",
    "StreamOptions",
    "TokenLogprob",
    "ToolCall",
    "ToolDefinition",
    "TopLogprob",
    "Usage",
]
