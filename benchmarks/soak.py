"""Soak: a million calls through the real SDKs, instrumented, in one process; memory and totals.

The real openai and anthropic clients call the repository's emulators, with
`otel_llm_usage.instrument()` on an SDK `TracerProvider` whose exporter drops every span plus a
processor that counts started and ended spans, and an SDK `MeterProvider` read by an
`InMemoryMetricReader`. The traffic is scripted from a seeded random generator:

- openai chat completions: plain; streamed with usage, drained or left by the caller right after
  the usage chunk (before `[DONE]`); streamed without usage and left after the first chunk; streams
  the emulator cuts before or after the usage chunk; HTTP 429 and 500;
- anthropic messages: plain; streamed, drained or left right after `message_delta` (before
  `message_stop`); streams the emulator cuts before or after `message_delta`, or ends with an
  `error` event; HTTP 429 and 500;
- calls in groups of 1-6, inside `session()` and `run()`, a session alone, a run alone, or no scope;
  most sessions are new, some come back, so the session ledger (`--max-sessions`) keeps evicting;
- one call in fifty on a model without a price.

Every `--sample-every` calls: resident memory (VmRSS), open spans (started, not ended), sessions
held, and whether every token total matches so far. At the end the package's totals are compared
with what the emulators served (their `served` totals, mapped onto the ledger: OpenAI
`prompt_tokens` is the input, Anthropic's input is `input_tokens` plus cache reads and writes):
the `llm_usage.tokens` counter by token type, requests (spans, the duration histogram, the process
ledger), errors, unpriced calls, and the run and session rollups against the calls made inside
runs and sessions. Exits 1 when a check fails, or when resident memory grows by more than
`--rss-limit-mib` after the warm-up (`--warmup` calls, by default a tenth of the run).

By default each client sends through an in-process transport (`EmulatorServer.transport`): the
emulator's handler produces the exact bytes it would put on the wire, without a socket. Loopback
HTTP (`--transport loopback`) costs about 1.7 times the CPU per call.

A stream the emulator cuts between `message_start` and `message_delta` is scripted with
`message_start` reporting 0 output tokens: the emulator counts no output before `message_delta`,
while the ledger keeps the output count `message_start` reported.

    PYTHONPATH=. python benchmarks/soak.py                                  # 1,000,000 calls
    PYTHONPATH=. python benchmarks/soak.py --calls 20000 --sample-every 2000 --json soak.json
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

import anthropic
import openai
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

import otel_llm_usage
from emulators import (
    AnthropicEmulator,
    AnthropicReply,
    AnthropicServedTotals,
    OpenAIEmulator,
    Reply,
    ServedTotals,
)
from otel_llm_usage import semconv as sc
from otel_llm_usage.instrumentor import active_instrumentor

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-mini")
ANTHROPIC_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-6")
UNPRICED_MODELS = {"openai": "house-chat-1", "anthropic": "house-claude-1"}
AGENTS = ("planner", "coder", "reviewer")
MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the ledger in one line."}]
TOKEN_TYPES = ("input", "output", "cache_read", "cache_write", "reasoning")
# Only a few recent requests are kept by the emulators: a million would hold gigabytes.
KEEP_REQUESTS = 16


# --- telemetry ---------------------------------------------------------------------------------


class DropExporter(SpanExporter):
    """Loses every span: nothing the package needs may depend on export."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class SpanCounter(SpanProcessor):
    """Started and ended spans, and what the ended LLM-call spans say about sessions and runs."""

    def __init__(self) -> None:
        self.started = 0
        self.ended = 0
        self.llm_calls = 0
        self.llm_errors = 0
        self.session_cost = 0.0
        self.run_cost = 0.0

    @property
    def open(self) -> int:
        return self.started - self.ended

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        self.ended += 1
        attrs = span.attributes or {}
        if attrs.get(sc.LLM_CALL_MARK) is not True:
            return
        self.llm_calls += 1
        if sc.ERROR_TYPE in attrs:
            self.llm_errors += 1
        cost = attrs.get(sc.USAGE_COST)
        if isinstance(cost, float):
            if sc.SESSION_ID in attrs:
                self.session_cost += cost
            if sc.AGENT_NAME in attrs:  # only run() puts an agent on calls here
                self.run_cost += cost


