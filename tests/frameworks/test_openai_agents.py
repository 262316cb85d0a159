"""OpenAI Agents SDK runs as run spans, driven against the OpenAI emulator over loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agents")

from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    SQLiteSession,
    handoff,
)
from agents.items import ModelResponse
from agents.run import AgentRunner
from agents.tracing import (
    TracingProcessor,
    get_trace_provider,
    set_trace_processors,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from openai.types.responses import ResponseFunctionToolCall
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.frameworks.openai_agents import session_id_of
from otel_llm_usage.registry import FRAMEWORKS
from otel_llm_usage.runs import current_run, session, session_usage
from tests.conftest import Telemetry, make_telemetry

API_KEY = "sk-test-secret-key-0123456789"
NO_TRACING = RunConfig(tracing_disabled=True)
REPLY = {"prompt_tokens": 1000, "cached_tokens": 200, "completion_tokens": 500, "reasoning_tokens": 100}
KINDS = ("responses", "chat")


@pytest.fixture
def instrument_agents(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`instrument(**options)` with the Agents SDK registered as the instrumentor registers it."""
    assert FRAMEWORKS["openai_agents"] == "otel_llm_usage.frameworks.openai_agents"
    yield make_telemetry
    otel_llm_usage.uninstrument()


@pytest.fixture
def telemetry(instrument_agents: Any) -> Telemetry:
    t: Telemetry = instrument_agents()
    return t


class Collected(TracingProcessor):
    """The SDK's own tracing, kept in memory (its default processor would export to OpenAI)."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_trace_start(self, trace: Any) -> None:
        pass

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        pass

    def on_span_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.fixture
def sdk_tracing() -> Iterator[Collected]:
    """The SDK's tracing on (whatever OPENAI_AGENTS_DISABLE_TRACING says), into memory."""
    provider: Any = get_trace_provider()
    saved = list(provider._multi_processor._processors), provider._manual_disabled
    collected = Collected()
    set_trace_processors([collected])
    set_tracing_disabled(False)
    yield collected
    set_trace_processors(saved[0])
    provider._manual_disabled = saved[1]
    provider._refresh_disabled_flag()


def aclient(emu: Any) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=emu.base_url, api_key=API_KEY, max_retries=0)


def make_model(kind: str, client: AsyncOpenAI) -> Any:
    if kind == "responses":
        return OpenAIResponsesModel(model="gpt-4o", openai_client=client)
    return OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)


