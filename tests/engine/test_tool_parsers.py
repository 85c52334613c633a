"""Tool-call parsers and the output splitter, on text as real models write it.

Each family's fixtures follow the model's own chat template and documentation (Qwen's and
Hermes' function-calling guides, Meta's Llama 3.1 JSON tool calling, Mistral's v3 and v11
tokenizers, Phi-4-mini's model card, Google's Gemma function-calling guide). Streams are
checked by feeding the same text in small pieces: they must split exactly as whole text.
"""

from __future__ import annotations

import pytest

from localloom.engine.protocol import ChatCompletionRequest
from localloom.engine.templates import ChatFormat
from localloom.engine.tools import (
    ChatStyle,
    Content,
    OutputSpec,
    OutputSplitter,
    ParsedCall,
    Reasoning,
    ToolCallParser,
    ToolParserRegistry,
    builtin_parsers,
    plan_chat,
)
from localloom.engine.tools.output import reasoning_markers_for
from localloom.engine.tools.parsers import HermesParser
from localloom.errors import ConfigError
from localloom.testing.gguf import QWEN25_TOOLS_TEMPLATE, THINKING_TEMPLATE

TEMP = ParsedCall("get_current_temperature", {"location": "San Francisco, CA, USA"})
TEMP_DATE = ParsedCall("get_temperature_date",
                       {"location": "San Francisco, CA, USA", "date": "2024-10-01"})
WEATHER = ParsedCall("get_weather", {"location": "Paris, France", "format": "celsius"})

# (parser, model output, expected content, expected calls)
FIXTURES: list[tuple[str, str, str, list[ParsedCall]]] = [
    # Qwen 2.5: two parallel calls, each in its own block.
    ("hermes",
     '<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": "San '
     'Francisco, CA, USA"}}\n</tool_call>\n<tool_call>\n{"name": "get_temperature_date", '
     '"arguments": {"location": "San Francisco, CA, USA", "date": "2024-10-01"}}\n</tool_call>',
     "", [TEMP, TEMP_DATE]),
    # Hermes 2 Pro writes the arguments before the name, after a sentence.
    ("hermes",
     'Let me look that up.\n<tool_call>\n{"arguments": {"location": "Paris, France", '
     '"format": "celsius"}, "name": "get_weather"}\n</tool_call>',
     "Let me look that up.", [WEATHER]),
    # A block the model ended with its end-of-turn token instead of the closing tag.
    ("hermes",
     '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris, France", '
     '"format": "celsius"}}', "", [WEATHER]),
    # Not a call: broken JSON stays text.
    ("hermes", "<tool_call>\n{\"name\": \"get_weather\", \"argu\n</tool_call>",
     "<tool_call>\n{\"name\": \"get_weather\", \"argu\n</tool_call>", []),
    # Llama 3.1 JSON tool calling: parameters, not arguments.
    ("llama3_json",
     '{"name": "get_current_temperature", "parameters": {"location": "San Francisco, CA, '
     'USA"}}', "", [TEMP]),
    ("llama3_json",
     '<|python_tag|>{"name": "get_current_temperature", "parameters": {"location": "San '
     'Francisco, CA, USA"}}; {"name": "get_temperature_date", "parameters": {"location": '
     '"San Francisco, CA, USA", "date": "2024-10-01"}}', "", [TEMP, TEMP_DATE]),
    ("llama3_json", "The weather is {sunny} today.", "The weather is {sunny} today.", []),
    # Mistral v3 ([TOOL_CALLS] is a control token: the answer's text may lack it).
    ("mistral",
     '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"location": "Paris, France", '
     '"format": "celsius"}}]', "", [WEATHER]),
    ("mistral",
     ' [{"name": "get_weather", "arguments": {"location": "Paris, France", '
     '"format": "celsius"}}]', "", [WEATHER]),
    # Mistral Small 3.2 / Magistral (tokenizer v11): name[ARGS]{...}.
    ("mistral",
     '[TOOL_CALLS]get_weather[ARGS]{"location": "Paris, France", "format": "celsius"}'
     '[TOOL_CALLS]get_current_temperature[ARGS]{"location": "San Francisco, CA, USA"}',
     "", [WEATHER, TEMP]),
    # Phi-4-mini.
    ("phi4_mini",
     'functools[{"name": "get_weather", "arguments": {"location": "Paris, France", '
     '"format": "celsius"}}]', "", [WEATHER]),
    # Gemma 3, prompted with the JSON form: a fenced block after some text, or bare JSON.
    ("json_block",
     'I will check.\n```json\n{"name": "get_weather", "parameters": {"location": "Paris, '
     'France", "format": "celsius"}}\n```', "I will check.", [WEATHER]),
    ("json_block",
     '{"name": "get_current_temperature", "parameters": {"location": "San Francisco, CA, '
     'USA"}}', "", [TEMP]),
    ("json_block", "```json\n{\"answer\": 42}\n```", "```json\n{\"answer\": 42}\n```", []),
]
NAMES = frozenset({"get_weather", "get_current_temperature", "get_temperature_date"})