def _points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def _sum(points: Mapping[str, list[Any]], name: str, **match: str) -> float:
    """A counter's total, or a histogram's sum of samples, over the points matching `match`."""
    total = 0.0
    for p in points.get(name, ()):
        attrs = p.attributes or {}
        if all(attrs.get(k.replace("__", ".")) == v for k, v in match.items()):
            total += p.sum if isinstance(p, HistogramDataPoint) else p.value
    return total


def _count(points: Mapping[str, list[Any]], name: str, *, with_attr: str | None = None) -> int:
    """A histogram's number of samples, over the points that carry `with_attr` if given."""
    return sum(
        p.count for p in points.get(name, ()) if with_attr is None or with_attr in (p.attributes or {})
    )


def _tokens_by_type(points: Mapping[str, list[Any]]) -> dict[str, int]:
    return {t: int(_sum(points, sc.METRIC_TOKENS, llm_usage__token__type=t)) for t in TOKEN_TYPES}


def rss_kib(field_name: str = "VmRSS") -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field_name} in /proc/self/status")


# --- what the emulators served, on the ledger --------------------------------------------------


@dataclass
class Ledger:
    """Token buckets as the package counts them (input and output inclusive), plus requests."""

    requests: int = 0
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def add(self, other: Ledger) -> None:
        self.requests += other.requests
        self.input += other.input
        self.output += other.output
        self.cache_read += other.cache_read
        self.cache_write += other.cache_write
        self.reasoning += other.reasoning

    @property
    def tokens(self) -> int:
        return self.input + self.output

    def by_type(self) -> dict[str, int]:
        return {t: getattr(self, t) for t in TOKEN_TYPES}


def openai_ledger(s: ServedTotals) -> Ledger:
    return Ledger(s.requests, s.prompt_tokens, s.completion_tokens, s.cached_tokens, 0, s.reasoning_tokens)


def anthropic_ledger(s: AnthropicServedTotals) -> Ledger:
    inclusive = s.input_tokens + s.cache_read_input_tokens + s.cache_creation_input_tokens
    return Ledger(
        s.requests, inclusive, s.output_tokens, s.cache_read_input_tokens, s.cache_creation_input_tokens, 0
    )


def _minus(after: Ledger, before: Ledger) -> Ledger:
    return Ledger(**{k: getattr(after, k) - getattr(before, k) for k in asdict(after)})


# --- the traffic -------------------------------------------------------------------------------


@dataclass
class Clients:
    openai: openai.OpenAI
    anthropic: anthropic.Anthropic
    openai_emu: OpenAIEmulator
    anthropic_emu: AnthropicEmulator


# A scenario scripts the emulator's next reply and makes one SDK call with the model given.
Scenario = Callable[[Clients, random.Random, str], None]


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


def _openai_reply(rng: random.Random, **kwargs: Any) -> Reply:
    prompt = rng.randint(20, 4000)
    completion = rng.randint(1, 800)
    return Reply(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=rng.choice((0, 0, rng.randint(0, prompt))),
        reasoning_tokens=rng.choice((0, 0, rng.randint(0, completion))),
        chunks=rng.randint(1, 5),
        **kwargs,
    )


def _chat(c: Clients, model: str, **kwargs: Any) -> Any:
    return c.openai.chat.completions.create(model=model, messages=MESSAGES, **kwargs)


def oa_plain(c: Clients, rng: random.Random, model: str) -> None:
    c.openai_emu.push(_openai_reply(rng))
    _chat(c, model)


def oa_stream(c: Clients, rng: random.Random, model: str) -> None:
    c.openai_emu.push(_openai_reply(rng))
    _drain(_chat(c, model, stream=True, stream_options={"include_usage": True}))


def oa_stream_left_after_usage(c: Clients, rng: random.Random, model: str) -> None:
    c.openai_emu.push(_openai_reply(rng))
    with _chat(c, model, stream=True, stream_options={"include_usage": True}) as stream:
        for chunk in stream:
            if chunk.usage is not None:
                break