class ToolCallingModel(OpenAIResponsesModel):
    """Makes every model request for real, but answers the first ones with the tool calls scripted.

    The emulator answers text only; the request (and its usage) is real, the tool call is ours.
    """

    def __init__(self, *args: Any, calls: list[tuple[str, dict[str, Any]]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = list(calls)

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        response = await super().get_response(*args, **kwargs)
        if not self.calls:
            return response
        name, arguments = self.calls.pop(0)
        call = ResponseFunctionToolCall(
            type="function_call",
            name=name,
            arguments=json.dumps(arguments),
            call_id=f"call_{name}",
            id=f"fc_{name}",
            status="completed",
        )
        return ModelResponse(output=[call], usage=response.usage, response_id=response.response_id)


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def run_spans(t: Telemetry) -> list[Any]:
    return [s for s in t.spans() if attrs(s).get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT]


def one_run_span(t: Telemetry) -> Any:
    spans = run_spans(t)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def assert_totals_are_sdk_usage(span: Any, usage: Any) -> None:
    a = attrs(span)
    assert a[sc.RUN_REQUESTS] == usage.requests
    assert a[sc.RUN_INPUT_TOKENS] == usage.input_tokens
    assert a[sc.RUN_OUTPUT_TOKENS] == usage.output_tokens
    assert a[sc.RUN_CACHE_READ_TOKENS] == usage.input_tokens_details.cached_tokens
    assert a[sc.RUN_REASONING_TOKENS] == usage.output_tokens_details.reasoning_tokens


def assert_calls_beneath(t: Telemetry, run_span: Any) -> None:
    calls = t.llm_spans()
    assert calls
    for call in calls:
        assert call.parent is not None and call.parent.span_id == run_span.context.span_id


# --- totals equal the SDK's usage ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_run_totals_equal_sdk_usage(telemetry: Telemetry, openai_emulator: Any, kind: str) -> None:
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="helper", model=make_model(kind, aclient(openai_emulator)))
    result = await Runner.run(agent, "hello", run_config=NO_TRACING)
    assert result.context_wrapper.usage.input_tokens == 1000

    span = one_run_span(telemetry)
    a = attrs(span)
    assert span.name == "invoke_agent helper"
    assert a[sc.AGENT_NAME] == "helper"
    assert_totals_are_sdk_usage(span, result.context_wrapper.usage)
    # The SDK has no cost; ours is the priced call's: gpt-4o, 1000 in (200 cached) + 500 out.
    assert a[sc.RUN_COST_USD] == pytest.approx(0.00725)
    assert_calls_beneath(telemetry, span)
    assert telemetry.one_llm_span().attributes[sc.AGENT_NAME] == "helper"  # type: ignore[index]


@pytest.mark.parametrize("kind", KINDS)
async def test_streamed_run_totals_equal_sdk_usage(
    telemetry: Telemetry, openai_emulator: Any, kind: str
) -> None:
    openai_emulator.push(Reply(**REPLY))
    # Without include_usage the SDK asks a non-OpenAI host for no streamed usage (see below).
    agent = Agent(
        name="streamer",
        model=make_model(kind, aclient(openai_emulator)),
        model_settings=ModelSettings(include_usage=True),
    )
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
    events = [event async for event in result.stream_events()]
    assert events and result.is_complete
    assert result.context_wrapper.usage.input_tokens == 1000

    span = one_run_span(telemetry)
    assert span.name == "invoke_agent streamer"
    assert_totals_are_sdk_usage(span, result.context_wrapper.usage)
    assert_calls_beneath(telemetry, span)


@pytest.mark.parametrize("kind", KINDS)
def test_run_sync_is_one_run(telemetry: Telemetry, openai_emulator: Any, kind: str) -> None:
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="sync", model=make_model(kind, aclient(openai_emulator)))
    result = Runner.run_sync(agent, "hello", run_config=NO_TRACING)

    span = one_run_span(telemetry)  # run_sync goes through AgentRunner.run: one run span, not two
    assert span.name == "invoke_agent sync"
    assert_totals_are_sdk_usage(span, result.context_wrapper.usage)
    assert_calls_beneath(telemetry, span)


@pytest.mark.parametrize("tracing", ["sdk_tracing_on", "sdk_tracing_off"])
@pytest.mark.parametrize("streamed", [False, True], ids=["run", "streamed"])
async def test_one_llm_span_per_call_with_sdk_tracing_on_or_off(
    telemetry: Telemetry, openai_emulator: Any, sdk_tracing: Collected, tracing: str, streamed: bool
) -> None:
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="traced", model=make_model("responses", aclient(openai_emulator)))
    config = RunConfig(tracing_disabled=tracing == "sdk_tracing_off")
    if streamed:
        result: Any = Runner.run_streamed(agent, "hello", run_config=config)
        async for _ in result.stream_events():
            pass
    else:
        result = await Runner.run(agent, "hello", run_config=config)

    # The SDK's tracing really was on (or off) ...
    sdk_kinds = {type(s.span_data).__name__ for s in sdk_tracing.spans}
    if tracing == "sdk_tracing_on":
        assert "ResponseSpanData" in sdk_kinds and "AgentSpanData" in sdk_kinds
    else:
        assert not sdk_tracing.spans
    # ... and each model request is still exactly one LLM span, one run span around them.
    assert len(telemetry.llm_spans()) == result.context_wrapper.usage.requests == 1
    assert_totals_are_sdk_usage(one_run_span(telemetry), result.context_wrapper.usage)


# --- nesting: agents as tools, handoffs ----------------------------------------------------------


