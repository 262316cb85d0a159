"""Agno runs as run spans, driven against the OpenAI and Anthropic emulators over loopback HTTP."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("agno")

from agno.agent import Agent
from agno.db.in_memory import InMemoryDb
from agno.models.anthropic import Claude
from agno.models.openai import OpenAIChat, OpenAIResponses
from agno.team import Team
from opentelemetry import trace
from opentelemetry.trace import StatusCode

import otel_llm_usage
from emulators import AnthropicEmulator, AnthropicReply, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.registry import FRAMEWORKS
from otel_llm_usage.runs import current_run, session_usage
from tests.conftest import Telemetry, make_telemetry

API_KEY = "sk-test-secret-key-0123456789"
# The anthropic SDK warns that claude-sonnet-4-5 is deprecated; its price is the golden one here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:The model 'claude-sonnet-4-5' is deprecated:DeprecationWarning"
)
KINDS = ("openai_chat", "openai_responses", "claude")


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    """Instrumented with Agno registered as the instrumentor registers it."""
    assert FRAMEWORKS["agno"] == "otel_llm_usage.frameworks.agno"
    yield make_telemetry()
    otel_llm_usage.uninstrument()


@pytest.fixture(scope="module")
def _anthropic_emulator() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator() as emu:
        yield emu


@pytest.fixture
def anthropic_emulator(_anthropic_emulator: AnthropicEmulator) -> AnthropicEmulator:
    _anthropic_emulator.reset()
    return _anthropic_emulator


@pytest.fixture
def llm(openai_emulator: Any, anthropic_emulator: AnthropicEmulator) -> Callable[..., Any]:
    """`llm(kind)`: a fresh Agno model on an emulator with one scripted reply (or `replies`) queued."""

    def make(kind: str, replies: int = 1) -> Any:
        if kind == "claude":
            for _ in range(replies):
                # Anthropic's input_tokens excludes cache reads and writes.
                anthropic_emulator.push(
                    AnthropicReply(
                        input_tokens=300,
                        cache_creation_input_tokens=1000,
                        cache_read_input_tokens=5000,
                        output_tokens=400,
                    )
                )
            return Claude(
                id="claude-sonnet-4-5",
                api_key=API_KEY,
                client_params={"base_url": anthropic_emulator.url, "max_retries": 0},
            )
        for _ in range(replies):
            openai_emulator.push(
                Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500, reasoning_tokens=100)
            )
        model = OpenAIChat if kind == "openai_chat" else OpenAIResponses
        return model(id="gpt-4o", base_url=openai_emulator.base_url, api_key=API_KEY, max_retries=0)

    return make


def attrs(span: Any) -> dict[str, Any]:
    return dict(span.attributes or {})


def run_spans(t: Telemetry) -> list[Any]:
    return [s for s in t.spans() if attrs(s).get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT]


def one_run_span(t: Telemetry) -> Any:
    spans = run_spans(t)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def check_run(t: Telemetry, output: Any, kind: str, name: str = "assistant") -> Any:
    span = one_run_span(t)
    a = attrs(span)
    assert span.name == f"invoke_agent {name}"
    assert a[sc.RUN_ID] == output.run_id
    assert a[sc.CONVERSATION_ID] == a[sc.SESSION_ID] == output.session_id
    calls = t.llm_spans()
    assert a[sc.RUN_REQUESTS] == len(calls) == 1
    for call in calls:
        assert call.parent is not None and call.parent.span_id == span.context.span_id
        assert attrs(call)[sc.SESSION_ID] == output.session_id
    metrics = output.metrics
    cache = metrics.cache_read_tokens + metrics.cache_write_tokens if kind == "claude" else 0
    assert a[sc.RUN_INPUT_TOKENS] == metrics.input_tokens + cache
    assert a[sc.RUN_OUTPUT_TOKENS] == metrics.output_tokens
    assert a[sc.RUN_CACHE_READ_TOKENS] == metrics.cache_read_tokens
    assert a[sc.RUN_CACHE_WRITE_TOKENS] == metrics.cache_write_tokens
    assert a[sc.RUN_REASONING_TOKENS] == metrics.reasoning_tokens
    assert a[sc.RUN_INPUT_TOKENS] + a[sc.RUN_OUTPUT_TOKENS] == metrics.total_tokens + cache
    # Agno prices nothing; ours is the priced calls' cost.
    assert metrics.cost is None
    assert a[sc.RUN_COST_USD] == pytest.approx(sum(attrs(c)[sc.USAGE_COST] for c in calls))
    assert a[sc.RUN_COST_USD] > 0
    return span


# --- totals equal Agno's metrics ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_run_totals_equal_agno_metrics(telemetry: Telemetry, llm: Any, kind: str, stream: bool) -> None:
    agent = Agent(name="assistant", model=llm(kind))
    if stream:
        events = list(agent.run("hello", stream=True, yield_run_output=True))
        output = events[-1]
    else:
        output = agent.run("hello")
    assert output.metrics.output_tokens == 400 if kind == "claude" else 500
    check_run(telemetry, output, kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", [False, True], ids=["arun", "astream"])
async def test_arun_totals_equal_agno_metrics(
    telemetry: Telemetry, llm: Any, kind: str, stream: bool
) -> None:
    agent = Agent(name="assistant", model=llm(kind))
    if stream:
        events = [event async for event in agent.arun("hello", stream=True, yield_run_output=True)]
        output = events[-1]
    else:
        output = await agent.arun("hello")
    check_run(telemetry, output, kind)


def test_claude_numbers_side_by_side(telemetry: Telemetry, llm: Any) -> None:
    """What a reader sees: Agno's Claude input 300 is ours 6300 (300 + 5000 read + 1000 written)."""
    output = Agent(name="assistant", model=llm("claude")).run("hello")
    m = output.metrics
    assert (m.input_tokens, m.cache_read_tokens, m.cache_write_tokens, m.total_tokens) == (
        300,
        5000,
        1000,
        700,
    )
    a = attrs(one_run_span(telemetry))
    assert (a[sc.RUN_INPUT_TOKENS], a[sc.RUN_CACHE_READ_TOKENS], a[sc.RUN_CACHE_WRITE_TOKENS]) == (
        6300,
        5000,
        1000,
    )
    # claude-sonnet-4-5: 300 in + 1000 cache write (5 min) + 5000 cache read + 400 out.
    assert a[sc.RUN_COST_USD] == pytest.approx(0.01215)