def oa_stream_left_without_usage(c: Clients, rng: random.Random, model: str) -> None:
    # The server sends no usage (the instrumentation asks for it, as by default, and is ignored): a
    # stream left early would otherwise have had usage written that nobody read.
    c.openai_emu.push(_openai_reply(rng, usage_in_stream=False))
    stream = _chat(c, model, stream=True)
    for _ in stream:
        break
    del stream  # dropped without close(): the span ends when the stream is collected


def oa_stream_cut_before_usage(c: Clients, rng: random.Random, model: str) -> None:
    reply = _openai_reply(rng)
    reply.cut_after = rng.randint(0, reply.chunks)
    c.openai_emu.push(reply)
    _drain(_chat(c, model, stream=True, stream_options={"include_usage": True}))


def oa_stream_cut_after_usage(c: Clients, rng: random.Random, model: str) -> None:
    reply = _openai_reply(rng)
    reply.cut_after = reply.chunks + 1  # the usage chunk is sent, `[DONE]` never is
    c.openai_emu.push(reply)
    _drain(_chat(c, model, stream=True, stream_options={"include_usage": True}))


def oa_http_error(c: Clients, rng: random.Random, model: str) -> None:
    c.openai_emu.push(Reply(status=rng.choice((429, 500))))
    _chat(c, model, stream=rng.random() < 0.5)


def _anthropic_reply(rng: random.Random, **kwargs: Any) -> AnthropicReply:
    # Cache writes are given in total, with the 1-hour part of them (the rest is 5-minute writes).
    writes = rng.choice((0, 0, rng.randint(0, 2500)))
    return AnthropicReply(
        input_tokens=rng.randint(1, 3000),
        output_tokens=rng.randint(1, 900),
        cache_read_input_tokens=rng.choice((0, rng.randint(0, 6000))),
        cache_creation_input_tokens=writes,
        cache_1h_input_tokens=rng.choice((0, 0, rng.randint(0, writes))),
        chunks=rng.randint(1, 5),
        **kwargs,
    )


def _message(c: Clients, model: str, **kwargs: Any) -> Any:
    return c.anthropic.messages.create(model=model, max_tokens=1024, messages=MESSAGES, **kwargs)


def _delta_index(reply: AnthropicReply) -> int:
    """Index of `message_delta`: message_start, content_block_start, ping, the deltas, block stop."""
    return 3 + reply.chunks + 1


def an_plain(c: Clients, rng: random.Random, model: str) -> None:
    c.anthropic_emu.push(_anthropic_reply(rng))
    _message(c, model)


def an_stream(c: Clients, rng: random.Random, model: str) -> None:
    c.anthropic_emu.push(_anthropic_reply(rng))
    _drain(_message(c, model, stream=True))


def an_stream_left_after_delta(c: Clients, rng: random.Random, model: str) -> None:
    c.anthropic_emu.push(_anthropic_reply(rng))
    with _message(c, model, stream=True) as stream:
        for event in stream:
            if event.type == "message_delta":
                break


def an_stream_cut_before_delta(c: Clients, rng: random.Random, model: str) -> None:
    reply = _anthropic_reply(rng, start_output_tokens=0)
    reply.cut_after = rng.randint(1, _delta_index(reply))
    c.anthropic_emu.push(reply)
    _drain(_message(c, model, stream=True))


def an_stream_cut_after_delta(c: Clients, rng: random.Random, model: str) -> None:
    reply = _anthropic_reply(rng)
    reply.cut_after = _delta_index(reply) + 1  # `message_stop` is never sent
    c.anthropic_emu.push(reply)
    _drain(_message(c, model, stream=True))


def an_stream_error_event(c: Clients, rng: random.Random, model: str) -> None:
    reply = _anthropic_reply(rng, start_output_tokens=0)
    reply.error_after = rng.randint(1, _delta_index(reply))
    reply.stream_error_type = rng.choice(("overloaded_error", "api_error"))
    c.anthropic_emu.push(reply)
    _drain(_message(c, model, stream=True))


def an_http_error(c: Clients, rng: random.Random, model: str) -> None:
    c.anthropic_emu.push(AnthropicReply(status=rng.choice((429, 500))))
    _message(c, model, stream=rng.random() < 0.5)