async def test_agent_as_tool_is_an_inner_run_counted_in_the_outer(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    client = aclient(openai_emulator)
    inner = Agent(name="researcher", model=make_model("responses", client))
    outer = Agent(
        name="planner",
        model=ToolCallingModel(model="gpt-4o", openai_client=client, calls=[("research", {"input": "x"})]),
        tools=[inner.as_tool("research", "Research a question.")],
    )
    # planner (tool call), researcher (nested Runner.run), planner (final answer)
    openai_emulator.push(
        Reply(prompt_tokens=100, completion_tokens=10),
        Reply(prompt_tokens=200, cached_tokens=50, completion_tokens=20),
        Reply(prompt_tokens=300, completion_tokens=30, reasoning_tokens=5),
    )
    result = await Runner.run(outer, "plan it", run_config=NO_TRACING)
    usage = result.context_wrapper.usage
    assert usage.requests == 3  # the SDK counts the nested agent's request in the outer run too

    by_name = {s.name: s for s in run_spans(telemetry)}
    assert set(by_name) == {"invoke_agent planner", "invoke_agent researcher"}
    outer_span, inner_span = by_name["invoke_agent planner"], by_name["invoke_agent researcher"]
    assert_totals_are_sdk_usage(outer_span, usage)
    assert inner_span.parent is not None and inner_span.parent.span_id == outer_span.context.span_id
    i = attrs(inner_span)
    assert (i[sc.RUN_REQUESTS], i[sc.RUN_INPUT_TOKENS], i[sc.RUN_CACHE_READ_TOKENS]) == (1, 200, 50)
    assert len(telemetry.llm_spans()) == 3
    agents = sorted(str(attrs(s)[sc.AGENT_NAME]) for s in telemetry.llm_spans())
    assert agents == ["planner", "planner", "researcher"]


async def test_handoff_stays_in_the_run(telemetry: Telemetry, openai_emulator: Any) -> None:
    client = aclient(openai_emulator)
    billing = Agent(name="billing", model=make_model("responses", client))
    to_billing = handoff(billing)
    triage = Agent(
        name="triage",
        model=ToolCallingModel(model="gpt-4o", openai_client=client, calls=[(to_billing.tool_name, {})]),
        handoffs=[to_billing],
    )
    openai_emulator.push(
        Reply(prompt_tokens=100, completion_tokens=10), Reply(prompt_tokens=200, completion_tokens=20)
    )
    result = await Runner.run(triage, "refund", run_config=NO_TRACING)
    assert result.last_agent.name == "billing"

    span = one_run_span(telemetry)
    assert span.name == "invoke_agent triage"
    assert_totals_are_sdk_usage(span, result.context_wrapper.usage)
    assert attrs(span)[sc.RUN_REQUESTS] == 2


# --- sessions ------------------------------------------------------------------------------------


async def test_two_runs_in_one_sdk_session_make_one_session(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    agent = Agent(name="chat", model=make_model("responses", aclient(openai_emulator)))
    conversation = SQLiteSession("conv-7")  # in memory
    openai_emulator.push(Reply(**REPLY), Reply(prompt_tokens=1500, cached_tokens=1000, completion_tokens=80))
    first = await Runner.run(agent, "hello", session=conversation, run_config=NO_TRACING)
    second = await Runner.run(agent, "and then?", session=conversation, run_config=NO_TRACING)

    total = session_usage("conv-7")
    assert total is not None
    u1, u2 = first.context_wrapper.usage, second.context_wrapper.usage
    assert total.requests == u1.requests + u2.requests == 2
    assert total.input_tokens == u1.input_tokens + u2.input_tokens == 2500
    assert total.output_tokens == u1.output_tokens + u2.output_tokens
    assert total.cache_read_tokens == (
        u1.input_tokens_details.cached_tokens + u2.input_tokens_details.cached_tokens
    )
    assert total.reasoning_tokens == (
        u1.output_tokens_details.reasoning_tokens + u2.output_tokens_details.reasoning_tokens
    )
    spans = run_spans(telemetry)
    assert [attrs(s)[sc.CONVERSATION_ID] for s in spans] == ["conv-7", "conv-7"]
    assert attrs(spans[1])[sc.SESSION_RUNS] == 2
    assert attrs(spans[1])[sc.SESSION_REQUESTS] == 2
    assert all(attrs(s)[sc.SESSION_ID] == "conv-7" for s in telemetry.llm_spans())


def test_session_id_precedence() -> None:
    conversation = SQLiteSession("from-session")
    config = RunConfig(group_id="from-group")
    assert session_id_of({"session": conversation, "conversation_id": "c", "run_config": config}) == (
        "from-session"
    )
    assert session_id_of({"conversation_id": "from-conv", "run_config": config}) == "from-conv"
    assert session_id_of({"run_config": config}) == "from-group"
    assert session_id_of({"run_config": {"group_id": "from-dict"}}) == "from-dict"
    assert session_id_of({"run_config": RunConfig()}) is None
    assert session_id_of({}) is None


async def test_group_id_names_the_session(telemetry: Telemetry, openai_emulator: Any) -> None:
    agent = Agent(name="grouped", model=make_model("responses", aclient(openai_emulator)))
    await Runner.run(agent, "hi", run_config=RunConfig(tracing_disabled=True, group_id="thread-3"))
    assert attrs(one_run_span(telemetry))[sc.CONVERSATION_ID] == "thread-3"
    total = session_usage("thread-3")
    assert total is not None and total.requests == 1


async def test_run_without_its_own_session_joins_the_enclosing_one(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    agent = Agent(name="plain", model=make_model("responses", aclient(openai_emulator)))
    with session("outer-7"):
        await Runner.run(agent, "hi", run_config=NO_TRACING)
    assert attrs(one_run_span(telemetry))[sc.CONVERSATION_ID] == "outer-7"
    total = session_usage("outer-7")
    assert total is not None and total.requests == 1


# --- streamed runs end with their stream -----------------------------------------------------------


async def test_streamed_run_ends_when_the_stream_finishes(telemetry: Telemetry, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="later", model=make_model("responses", aclient(openai_emulator)))
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)

    # Returned, nothing consumed: the run is open, and the caller's context is as it was.
    assert run_spans(telemetry) == []
    assert current_run() is None
    assert not trace.get_current_span().get_span_context().is_valid

    async for _ in result.stream_events():
        pass
    span = one_run_span(telemetry)
    assert_totals_are_sdk_usage(span, result.context_wrapper.usage)
    assert span.end_time >= telemetry.one_llm_span().end_time  # type: ignore[operator]


async def test_cancelled_streamed_run_ends(telemetry: Telemetry, openai_emulator: Any) -> None:
    agent = Agent(name="cancelled", model=make_model("responses", aclient(openai_emulator)))
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
    result.cancel()  # before its task ever ran
    async for _ in result.stream_events():
        pass

    span = one_run_span(telemetry)
    assert attrs(span)[sc.ERROR_TYPE] == "CancelledError"
    assert attrs(span)[sc.RUN_REQUESTS] == 0
    assert telemetry.llm_spans() == []


# The SDK's own coroutines complain when their loop is dropped under them; that is the point here.
@pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_streamed_run_dropped_with_its_loop_ends_when_collected(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    loop = asyncio.new_event_loop()

    async def start_and_forget() -> None:
        agent = Agent(name="dropped", model=make_model("responses", aclient(openai_emulator)))
        Runner.run_streamed(agent, "hello", run_config=NO_TRACING)

    loop.run_until_complete(start_and_forget())
    # The loop goes away with the run's task never finished: its done-callback never runs.
    loop.close()
    assert run_spans(telemetry) == []
    gc.collect()
    assert [s.name for s in run_spans(telemetry)] == ["invoke_agent dropped"]


async def test_streamed_run_failure_marks_the_run(telemetry: Telemetry, openai_emulator: Any) -> None:
    openai_emulator.push(Reply(status=500))
    agent = Agent(name="broken", model=make_model("responses", aclient(openai_emulator)))
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
    with pytest.raises(Exception, match=r"500|server"):
        async for _ in result.stream_events():
            pass
    span = one_run_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[sc.RUN_ERRORS] == 1


async def test_failed_run_marks_the_run_and_reraises(telemetry: Telemetry, openai_emulator: Any) -> None:
    import openai

    openai_emulator.push(Reply(status=500))
    agent = Agent(name="broken", model=make_model("chat", aclient(openai_emulator)))
    with pytest.raises(openai.InternalServerError):
        await Runner.run(agent, "hello", run_config=NO_TRACING)
    span = one_run_span(telemetry)
    assert attrs(span)[sc.ERROR_TYPE] == "InternalServerError"
    assert attrs(span)[sc.RUN_ERRORS] == 1


# --- streamed chat completions: the SDK's usage and ours -------------------------------------------


async def test_streamed_chat_run_over_a_loopback_server_has_its_tokens_by_default(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="chatty", model=make_model("chat", aclient(openai_emulator)))
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
    async for _ in result.stream_events():
        pass

    # Against a non-OpenAI base URL the SDK asks for no streamed usage and reports none ...
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 0, 0)
    # ... while the default stream_usage="always" asked for it on the wire (the SDK never sees that chunk).
    a = attrs(one_run_span(telemetry))
    assert (a[sc.RUN_REQUESTS], a[sc.RUN_INPUT_TOKENS], a[sc.RUN_OUTPUT_TOKENS]) == (1, 1000, 500)
    assert (a[sc.RUN_CACHE_READ_TOKENS], a[sc.RUN_REASONING_TOKENS]) == (200, 100)
    assert attrs(telemetry.one_llm_span())[sc.STREAM_USAGE_INJECTED] is True
    assert openai_emulator.served.prompt_tokens == 1000


async def test_streamed_litellm_run_over_a_loopback_server_has_its_tokens(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    litellm_model = pytest.importorskip("agents.extensions.models.litellm_model")
    openai_emulator.push(Reply(**REPLY), Reply(**REPLY))
    model = litellm_model.LitellmModel(
        model="openai/gpt-4o", base_url=openai_emulator.base_url, api_key=API_KEY
    )
    for _ in range(2):
        result = Runner.run_streamed(Agent(name="gateway", model=model), "hello", run_config=NO_TRACING)
        async for _ in result.stream_events():
            pass
        assert result.is_complete

    runs = run_spans(telemetry)
    assert len(runs) == 2
    for run in runs:
        a = attrs(run)
        assert (a[sc.RUN_REQUESTS], a[sc.RUN_INPUT_TOKENS], a[sc.RUN_OUTPUT_TOKENS]) == (1, 1000, 500)
        assert (a[sc.RUN_CACHE_READ_TOKENS], a[sc.RUN_REASONING_TOKENS]) == (200, 100)
    calls = telemetry.llm_spans()
    assert len(calls) == 2 and all(attrs(c)[sc.PROVIDER_NAME] == "openai" for c in calls)
    assert openai_emulator.served.prompt_tokens == 2000  # what was served is what was counted


async def test_streamed_run_to_a_server_refusing_stream_options_completes(telemetry: Telemetry) -> None:
    with OpenAIEmulator(stream_options="reject") as emu:
        emu.push(Reply(**REPLY), Reply(**REPLY))
        agent = Agent(name="strict", model=make_model("chat", aclient(emu)))
        result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
        async for _ in result.stream_events():
            pass
        assert (
            result.is_complete
            and result.final_output == "This is a deterministic reply from the OpenAI emulator."
        )
        assert [r.json.get("stream_options") for r in emu.requests] == [{"include_usage": True}, None]

    a = attrs(one_run_span(telemetry))
    assert a[sc.RUN_REQUESTS] == 1 and a.get(sc.RUN_INPUT_TOKENS, 0) == 0
    call = attrs(telemetry.one_llm_span())
    assert call[sc.STREAM_USAGE_RETRIED] is True and call[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_MISSING


async def test_streamed_chat_usage_under_known_is_missing_on_both_sides(
    instrument_agents: Any, openai_emulator: Any
) -> None:
    telemetry = instrument_agents(stream_usage="known")
    openai_emulator.push(Reply(**REPLY))
    agent = Agent(name="chatty", model=make_model("chat", aclient(openai_emulator)))
    result = Runner.run_streamed(agent, "hello", run_config=NO_TRACING)
    async for _ in result.stream_events():
        pass
    assert_totals_are_sdk_usage(one_run_span(telemetry), result.context_wrapper.usage)
    assert attrs(telemetry.one_llm_span())[sc.USAGE_SOURCE] == sc.USAGE_SOURCE_MISSING


# --- patching --------------------------------------------------------------------------------------


async def test_uninstrument_restores_the_runner(instrument_agents: Any, openai_emulator: Any) -> None:
    originals = (AgentRunner.__dict__["run"], AgentRunner.__dict__["run_streamed"])
    telemetry = instrument_agents()
    assert AgentRunner.__dict__["run"] is not originals[0]
    otel_llm_usage.uninstrument()
    assert (AgentRunner.__dict__["run"], AgentRunner.__dict__["run_streamed"]) == originals

    agent = Agent(name="bare", model=make_model("responses", aclient(openai_emulator)))
    await Runner.run(agent, "hi", run_config=NO_TRACING)
    assert run_spans(telemetry) == []


def test_patched_when_imported_after_instrument() -> None:
    """`instrument()` does not import the framework; importing it later patches it."""
    script = """
import sys
import otel_llm_usage
otel_llm_usage.instrument()
if "agents" in sys.modules:
    print("imported by instrument()")
else:
    from agents.run import AgentRunner
    print(all(hasattr(AgentRunner.__dict__[m], "__wrapped__") for m in ("run", "run_streamed")))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