def _split(parser: ToolCallParser | None, text: str, step: int,
           spec: OutputSpec | None = None) -> tuple[str, str, list[ParsedCall]]:
    splitter = OutputSplitter(spec or OutputSpec(parser=parser, tool_names=NAMES))
    pieces = []
    for i in range(0, len(text), step):
        pieces += splitter.feed(text[i:i + step])
    pieces += splitter.finish()
    reasoning = "".join(p.text for p in pieces if isinstance(p, Reasoning))
    content = "".join(p.text for p in pieces if isinstance(p, Content))
    return reasoning, content, [p for p in pieces if isinstance(p, ParsedCall)]


@pytest.mark.parametrize("name,text,content,calls", FIXTURES)
def test_each_family_reads_its_calls_and_leaves_the_rest_as_text(
        name: str, text: str, content: str, calls: list[ParsedCall]) -> None:
    parser = builtin_parsers().get(name)
    assert parser.parse(text) == (content, calls)


@pytest.mark.parametrize("name,text,content,calls", FIXTURES)
@pytest.mark.parametrize("step", [1, 3, 1000])
def test_streamed_text_splits_exactly_like_the_whole_text(
        name: str, text: str, content: str, calls: list[ParsedCall], step: int) -> None:
    parser = builtin_parsers().get(name)
    _, streamed_content, streamed_calls = _split(parser, text, step)
    assert streamed_calls == calls
    assert streamed_content.strip() == content.strip()


@pytest.mark.parametrize("step", [1, 7])
def test_a_stream_sends_each_hermes_call_when_its_block_closes(step: int) -> None:
    first = ('<tool_call>\n{"name": "get_current_temperature", "arguments": {"location": '
             '"San Francisco, CA, USA"}}\n</tool_call>')
    splitter = OutputSplitter(OutputSpec(parser=HermesParser(), tool_names=NAMES))
    pieces = []
    for i in range(0, len(first), step):
        pieces += splitter.feed(first[i:i + step])
    assert pieces == [TEMP]  # before the answer ends
    pieces = splitter.feed('\n<tool_call>\n{"name": "get_weather", "arguments": '
                           '{"location": "Paris, France", "format": "celsius"}}\n</tool_call>\n')
    assert pieces + splitter.finish() == [WEATHER]  # no blank content between the calls


def test_calls_of_functions_nobody_offered_stay_text() -> None:
    text = '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>'
    assert _split(HermesParser(), text, 4) == ("", text, [])


def test_text_that_only_looks_like_a_marker_start_is_not_lost() -> None:
    assert _split(HermesParser(), "a <tool or a <b> tag", 1) == ("", "a <tool or a <b> tag", [])


@pytest.mark.parametrize("step", [1, 2, 5, 100])
def test_thinking_then_answer_then_call_split_into_their_fields(step: int) -> None:
    text = ('<think>\nThe user wants the weather.\n</think>\n\nChecking.\n<tool_call>\n'
            '{"name": "get_weather", "arguments": {"location": "Paris, France", '
            '"format": "celsius"}}\n</tool_call>')
    spec = OutputSpec(parser=HermesParser(), tool_names=NAMES)
    reasoning, content, calls = _split(None, text, step, spec)
    assert reasoning == "\nThe user wants the weather.\n"
    assert content.strip() == "Checking."  # a stream cannot take back the newline it sent
    assert calls == [WEATHER]