@dataclass(frozen=True)
class Kind:
    provider: str
    run: Scenario
    weight: int
    raises: bool  # whether the SDK call must raise (an HTTP error, a cut stream, an error event)

    @property
    def name(self) -> str:
        return self.run.__name__


KINDS: tuple[Kind, ...] = (
    Kind("openai", oa_plain, 40, False),
    Kind("openai", oa_stream, 20, False),
    Kind("openai", oa_stream_left_after_usage, 10, False),
    Kind("openai", oa_stream_left_without_usage, 8, False),
    Kind("openai", oa_stream_cut_before_usage, 5, True),
    Kind("openai", oa_stream_cut_after_usage, 5, True),
    Kind("openai", oa_http_error, 12, True),
    Kind("anthropic", an_plain, 40, False),
    Kind("anthropic", an_stream, 20, False),
    Kind("anthropic", an_stream_left_after_delta, 10, False),
    Kind("anthropic", an_stream_cut_before_delta, 6, True),
    Kind("anthropic", an_stream_cut_after_delta, 4, True),
    Kind("anthropic", an_stream_error_event, 8, True),
    Kind("anthropic", an_http_error, 12, True),
)


def _http_library(base_client: ModuleType) -> ModuleType:
    """The HTTP library an SDK sends through: `httpx2` in recent releases, `httpx` before."""
    library = getattr(base_client, "httpx2", None) or base_client.httpx
    assert isinstance(library, ModuleType)
    return library


def make_clients(transport: str, stack: ExitStack) -> Clients:
    """Clients of fresh emulators, closed by `stack`: in-process transports, or loopback HTTP."""
    openai_emu, anthropic_emu = OpenAIEmulator(), AnthropicEmulator()
    for emu in (openai_emu, anthropic_emu):
        emu.keep_requests = KEEP_REQUESTS
    if transport == "loopback":
        stack.enter_context(openai_emu)
        stack.enter_context(anthropic_emu)
        oa = openai.OpenAI(base_url=openai_emu.base_url, api_key="soak", max_retries=0)
        an = anthropic.Anthropic(base_url=anthropic_emu.base_url, api_key="soak", max_retries=0)
    elif transport == "inprocess":
        oa_http = _http_library(importlib.import_module("openai._base_client"))
        an_http = _http_library(importlib.import_module("anthropic._base_client"))
        oa = openai.OpenAI(
            base_url="http://openai.emulator.invalid/v1",
            api_key="soak",
            max_retries=0,
            http_client=oa_http.Client(transport=openai_emu.transport(oa_http)),
        )
        an = anthropic.Anthropic(
            base_url="http://anthropic.emulator.invalid",
            api_key="soak",
            max_retries=0,
            http_client=an_http.Client(transport=anthropic_emu.transport(an_http)),
        )
    else:
        raise ValueError(f"transport must be 'inprocess' or 'loopback', not {transport!r}")
    stack.callback(oa.close)
    stack.callback(an.close)
    return Clients(oa, an, openai_emu, anthropic_emu)


@dataclass
class Tally:
    """What the soak itself saw: calls, outcomes, and the served usage of calls in runs and sessions."""

    calls: int = 0
    errors: int = 0
    unpriced: int = 0
    surprises: int = 0  # calls that raised when they should not have, or the reverse
    unexpected: list[str] = field(default_factory=list)  # the first few of them
    by_kind: dict[str, int] = field(default_factory=dict)
    in_session: Ledger = field(default_factory=Ledger)
    in_run: Ledger = field(default_factory=Ledger)
    runs: int = 0
    runs_in_session: int = 0
    sessions: int = 0
    # The live `Run.usage` of each run once it ended, summed.
    run_usage_requests: int = 0
    run_usage_tokens: int = 0


def _served(c: Clients) -> Ledger:
    out = openai_ledger(c.openai_emu.served)
    out.add(anthropic_ledger(c.anthropic_emu.served))
    return out