@pytest.mark.parametrize("kind", KINDS)
def test_two_runs_make_agno_session_totals(telemetry: Telemetry, llm: Any, kind: str) -> None:
    agent = Agent(name="assistant", model=llm(kind, replies=2), db=InMemoryDb())
    first = agent.run("hello")
    second = agent.run("and then?", stream=True)
    for _ in second:
        pass
    assert first.session_id == agent.session_id

    theirs = agent.get_session_metrics()
    ours = session_usage(first.session_id)
    assert theirs is not None and ours is not None
    cache = theirs.cache_read_tokens + theirs.cache_write_tokens if kind == "claude" else 0
    assert ours.requests == 2
    assert ours.input_tokens == theirs.input_tokens + cache
    assert ours.output_tokens == theirs.output_tokens
    assert ours.cache_read_tokens == theirs.cache_read_tokens
    assert ours.cache_write_tokens == theirs.cache_write_tokens
    assert ours.reasoning_tokens == theirs.reasoning_tokens
    assert theirs.cost is None and ours.cost_usd > 0
    spans = run_spans(telemetry)
    assert len(spans) == 2 and attrs(spans[1])[sc.SESSION_RUNS] == 2
    assert len({attrs(s)[sc.RUN_ID] for s in spans}) == 2


# --- ids -------------------------------------------------------------------------------------------


def test_given_ids_are_kept(telemetry: Telemetry, llm: Any) -> None:
    agent = Agent(name="assistant", model=llm("openai_chat"), user_id="u-9")
    output = agent.run("hello", run_id="run-given", session_id="sess-given")
    assert (output.run_id, output.session_id) == ("run-given", "sess-given")
    a = attrs(check_run(telemetry, output, "openai_chat"))
    assert a[sc.USER_ID] == "u-9"
    assert attrs(telemetry.one_llm_span())[sc.USER_ID] == "u-9"
    assert agent.session_id is None  # a given session id does not stick to the agent, as in Agno


def test_first_run_session_sticks_to_the_agent_as_in_agno(telemetry: Telemetry, llm: Any) -> None:
    agent = Agent(name="assistant", model=llm("openai_chat", replies=2))
    first = agent.run("one")
    second = agent.run("two")
    assert first.session_id == second.session_id == agent.session_id
    assert first.run_id != second.run_id
    total = session_usage(first.session_id)
    assert total is not None and total.requests == 2


# --- streams end with their iterator ---------------------------------------------------------------


def test_streamed_run_ends_when_the_iterator_is_exhausted(telemetry: Telemetry, llm: Any) -> None:
    stream = Agent(name="assistant", model=llm("openai_chat")).run("hello", stream=True)
    first = next(stream)
    # Mid-stream: the run is open, and the caller's context is not the run's.
    assert run_spans(telemetry) == []
    assert current_run() is None
    assert not trace.get_current_span().get_span_context().is_valid
    rest = list(stream)
    assert [first, *rest]
    span = one_run_span(telemetry)
    assert attrs(span)[sc.RUN_REQUESTS] == 1
    assert attrs(span)[sc.RUN_ID] == first.run_id


