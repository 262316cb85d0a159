"""session() and run(): span attributes, baggage, context propagation, decorators, usage_summary()."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from emulators import Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.runs import (
    Run,
    UsageSummary,
    current_run,
    run,
    session,
    session_usage,
    usage_summary,
)
from tests.conftest import Telemetry

MSGS: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def client(emu: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def aclient(emu: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=emu.base_url, api_key="sk-test", max_retries=0)


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def llm_span_with_input(t: Telemetry, tokens: int) -> dict[str, Any]:
    found = [attrs(s) for s in t.llm_spans() if attrs(s).get(sc.USAGE_INPUT_TOKENS) == tokens]
    assert len(found) == 1, found
    return found[0]


def chat(c: openai.OpenAI, emu: Any, prompt: int) -> None:
    emu.push(Reply(prompt_tokens=prompt, completion_tokens=1))
    c.chat.completions.create(model="gpt-4o", messages=MSGS)


# --- session() ---------------------------------------------------------------------------------


def test_session_ids_and_attributes_reach_llm_run_and_other_spans(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    other = telemetry.tracer_provider.get_tracer("http.client")
    with session("conv-9", user_id="user-3", attributes={"tenant.id": "acme"}) as sid:
        assert sid == "conv-9"
        chat(c, openai_emulator, 11)
        with run("planner", attributes={"team": "search"}):
            chat(c, openai_emulator, 12)
            with other.start_as_current_span("GET /tools"):
                pass
    chat(c, openai_emulator, 13)

    plain = llm_span_with_input(telemetry, 11)
    assert plain[sc.CONVERSATION_ID] == "conv-9" and plain[sc.SESSION_ID] == "conv-9"
    assert plain[sc.USER_ID] == "user-3" and plain["tenant.id"] == "acme"
    assert sc.AGENT_NAME not in plain
    in_run = llm_span_with_input(telemetry, 12)
    assert in_run[sc.AGENT_NAME] == "planner" and in_run["team"] == "search" and in_run["tenant.id"] == "acme"
    run_span = next(attrs(s) for s in telemetry.spans() if s.name == "invoke_agent planner")
    assert run_span[sc.CONVERSATION_ID] == "conv-9" and run_span[sc.SESSION_ID] == "conv-9"
    assert (
        run_span[sc.USER_ID] == "user-3" and run_span["tenant.id"] == "acme" and run_span["team"] == "search"
    )
    http = next(attrs(s) for s in telemetry.spans() if s.name == "GET /tools")
    assert http[sc.SESSION_ID] == "conv-9" and http[sc.USER_ID] == "user-3"
    assert sc.CONVERSATION_ID not in http
    outside = llm_span_with_input(telemetry, 13)
    assert not {sc.CONVERSATION_ID, sc.SESSION_ID, sc.USER_ID, "tenant.id"} & outside.keys()


def test_session_id_travels_in_w3c_baggage_and_is_restored(telemetry: Telemetry) -> None:
    assert baggage.get_baggage(sc.SESSION_ID) is None
    with session("conv-private"):
        assert baggage.get_baggage(sc.SESSION_ID) is None  # stays in the process unless opted in
    with session("conv-outer", propagate=True):
        with session("conv-inner", propagate=True):
            carrier: dict[str, str] = {}
            W3CBaggagePropagator().inject(carrier)
            assert carrier["baggage"] == "session.id=conv-inner"
        assert baggage.get_baggage(sc.SESSION_ID) == "conv-outer"
    assert baggage.get_baggage(sc.SESSION_ID) is None


def test_downstream_service_joins_the_session_from_incoming_baggage(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    incoming = W3CBaggagePropagator().extract({"baggage": "session.id=conv-upstream"})
    token = otel_context.attach(incoming)
    try:
        with run("downstream-agent"):
            chat(c, openai_emulator, 21)
        chat(c, openai_emulator, 22)
    finally:
        otel_context.detach(token)
    chat(c, openai_emulator, 23)

    for tokens in (21, 22):
        a = llm_span_with_input(telemetry, tokens)
        assert a[sc.SESSION_ID] == "conv-upstream" and a[sc.CONVERSATION_ID] == "conv-upstream"
    assert sc.SESSION_ID not in llm_span_with_input(telemetry, 23)
    s = session_usage("conv-upstream")
    assert s is not None and (s.requests, s.input_tokens) == (2, 43)
    run_span = next(attrs(sp) for sp in telemetry.spans() if sp.name == "invoke_agent downstream-agent")
    assert run_span[sc.SESSION_ID] == "conv-upstream" and run_span[sc.SESSION_RUNS] == 1


def test_session_follows_copied_contexts_into_threads_and_leaving_restores(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = client(openai_emulator)
    seen: dict[str, Any] = {}
    with session("conv-threads", propagate=True):
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(chat, c, openai_emulator, 31))
        worker.start()
        worker.join()
        bare = threading.Thread(target=chat, args=(c, openai_emulator, 32))  # no context copied
        bare.start()
        bare.join()
    # The copied context is a snapshot: it still holds the session after the block was left.
    later = threading.Thread(
        target=ctx.run, args=(lambda: seen.setdefault("bag", baggage.get_baggage("session.id")),)
    )
    later.start()
    later.join()
    chat(c, openai_emulator, 33)

    assert llm_span_with_input(telemetry, 31)[sc.SESSION_ID] == "conv-threads"
    assert sc.SESSION_ID not in llm_span_with_input(telemetry, 32)
    assert sc.SESSION_ID not in llm_span_with_input(telemetry, 33)
    assert seen["bag"] == "conv-threads"
    assert baggage.get_baggage(sc.SESSION_ID) is None


async def test_sessions_and_runs_follow_asyncio_tasks_without_bleeding(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    c = aclient(openai_emulator)
    release = asyncio.Event()
    entered = 0
    all_in = asyncio.Event()

    async def worker(i: int) -> Run:
        nonlocal entered
        with session(f"conv-task-{i}"):  # a plain `with` inside async code
            async with run(f"agent-{i}") as r:
                entered += 1
                if entered == 3:
                    all_in.set()
                await release.wait()  # all three scopes are open at the same time here
                assert current_run() is r
                await c.chat.completions.create(model="gpt-4o", messages=MSGS)
                return r

    tasks = [asyncio.create_task(worker(i)) for i in range(3)]
    await all_in.wait()
    release.set()
    runs = await asyncio.gather(*tasks)
    assert current_run() is None
    for i, r in enumerate(runs):
        assert (r.name, r.session_id, r.usage.requests) == (f"agent-{i}", f"conv-task-{i}", 1)
        u = session_usage(f"conv-task-{i}")
        assert u is not None and u.requests == 1
    assert len(telemetry.llm_spans()) == 3
    for s in telemetry.llm_spans():
        a = attrs(s)
        assert a[sc.SESSION_ID] == "conv-task-" + a[sc.AGENT_NAME].removeprefix("agent-")


async def test_one_run_object_entered_by_concurrent_tasks(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = aclient(openai_emulator)
    shared_scope = run("batch")
    inside = 0
    all_in = asyncio.Event()

    async def worker(i: int) -> Run:
        nonlocal inside
        async with shared_scope as r:
            inside += 1
            if inside == 4:
                all_in.set()
            await all_in.wait()  # every task is inside the same RunScope object now
            await c.chat.completions.create(model="gpt-4o", messages=MSGS)
            assert current_run() is r
        assert current_run() is None
        return r

    runs = await asyncio.gather(*(worker(i) for i in range(4)))
    assert len({r.run_id for r in runs}) == 4
    assert all(r.closed and r.usage.requests == 1 for r in runs)


def test_session_rejects_empty_ids() -> None:
    with pytest.raises(ValueError):
        session("")
    with pytest.raises(ValueError):
        run("")


# --- run() -------------------------------------------------------------------------------------


def test_run_span_shape_parentage_and_current_run(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    assert current_run() is None
    with run("triage", agent="support-bot") as r:
        assert current_run() is r
        assert r.name == "triage" and r.agent == "support-bot" and not r.closed
        chat(c, openai_emulator, 41)
    assert current_run() is None and r.closed

    run_span = next(s for s in telemetry.spans() if s.name == "invoke_agent triage")
    a = attrs(run_span)
    assert run_span.kind is SpanKind.INTERNAL
    assert a[sc.OPERATION_NAME] == "invoke_agent"
    assert a[sc.AGENT_NAME] == "support-bot"
    assert a[sc.RUN_ID] == r.run_id
    llm = telemetry.one_llm_span()
    assert llm.parent is not None and run_span.context is not None
    assert llm.parent.span_id == run_span.context.span_id
    assert attrs(llm)[sc.AGENT_NAME] == "support-bot"


def test_run_with_its_own_session_id(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-a", propagate=True):
        with run("r", session_id="conv-b") as r:
            assert baggage.get_baggage(sc.SESSION_ID) == "conv-b"
            chat(c, openai_emulator, 51)
        assert baggage.get_baggage(sc.SESSION_ID) == "conv-a"
        chat(c, openai_emulator, 52)
    assert r.session_id == "conv-b"
    b, a = session_usage("conv-b"), session_usage("conv-a")
    assert b is not None and (b.requests, b.input_tokens) == (1, 51)
    assert a is not None and (a.requests, a.input_tokens) == (1, 52)


def test_run_decorator_sync_makes_a_new_run_per_call(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    handles: list[Run] = []

    @run("summarise")
    def summarise(tokens: int) -> str:
        r = current_run()
        assert r is not None
        handles.append(r)
        chat(c, openai_emulator, tokens)
        return f"done {tokens}"

    assert summarise.__name__ == "summarise"
    assert summarise(61) == "done 61"
    assert summarise(62) == "done 62"
    assert [h.usage.input_tokens for h in handles] == [61, 62]
    assert handles[0].run_id != handles[1].run_id
    assert [s.name for s in telemetry.spans()].count("invoke_agent summarise") == 2


async def test_run_decorator_async(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = aclient(openai_emulator)

    @run("fetcher", agent="fetch-bot")
    async def fetch(tokens: int) -> Run:
        openai_emulator.push(Reply(prompt_tokens=tokens, completion_tokens=1))
        await c.chat.completions.create(model="gpt-4o", messages=MSGS)
        r = current_run()
        assert r is not None
        return r

    r1, r2 = await asyncio.gather(fetch(71), fetch(72))
    assert r1 is not r2
    assert {r1.usage.input_tokens, r2.usage.input_tokens} == {71, 72}
    assert r1.agent == "fetch-bot" and r1.closed and r2.closed
    assert current_run() is None


def test_run_exception_is_reraised_and_marks_the_span(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    boom = KeyError("missing tool")
    with pytest.raises(KeyError) as info, run("fragile") as r:
        chat(c, openai_emulator, 81)
        raise boom
    assert info.value is boom
    assert r.closed and current_run() is None
    span = next(s for s in telemetry.spans() if s.name == "invoke_agent fragile")
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)[sc.ERROR_TYPE] == "KeyError"
    assert attrs(span)[sc.RUN_REQUESTS] == 1


def test_scopes_work_without_instrumentation() -> None:
    with session("conv-plain", propagate=True), run("plain") as r:
        assert current_run() is r
        assert baggage.get_baggage(sc.SESSION_ID) == "conv-plain"
        assert not trace.get_current_span().is_recording()
    assert r.usage.requests == 0 and r.closed
    assert session_usage("conv-plain") is None
    assert usage_summary() == UsageSummary.empty()


# --- usage_summary() ---------------------------------------------------------------------------


def test_usage_summary_breakdowns_table_and_dict(telemetry: Telemetry, openai_emulator: Any) -> None:
    c = client(openai_emulator)
    with session("conv-sum"):
        with run("writer"):
            openai_emulator.push(Reply(prompt_tokens=1000, cached_tokens=200, completion_tokens=500))
            c.chat.completions.create(model="gpt-4o", messages=MSGS)
        with run("checker"):
            openai_emulator.push(Reply(prompt_tokens=1000, completion_tokens=1000, reasoning_tokens=600))
            c.chat.completions.create(model="o4-mini", messages=MSGS)
    openai_emulator.push(Reply(prompt_tokens=10, completion_tokens=10))
    c.chat.completions.create(model="house-model", messages=MSGS)

    summary = usage_summary()
    writer_cost = 800 * 2.5e-6 + 200 * 1.25e-6 + 500 * 10e-6
    checker_cost = 1000 * 1.1e-6 + 1000 * 4.4e-6
    total = summary.total
    assert (total.requests, total.input_tokens, total.output_tokens) == (3, 2010, 1510)
    assert (total.cache_read_tokens, total.reasoning_tokens, total.unpriced_requests) == (200, 600, 1)
    assert total.cost_usd == pytest.approx(writer_cost + checker_cost, abs=1e-12)
    assert total.average_cost_usd == pytest.approx((writer_cost + checker_cost) / 2, abs=1e-12)
    assert total.output_ratio == pytest.approx(1510 / 3520)
    assert [r.name for r in summary.by_agent] == ["writer", "checker"]  # by cost, highest first
    assert {r.name: r.requests for r in summary.by_model} == {"gpt-4o": 1, "o4-mini": 1, "house-model": 1}
    assert [(r.name, r.requests) for r in summary.by_session] == [("conv-sum", 2)]

    d = summary.to_dict()
    assert d["total"]["requests"] == 3 and d["total"]["total_tokens"] == 3520
    assert d["by_agent"]["checker"]["reasoning_tokens"] == 600
    assert d["by_session"]["conv-sum"]["cost_usd"] == pytest.approx(writer_cost + checker_cost, abs=1e-12)

    text = str(summary)
    lines = text.splitlines()
    assert lines[0].split() == [
        "requests", "input", "output", "cache_read", "cache_write", "reasoning",
        "cost_usd", "avg_cost_usd", "usd/1k_out", "tok/call", "out/total", "unpriced", "no_usage", "errors",
    ]  # fmt: skip
    for section in ("total", "by agent", "by model", "by session"):
        assert section in lines
    rows = [line for line in lines if line.startswith("  ")]
    writer_row = next(line for line in lines if line.strip().startswith("writer"))
    assert writer_row.split()[1:4] == ["1", "1,000", "500"]
    assert f"{writer_cost:.6f}" in writer_row
    header_end = lines[0].index("errors") + len("errors")
    assert all(len(line) == header_end for line in rows if line.split()[-1].isdigit())