@pytest.mark.parametrize("step", [1, 4, 100])
def test_reasoning_opened_by_the_prompt_and_other_markers(step: int) -> None:
    spec = OutputSpec(reasoning=reasoning_markers_for("{{ '<|START_THINKING|>' }}"),
                      in_reasoning=True)
    assert _split(None, "plan it<|END_THINKING|>Done.", step, spec) == ("plan it", "Done.", [])
    unfinished = OutputSpec(in_reasoning=True)
    assert _split(None, "still thinking when max_tokens hit", step, unfinished) == (
        "still thinking when max_tokens hit", "", [])


def test_think_only_counts_at_the_start_of_an_answer() -> None:
    text = "Use <think> tags like <think>this</think>."
    assert _split(None, text, 3) == ("", text, [])


def test_parsers_are_chosen_from_the_template_and_architecture() -> None:
    registry = builtin_parsers()
    assert registry.for_model(QWEN25_TOOLS_TEMPLATE, "qwen2").name == "hermes"
    assert registry.for_model("{{ '[AVAILABLE_TOOLS]' }}{{ '[TOOL_CALLS]' }}",
                              "llama").name == "mistral"
    assert registry.for_model("{{ '<|python_tag|>' }}{% if tools %}{% endif %}",
                              "llama").name == "llama3_json"
    assert registry.for_model("functools[{{ tools }}]", "phi3").name == "phi4_mini"
    assert registry.for_model("<start_of_turn>user", "gemma3").name == "json_block"
    assert registry.for_model(None, "gemma3").name == "json_block"
    assert registry.for_model(None, "llama").name == "hermes"  # the generic prompt's


def test_a_duplicate_parser_name_is_refused() -> None:
    registry = ToolParserRegistry()
    registry.register(HermesParser)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register(HermesParser)


def _request(**body: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.parse({"messages": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_1", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"}], **body})


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"location": {"type": "string"}}}}}]


def test_history_renders_through_a_template_that_takes_tools() -> None:
    fmt = ChatFormat.from_template(QWEN25_TOOLS_TEMPLATE)
    plan = plan_chat(_request(tools=TOOLS), ChatStyle.from_template(
        fmt.template, fmt.variables))
    text = fmt.render(plan.messages, **plan.variables)
    assert '<tools>\n{"type": "function", "function": {"name": "get_weather"' in text
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}' in text
    assert "<tool_response>\n21 C\n</tool_response>" in text
    assert plan.grammar is None and plan.output.parser is not None


def test_templates_without_tools_get_the_generic_prompt_and_text_history() -> None:
    fmt = ChatFormat.from_template(None)  # a base model's transcript
    style = ChatStyle.from_template(None, fmt.variables, "gemma3")
    plan = plan_chat(_request(tools=TOOLS, tool_choice="required"), style)
    text = fmt.render(plan.messages)
    assert text.startswith("You can call the following functions.")
    assert '{"name": "<function name>", "arguments"' in text  # Gemma's JSON form
    assert 'Assistant: {"name": "get_weather", "arguments": {"location": "Paris"}}' in text
    assert "User: <tool_response>\n21 C\n</tool_response>" in text
    assert plan.grammar is not None and plan.grammar.startswith("root ::= tool-call")


def test_thinking_switch_reaches_templates_that_have_one() -> None:
    fmt = ChatFormat.from_template(THINKING_TEMPLATE)
    style = ChatStyle.from_template(fmt.template, fmt.variables)
    assert style.thinking_switch and style.takes_tools
    off = plan_chat(ChatCompletionRequest.parse({"messages": [{"role": "user", "content": "x"}],
                                                 "reasoning_effort": "none"}), style)
    assert off.variables == {"enable_thinking": False}
    assert fmt.render(off.messages, **off.variables).endswith("<think>\n\n</think>\n\n")