def one_call(c: Clients, rng: random.Random, kind: Kind, tally: Tally) -> Ledger:
    """Make one call of `kind`; returns what the emulator served for it, on the ledger."""
    if kind.provider == "openai":
        model = UNPRICED_MODELS["openai"] if rng.random() < 0.02 else rng.choice(OPENAI_MODELS)
        before = openai_ledger(c.openai_emu.served)
    else:
        model = UNPRICED_MODELS["anthropic"] if rng.random() < 0.02 else rng.choice(ANTHROPIC_MODELS)
        before = anthropic_ledger(c.anthropic_emu.served)
    raised: BaseException | None = None
    try:
        kind.run(c, rng, model)
    except Exception as exc:  # whatever the SDK raises; the emulator scripted it
        raised = exc
    if kind.provider == "openai":
        after = openai_ledger(c.openai_emu.served)
    else:
        after = anthropic_ledger(c.anthropic_emu.served)
    served = _minus(after, before)
    tally.calls += 1
    tally.by_kind[kind.name] = tally.by_kind.get(kind.name, 0) + 1
    tally.errors += raised is not None
    if (raised is not None) != kind.raises or served.requests != 1:
        tally.surprises += 1
        if len(tally.unexpected) < 20:
            tally.unexpected.append(f"{kind.name}: raised {raised!r}, {served.requests} requests served")
    # Every scripted usage has input >= 1, so usage reached the caller iff tokens were served.
    if model in UNPRICED_MODELS.values() and served.tokens:
        tally.unpriced += 1
    return served


def _scope(session_id: str | None, agent: str | None, stack: ExitStack) -> otel_llm_usage.Run | None:
    if session_id is not None:
        stack.enter_context(otel_llm_usage.session(session_id, user_id=f"user-{hash(session_id) % 97}"))
    if agent is None:
        return None
    return stack.enter_context(otel_llm_usage.run(agent))


