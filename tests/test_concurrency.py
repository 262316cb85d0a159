"""Exact rollups under concurrency: 32 threads and 1,000 asyncio tasks, shared and separate scopes.

Every expected figure comes from the usage the client itself received, so the checks do not
depend on which scripted reply a request happened to get.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from opentelemetry.sdk.metrics.export import HistogramDataPoint

from emulators import Reply
from otel_llm_usage import Budget, CallLog
from otel_llm_usage import semconv as sc
from otel_llm_usage._guard import reported_sites
from otel_llm_usage.runs import Run, run, session, session_calls, session_usage, usage_summary
from otel_llm_usage.usage import Usage
from tests.conftest import Telemetry

# USD per token: input, cached input, output (reasoning is billed as output)
PRICES = {"gpt-4o": (2.5e-6, 1.25e-6, 10e-6), "gpt-4o-mini": (0.15e-6, 0.075e-6, 0.6e-6)}
MODELS = tuple(PRICES)
N_THREADS = 32
N_TASKS = 1000
# Budgets that never trigger, so the budget gauges are computed while the calls run.
GAUGED = [Budget(max_cost_usd=1e6, scope=scope) for scope in ("run", "session", "process")]


@dataclass
class Tally:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0


class Expected:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.tallies: defaultdict[str, Tally] = defaultdict(Tally)

    def add(self, keys: Iterable[str], model: str, usage: Any) -> None:
        cached = usage.prompt_tokens_details.cached_tokens
        reasoning = usage.completion_tokens_details.reasoning_tokens
        p_in, p_cached, p_out = PRICES[model]
        cost = (usage.prompt_tokens - cached) * p_in + cached * p_cached + usage.completion_tokens * p_out
        with self._lock:
            for key in (*keys, "process", f"model:{model}"):
                t = self.tallies[key]
                t.requests += 1
                t.input_tokens += usage.prompt_tokens
                t.output_tokens += usage.completion_tokens
                t.cache_read_tokens += cached
                t.reasoning_tokens += reasoning
                t.cost_usd += cost


def assert_matches(u: Usage | Any, t: Tally, what: str) -> None:
    got = (u.requests, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens)
    want = (t.requests, t.input_tokens, t.output_tokens, t.cache_read_tokens, t.reasoning_tokens)
    assert got == want, what
    assert u.cost_usd == pytest.approx(t.cost_usd, rel=0, abs=1e-12), what
    assert (u.cache_write_tokens, u.unpriced_requests, u.errors) == (0, 0, 0), what
    assert (u.priced_requests, u.usage_missing_requests) == (t.requests, 0), what


def assert_run_span(attrs: dict[str, Any], t: Tally, what: str) -> None:
    got = (
        attrs[sc.RUN_REQUESTS],
        attrs[sc.RUN_INPUT_TOKENS],
        attrs[sc.RUN_OUTPUT_TOKENS],
        attrs[sc.RUN_CACHE_READ_TOKENS],
        attrs[sc.RUN_REASONING_TOKENS],
    )
    assert got == (t.requests, t.input_tokens, t.output_tokens, t.cache_read_tokens, t.reasoning_tokens), what
    assert attrs[sc.RUN_COST_USD] == pytest.approx(t.cost_usd, rel=0, abs=1e-12), what


class GaugeReader:
    """Collects the budget gauges over and over from another thread while the calls run."""

    def __init__(self, t: Telemetry) -> None:
        self._t = t
        self._stop = threading.Event()
        self.process_spent: list[float] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._loop)

    def __enter__(self) -> GaugeReader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            try:
                spent = budget_spent(self._t)
                self.process_spent.append(spent[_PROCESS])
            except BaseException as exc:
                self.errors.append(exc)
            if self._stop.wait(0.005):  # a pace, not a synchronisation
                return


_PROCESS = (("llm_usage.budget.scope", "process"),)


def budget_spent(t: Telemetry) -> dict[tuple[tuple[str, Any], ...], float]:
    """`llm_usage.budget.spent` by scope (the labels other than the action), from one collection."""
    return {
        tuple((k, v) for k, v in (p.attributes or {}).items() if k == "llm_usage.budget.scope"): p.value
        for p in t.points(sc.METRIC_BUDGET_SPENT)
    }


def check_gauges(t: Telemetry, reader: GaugeReader, exp: Expected, sessions: Iterable[str]) -> None:
    """While calls ran, the process's spend only grew; at the end it is the exact total, and the
    session budget shows the most expensive held session."""
    assert not reader.errors, reader.errors
    assert "rollup.budget_gauges" not in reported_sites()
    seen = reader.process_spent
    assert len(seen) >= 2 and seen == sorted(seen)
    final = budget_spent(t)
    assert final[_PROCESS] == pytest.approx(exp.tallies["process"].cost_usd, rel=0, abs=1e-12)
    top = max(exp.tallies[f"session:{sid}"].cost_usd for sid in sessions)
    assert final[(("llm_usage.budget.scope", "session"),)] == pytest.approx(top, rel=0, abs=1e-12)
    assert final[(("llm_usage.budget.scope", "run"),)] == 0.0, "every run has ended"


def check_entries(log: CallLog, t: Tally, span_ids: set[str], what: str) -> None:
    """A run's or session's per-call entries: each an LLM span of its own, adding up to its totals."""
    assert (len(log), log.dropped) == (t.requests, 0), what
    assert sum(x.cost_usd or 0.0 for x in log) == pytest.approx(t.cost_usd, rel=0, abs=1e-12), what
    assert sum(x.usage.input for x in log if x.usage) == t.input_tokens, what
    ids = [x.span_id for x in log]
    assert len(set(ids)) == len(ids) and set(ids) <= span_ids, what


def llm_span_ids(t: Telemetry) -> set[str]:
    return {f"{s.context.span_id:016x}" for s in t.llm_spans() if s.context is not None}


def scripted(n: int) -> list[Reply]:
    # Varied cache and reasoning counts; prompt and completion sizes follow each request's text.
    return [Reply(cached_tokens=i % 5, reasoning_tokens=i % 3) for i in range(n)]


def message(i: int, k: int) -> list[ChatCompletionMessageParam]:
    return [{"role": "user", "content": "word " * ((i * 7 + k * 3) % 40)}]


def run_spans_by_id(t: Telemetry) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in t.spans():
        a: dict[str, Any] = dict(s.attributes or {})
        if sc.RUN_ID in a:
            out[str(a[sc.RUN_ID])] = a
    return out


def check_process(t: Telemetry, exp: Expected, emu: Any) -> None:
    summary = usage_summary()
    process = exp.tallies["process"]
    assert_matches(summary.total, process, "process")
    # The emulator counts a request before answering it (its token totals only after the answer
    # was written, possibly after the client has already read it), so only requests compare here.
    assert emu.served.requests == process.requests
    for row in summary.by_model:
        assert_matches(row, exp.tallies[f"model:{row.name}"], row.name)
    assert {r.name for r in summary.by_model} == set(MODELS)
    assert len(t.llm_spans()) == process.requests


def test_32_threads_into_shared_and_separate_runs_and_sessions(
    instrument_with: Any, openai_emulator: Any
) -> None:
    t = instrument_with(budgets=GAUGED)
    c = openai.OpenAI(
        base_url=openai_emulator.base_url,
        api_key="sk-test",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(
            limits=httpx2.Limits(max_connections=4, max_keepalive_connections=4)
        ),
        timeout=httpx2.Timeout(120.0),
    )
    openai_emulator.push(*scripted(N_THREADS * 5))
    exp = Expected()
    own: dict[int, Run] = {}
    solo: dict[int, Run] = {}
    start = threading.Barrier(N_THREADS)
    errors: list[BaseException] = []

    def call(keys: list[str], i: int, k: int) -> None:
        model = MODELS[(i + k) % 2]
        resp = c.chat.completions.create(model=model, messages=message(i, k))
        exp.add(keys, model, resp.usage)

    def alone(i: int) -> None:  # a fresh context: a root run in a session of its own
        with session(f"solo-{i}"), run("solo") as r:
            solo[i] = r
            call([f"run:solo-{i}", f"session:solo-{i}", "agent:solo"], i, 4)

    def worker(i: int) -> None:
        try:
            start.wait()
            for k in range(2):
                call(["run:shared", "session:shared", "agent:shared"], i, k)
            with run(f"t{i}", session_id=f"ts-{i % 8}") as r:
                own[i] = r
                for k in (2, 3):
                    call([f"run:t{i}", "run:shared", f"session:ts-{i % 8}", f"agent:t{i}"], i, k)
            contextvars.Context().run(alone, i)
        except BaseException as exc:
            errors.append(exc)

    with GaugeReader(t) as gauges, session("shared"), run("shared") as shared:
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(worker, i))
            for i in range(N_THREADS)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors, errors

    tallies = exp.tallies
    assert_matches(shared.usage, tallies["run:shared"], "shared run")
    spans = run_spans_by_id(t)
    assert_run_span(spans[shared.run_id], tallies["run:shared"], "shared run span")
    for i in range(N_THREADS):
        assert_matches(own[i].usage, tallies[f"run:t{i}"], f"run t{i}")
        assert_run_span(spans[own[i].run_id], tallies[f"run:t{i}"], f"run span t{i}")
        assert_matches(solo[i].usage, tallies[f"run:solo-{i}"], f"solo run {i}")
        assert spans[solo[i].run_id][sc.SESSION_RUNS] == 1
        u = session_usage(f"solo-{i}")
        assert u is not None
        assert_matches(u, tallies[f"session:solo-{i}"], f"session solo-{i}")
    for j in range(8):
        u = session_usage(f"ts-{j}")
        assert u is not None
        assert_matches(u, tallies[f"session:ts-{j}"], f"session ts-{j}")
    u = session_usage("shared")
    assert u is not None
    assert_matches(u, tallies["session:shared"], "session shared")
    agents = {r.name: r for r in usage_summary().by_agent}
    for key, tally in tallies.items():
        if key.startswith("agent:"):
            assert_matches(agents[key[len("agent:") :]], tally, key)
    check_process(t, exp, openai_emulator)
    span_ids = llm_span_ids(t)
    check_entries(shared.calls, tallies["run:shared"], span_ids, "shared run entries")
    for i in range(N_THREADS):
        check_entries(own[i].calls, tallies[f"run:t{i}"], span_ids, f"run t{i} entries")
        check_entries(solo[i].calls, tallies[f"run:solo-{i}"], span_ids, f"solo run {i} entries")
    for sid in ("shared", *(f"ts-{j}" for j in range(8))):
        log = session_calls(sid)
        assert log is not None
        check_entries(log, tallies[f"session:{sid}"], span_ids, f"session {sid} entries")
    sessions = ["shared", *(f"ts-{j}" for j in range(8)), *(f"solo-{i}" for i in range(N_THREADS))]
    check_gauges(t, gauges, exp, sessions)


async def test_1000_asyncio_tasks_with_a_shared_client(instrument_with: Any, openai_emulator: Any) -> None:
    t = instrument_with(budgets=GAUGED)
    # The emulator's listen backlog is small: a few kept-alive connections serve all the tasks, and
    # a generous connect timeout absorbs a loaded machine.
    http = openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=4, max_keepalive_connections=4)
    )
    ac = openai.AsyncOpenAI(
        base_url=openai_emulator.base_url,
        api_key="sk-test",
        max_retries=0,
        http_client=http,
        timeout=httpx2.Timeout(120.0),
    )
    openai_emulator.push(*scripted(N_TASKS * 3 // 2))
    exp = Expected()
    own: dict[int, Run] = {}

    async def call(keys: list[str], i: int, k: int) -> None:
        model = MODELS[(i + k) % 2]
        resp = await ac.chat.completions.create(model=model, messages=message(i, k))
        exp.add(keys, model, resp.usage)

    async def task(i: int) -> None:
        if i % 2 == 0:
            await call(["run:shared", "session:shared", "agent:shared"], i, 0)
            return
        async with run("task", session_id=f"as-{i % 50}") as r:
            own[i] = r
            for k in (1, 2):
                await call([f"run:{i}", "run:shared", f"session:as-{i % 50}", "agent:task"], i, k)

    async with ac:
        with GaugeReader(t) as gauges, session("shared"):
            async with run("shared") as shared:
                await asyncio.gather(*(asyncio.create_task(task(i)) for i in range(N_TASKS)))

    tallies = exp.tallies
    assert_matches(shared.usage, tallies["run:shared"], "shared run")
    spans = run_spans_by_id(t)
    assert_run_span(spans[shared.run_id], tallies["run:shared"], "shared run span")
    assert len(own) == N_TASKS // 2
    for i, r in own.items():
        assert_matches(r.usage, tallies[f"run:{i}"], f"run {i}")
        assert_run_span(spans[r.run_id], tallies[f"run:{i}"], f"run span {i}")
    for j in range(1, 50, 2):
        u = session_usage(f"as-{j}")
        assert u is not None
        assert_matches(u, tallies[f"session:as-{j}"], f"session as-{j}")
        assert u.requests == 2 * N_TASKS // 50
    u = session_usage("shared")
    assert u is not None
    assert_matches(u, tallies["session:shared"], "session shared")
    agents = {r.name: r for r in usage_summary().by_agent}
    assert_matches(agents["task"], tallies["agent:task"], "agent task")
    assert_matches(agents["shared"], tallies["agent:shared"], "agent shared")
    (point,) = [p for p in t.points(sc.METRIC_RUN_REQUESTS) if (p.attributes or {})[sc.AGENT_NAME] == "task"]
    assert isinstance(point, HistogramDataPoint)
    assert (point.count, point.sum) == (N_TASKS // 2, N_TASKS)
    check_process(t, exp, openai_emulator)
    span_ids = llm_span_ids(t)
    for i, r in own.items():
        check_entries(r.calls, tallies[f"run:{i}"], span_ids, f"run {i} entries")
    # The shared run saw 1,500 calls: the newest 1,000 are kept, each a distinct LLM span.
    kept = shared.calls
    assert (len(kept), kept.dropped, shared.usage.requests) == (1000, 500, 1500)
    assert len({x.span_id for x in kept}) == 1000 and {x.span_id for x in kept} <= span_ids
    log = session_calls("shared")
    assert log is not None
    check_entries(log, tallies["session:shared"], span_ids, "session shared entries")
    check_gauges(t, gauges, exp, ["shared", *(f"as-{j}" for j in range(1, 50, 2))])