def test_abandoned_stream_ends_its_run(telemetry: Telemetry, llm: Any) -> None:
    stream = Agent(name="assistant", model=llm("openai_chat")).run("hello", stream=True)
    next(stream)
    assert run_spans(telemetry) == []
    del stream
    gc.collect()
    assert len(run_spans(telemetry)) == 1


async def test_async_stream_closed_early_ends_its_run(telemetry: Telemetry, llm: Any) -> None:
    stream = Agent(name="assistant", model=llm("openai_chat")).arun("hello", stream=True)
    await stream.__anext__()
    assert run_spans(telemetry) == []
    await stream.aclose()
    assert len(run_spans(telemetry)) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream"])
def test_failed_run_marks_the_run(telemetry: Telemetry, openai_emulator: Any, stream: bool) -> None:
    openai_emulator.push(Reply(status=500))
    model = OpenAIChat(id="gpt-4o", base_url=openai_emulator.base_url, api_key=API_KEY, max_retries=0)
    agent = Agent(name="assistant", model=model, retries=0)
    # Agno does not raise: the failure is in the output's status, or a run-error event.
    if stream:
        events = list(agent.run("hello", stream=True))
        assert events[-1].event == "RunError"
    else:
        assert agent.run("hello").status.value == "ERROR"

    span = one_run_span(telemetry)
    a = attrs(span)
    assert span.status.status_code is StatusCode.ERROR
    assert a[sc.ERROR_TYPE] == (events[-1].error_type if stream else "_OTHER")
    assert (a[sc.RUN_ERRORS], a[sc.RUN_REQUESTS]) == (1, 1)


# --- nesting and teams -----------------------------------------------------------------------------


def test_agent_run_inside_another_run_is_nested_and_counted_in_both(telemetry: Telemetry, llm: Any) -> None:
    helper = Agent(name="helper", model=llm("openai_chat"))

    def ask_helper(run_input: Any) -> None:
        helper.run("background facts")

    outer = Agent(name="assistant", model=llm("claude"), pre_hooks=[ask_helper])
    output = outer.run("hello")

    by_name = {s.name: s for s in run_spans(telemetry)}
    assert set(by_name) == {"invoke_agent assistant", "invoke_agent helper"}
    outer_span, inner_span = by_name["invoke_agent assistant"], by_name["invoke_agent helper"]
    assert inner_span.parent is not None and inner_span.parent.span_id == outer_span.context.span_id
    o, i = attrs(outer_span), attrs(inner_span)
    assert (i[sc.RUN_REQUESTS], i[sc.RUN_INPUT_TOKENS]) == (1, 1000)
    assert (o[sc.RUN_REQUESTS], o[sc.RUN_INPUT_TOKENS]) == (2, 1000 + 6300)
    assert o[sc.RUN_ID] == output.run_id and i[sc.RUN_ID] != output.run_id
    # Agno's outer metrics cover its own model only: ours are theirs plus the nested run's.
    assert o[sc.RUN_OUTPUT_TOKENS] == output.metrics.output_tokens + i[sc.RUN_OUTPUT_TOKENS]


def test_team_run_is_a_run(telemetry: Telemetry, llm: Any) -> None:
    member = Agent(name="writer", model=llm("openai_responses", replies=0))
    team = Team(name="desk", members=[member], model=llm("openai_chat"))
    output = team.run("hello")
    span = check_run(telemetry, output, "openai_chat", name="desk")
    assert attrs(span)[sc.AGENT_NAME] == "desk"


# --- patching --------------------------------------------------------------------------------------


def test_uninstrument_restores_agno(telemetry: Telemetry, llm: Any) -> None:
    assert Agent.__dict__["run"] is not Agent.__dict__["run"].__wrapped__
    otel_llm_usage.uninstrument()
    assert not hasattr(Agent.__dict__["run"], "__wrapped__")
    assert not hasattr(Team.__dict__["arun"], "__wrapped__")
    Agent(name="assistant", model=llm("openai_chat")).run("hello")
    assert run_spans(telemetry) == []


def test_patched_when_imported_after_instrument() -> None:
    """`instrument()` does not import the framework; importing it later patches it."""
    script = """
import sys
import otel_llm_usage
otel_llm_usage.instrument()
if "agno" in sys.modules:
    print("imported by instrument()")
else:
    from agno.team import Team  # Team first: it imports agno.agent itself
    from agno.agent import Agent
    print(all(hasattr(c.__dict__[m], "__wrapped__") for c in (Agent, Team) for m in ("run", "arun")))
"""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