def run_soak(
    calls: int,
    sample_every: int,
    *,
    max_sessions: int = 1000,
    transport: str = "inprocess",
    seed: int = 1,
    warmup: int | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the soak and return every figure and check (see the module docstring)."""
    if active_instrumentor() is not None:
        raise RuntimeError("already instrumented: the soak needs its own providers")
    counter = SpanCounter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(DropExporter()))
    tp.add_span_processor(counter)
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    rng = random.Random(seed)
    cum_weights = list(_accumulate(k.weight for k in KINDS))
    tally = Tally()
    samples: list[dict[str, Any]] = []
    max_held = 0
    warmup = warmup if warmup is not None else max(sample_every, calls // 10)

    with ExitStack() as stack:
        otel_llm_usage.instrument(
            tracer_provider=tp,
            meter_provider=mp,
            max_sessions=max_sessions,
            providers=["openai", "anthropic"],
        )
        stack.callback(otel_llm_usage.uninstrument)
        clients = make_clients(transport, stack)
        t0, c0 = time.perf_counter(), time.process_time()

        def sample() -> None:
            nonlocal max_held
            held = len(otel_llm_usage.usage_summary().by_session)
            max_held = max(max_held, held)
            ours = _tokens_by_type(_points(reader))
            point = {
                "calls": tally.calls,
                "elapsed_s": round(time.perf_counter() - t0, 3),
                "rss_mib": round(rss_kib() / 1024, 2),
                "open_spans": counter.open,
                "held_sessions": held,
                "tokens_match": ours == _served(clients).by_type(),
            }
            samples.append(point)
            if progress is not None:
                progress(point)

        gc.collect()
        sample()
        next_sample = sample_every
        while tally.calls < calls:
            size = min(rng.randint(1, 6), calls - tally.calls)
            shape = rng.random()
            session_id: str | None = None
            if shape < 0.75:
                if tally.sessions and rng.random() < 0.2:
                    session_id = f"s-{rng.randrange(tally.sessions)}"  # an old session comes back
                else:
                    session_id = f"s-{tally.sessions}"
                    tally.sessions += 1
            agent = rng.choice(AGENTS) if shape < 0.5 or 0.75 <= shape < 0.85 else None
            with ExitStack() as scope:
                r = _scope(session_id, agent, scope)
                for _ in range(size):
                    kind = rng.choices(KINDS, cum_weights=cum_weights)[0]
                    served = one_call(clients, rng, kind, tally)
                    if session_id is not None:
                        tally.in_session.add(served)
                    if agent is not None:
                        tally.in_run.add(served)
            if r is not None:
                tally.runs += 1
                tally.runs_in_session += session_id is not None
                u = r.usage.snapshot()
                tally.run_usage_requests += u.requests
                tally.run_usage_tokens += u.input_tokens + u.output_tokens
            # Sampled between groups, so no run or call is open by design.
            if tally.calls >= next_sample:
                sample()
                next_sample += sample_every
        if samples[-1]["calls"] != tally.calls:
            sample()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        served = _served(clients)
        summary = otel_llm_usage.usage_summary().total
        before_shutdown = _points(reader)
    # uninstrument() has recorded the histograms of the sessions still held.
    points = _points(reader)
    return _report(
        calls=calls,
        sample_every=sample_every,
        max_sessions=max_sessions,
        transport=transport,
        seed=seed,
        warmup=warmup,
        wall=wall,
        cpu=cpu,
        samples=samples,
        max_held=max_held,
        tally=tally,
        served=served,
        summary=summary,
        live=before_shutdown,
        points=points,
        counter=counter,
    )


def _accumulate(values: Iterator[int] | Any) -> Iterator[int]:
    total = 0
    for v in values:
        total += v
        yield total


def _check(name: str, ours: float, expected: float, *, approx: bool = False) -> dict[str, Any]:
    ok = math.isclose(ours, expected, rel_tol=1e-9, abs_tol=1e-9) if approx else ours == expected
    return {"check": name, "ours": ours, "expected": expected, "ok": ok}


def _report(
    *,
    calls: int,
    sample_every: int,
    max_sessions: int,
    transport: str,
    seed: int,
    warmup: int,
    wall: float,
    cpu: float,
    samples: list[dict[str, Any]],
    max_held: int,
    tally: Tally,
    served: Ledger,
    summary: Any,
    live: Mapping[str, list[Any]],
    points: Mapping[str, list[Any]],
    counter: SpanCounter,
) -> dict[str, Any]:
    tokens = _tokens_by_type(live)
    expected_tokens = served.by_type()
    checks = [
        _check(f"llm_usage.tokens{{type={t}}} == served", tokens[t], expected_tokens[t]) for t in TOKEN_TYPES
    ]
    checks += [
        _check("calls made == requests served", tally.calls, served.requests),
        _check("LLM spans ended == requests served", counter.llm_calls, served.requests),
        _check(
            "gen_ai.client.operation.duration count == requests served",
            _count(live, sc.METRIC_OPERATION_DURATION),
            served.requests,
        ),
        _check("process ledger requests == requests served", summary.requests, served.requests),
        _check("process ledger input == served", summary.input_tokens, served.input),
        _check("process ledger output == served", summary.output_tokens, served.output),
        _check("process ledger cache_read == served", summary.cache_read_tokens, served.cache_read),
        _check("process ledger cache_write == served", summary.cache_write_tokens, served.cache_write),
        _check("process ledger reasoning == served", summary.reasoning_tokens, served.reasoning),
        _check("calls that raised == error spans", counter.llm_errors, tally.errors),
        _check(
            "error.type on the duration histogram == calls that raised",
            _count(live, sc.METRIC_OPERATION_DURATION, with_attr=sc.ERROR_TYPE),
            tally.errors,
        ),
        _check("process ledger errors == calls that raised", summary.errors, tally.errors),
        _check(
            "llm_usage.requests.unpriced == unpriced calls with usage",
            _sum(live, sc.METRIC_UNPRICED),
            tally.unpriced,
        ),
        _check(
            "process ledger unpriced == unpriced calls with usage", summary.unpriced_requests, tally.unpriced
        ),
        _check(
            "llm_usage.cost == process ledger cost", _sum(live, sc.METRIC_COST), summary.cost_usd, approx=True
        ),
        _check("runs: Run.usage requests == served in runs", tally.run_usage_requests, tally.in_run.requests),
        _check("runs: Run.usage tokens == served in runs", tally.run_usage_tokens, tally.in_run.tokens),
        _check("llm_usage.run.requests samples == runs", _count(points, sc.METRIC_RUN_REQUESTS), tally.runs),
        _check(
            "llm_usage.run.requests sum == served in runs",
            _sum(points, sc.METRIC_RUN_REQUESTS),
            tally.in_run.requests,
        ),
        _check(
            "llm_usage.run.tokens sum == served in runs",
            _sum(points, sc.METRIC_RUN_TOKENS),
            tally.in_run.tokens,
        ),
        _check(
            "llm_usage.run.cost sum == cost of calls in runs",
            _sum(points, sc.METRIC_RUN_COST),
            counter.run_cost,
            approx=True,
        ),
        _check(
            "llm_usage.session.requests sum == served in sessions",
            _sum(points, sc.METRIC_SESSION_REQUESTS),
            tally.in_session.requests,
        ),
        _check(
            "llm_usage.session.tokens sum == served in sessions",
            _sum(points, sc.METRIC_SESSION_TOKENS),
            tally.in_session.tokens,
        ),
        _check(
            "llm_usage.session.runs sum == runs in sessions",
            _sum(points, sc.METRIC_SESSION_RUNS),
            tally.runs_in_session,
        ),
        _check(
            "llm_usage.session.cost sum == cost of calls in sessions",
            _sum(points, sc.METRIC_SESSION_COST),
            counter.session_cost,
            approx=True,
        ),
        _check("open spans at the end", counter.open, 0),
        _check("most sessions held at a sample <= max_sessions", min(max_held, max_sessions), max_held),
        _check("token totals matched at every sample", sum(not s["tokens_match"] for s in samples), 0),
        _check("calls that went as scripted", tally.calls - tally.surprises, tally.calls),
    ]
    after_warmup = next((s for s in samples if s["calls"] >= warmup), samples[-1])
    end = samples[-1]
    memory = {
        "rss_start_mib": samples[0]["rss_mib"],
        "rss_after_warmup_mib": after_warmup["rss_mib"],
        "warmup_calls": after_warmup["calls"],
        "rss_end_mib": end["rss_mib"],
        "rss_max_mib": round(rss_kib("VmHWM") / 1024, 2),
        "rss_growth_after_warmup_mib": round(end["rss_mib"] - after_warmup["rss_mib"], 2),
        "open_spans_max": max(s["open_spans"] for s in samples),
        "held_sessions_max": max_held,
    }
    return {
        "config": {
            "calls": calls,
            "sample_every": sample_every,
            "max_sessions": max_sessions,
            "transport": transport,
            "seed": seed,
            "python": sys.version.split()[0],
            "openai": openai.__version__,
            "anthropic": anthropic.__version__,
        },
        "throughput": {
            "wall_s": round(wall, 2),
            "calls_per_s": round(calls / wall, 1) if wall else None,
            "cpu_us_per_call": round(cpu / calls * 1e6, 1) if calls else None,
        },
        "memory": memory,
        "samples": samples,
        "totals": {
            "tokens": {t: {"ours": tokens[t], "served": expected_tokens[t]} for t in TOKEN_TYPES},
            "requests": served.requests,
            "errors": tally.errors,
            "unpriced": tally.unpriced,
            "sessions_started": tally.sessions,
            "runs": tally.runs,
            "cost_usd": summary.cost_usd,
        },
        "calls_by_kind": dict(sorted(tally.by_kind.items())),
        "unexpected": tally.unexpected,
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }


# --- output ------------------------------------------------------------------------------------


def markdown(result: Mapping[str, Any], rss_limit_mib: float | None = None) -> str:
    cfg, thr, mem = result["config"], result["throughput"], result["memory"]
    lines = [
        f"## Soak: {cfg['calls']:,} calls, {cfg['transport']} transport, one process",
        "",
        f"Python {cfg['python']}, openai {cfg['openai']}, anthropic {cfg['anthropic']}; "
        f"max_sessions={cfg['max_sessions']:,}, seed {cfg['seed']}.",
        "",
        "| throughput | |",
        "|---|---|",
        f"| wall time | {thr['wall_s']:,.1f} s |",
        f"| calls per second (wall) | {thr['calls_per_s']:,.1f} |",
        f"| CPU per call | {thr['cpu_us_per_call']:,.1f} µs |",
        "",
        "| calls | elapsed s | VmRSS MiB | open spans | sessions held | totals match |",
        "|---:|---:|---:|---:|---:|:---:|",
    ]
    for s in result["samples"]:
        lines.append(
            f"| {s['calls']:,} | {s['elapsed_s']:,.1f} | {s['rss_mib']:.1f} | {s['open_spans']} | "
            f"{s['held_sessions']:,} | {'yes' if s['tokens_match'] else 'NO'} |"
        )
    growth = mem["rss_growth_after_warmup_mib"]
    verdict = ""
    if rss_limit_mib is not None:
        verdict = " (flat)" if growth <= rss_limit_mib else f" (over the {rss_limit_mib} MiB limit)"
    lines += [
        "",
        f"RSS: start {mem['rss_start_mib']:.1f} MiB, {mem['rss_after_warmup_mib']:.1f} MiB after warm-up "
        f"({mem['warmup_calls']:,} calls), end {mem['rss_end_mib']:.1f} MiB, max (VmHWM) "
        f"{mem['rss_max_mib']:.1f} MiB; growth after warm-up {growth:+.1f} MiB{verdict}. "
        f"Open spans at most {mem['open_spans_max']} at a sample; sessions held at most "
        f"{mem['held_sessions_max']:,}.",
        "",
        "| token type | llm_usage.tokens | served by the emulators |",
        "|---|---:|---:|",
    ]
    for t, v in result["totals"]["tokens"].items():
        lines.append(f"| {t} | {v['ours']:,} | {v['served']:,} |")
    tot = result["totals"]
    lines += [
        "",
        f"{tot['requests']:,} requests, {tot['errors']:,} raised to the caller, "
        f"{tot['unpriced']:,} unpriced, {tot['sessions_started']:,} sessions, {tot['runs']:,} runs, "
        f"${tot['cost_usd']:,.2f}.",
        "",
        "| check | ours | expected | ok |",
        "|---|---:|---:|:---:|",
    ]
    for c in result["checks"]:
        ours, expected = c["ours"], c["expected"]
        fmt = (
            (lambda v: f"{v:,.6f}")
            if isinstance(ours, float) or isinstance(expected, float)
            else (lambda v: f"{v:,}")
        )
        lines.append(f"| {c['check']} | {fmt(ours)} | {fmt(expected)} | {'yes' if c['ok'] else 'NO'} |")
    if result["unexpected"]:
        lines += ["", "Calls that did not go as scripted:", *[f"- {u}" for u in result["unexpected"]]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--sample-every", type=int, default=50_000)
    parser.add_argument("--max-sessions", type=int, default=1000)
    parser.add_argument("--transport", choices=("inprocess", "loopback"), default="inprocess")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--warmup", type=int, default=None, help="calls before the RSS baseline (default: 10%%)"
    )
    parser.add_argument(
        "--rss-limit-mib", type=float, default=32.0, help="growth after warm-up that fails the run"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    args = parser.parse_args(argv)

    def progress(point: Mapping[str, Any]) -> None:
        print(
            f"{point['calls']:>10,} calls  {point['elapsed_s']:>9.1f} s  {point['rss_mib']:>8.1f} MiB  "
            f"open spans {point['open_spans']}  sessions {point['held_sessions']:,}  "
            f"totals {'match' if point['tokens_match'] else 'DIFFER'}",
            file=sys.stderr,
            flush=True,
        )

    result = run_soak(
        args.calls,
        args.sample_every,
        max_sessions=args.max_sessions,
        transport=args.transport,
        seed=args.seed,
        warmup=args.warmup,
        progress=progress,
    )
    result["memory"]["rss_limit_mib"] = args.rss_limit_mib
    flat = result["memory"]["rss_growth_after_warmup_mib"] <= args.rss_limit_mib
    result["memory"]["flat"] = flat
    print(markdown(result, args.rss_limit_mib))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0 if result["ok"] and flat else 1


if __name__ == "__main__":
    sys.exit(main())
