"""otel_llm_usage against the peer instrumentations: cost per call and per chunk, and what each records.

Every contender gets a virtual environment of its own under `.bench-venvs/<name>`, built once and
reused (`--rebuild` builds them again), with the same openai, anthropic and OpenTelemetry SDK
versions (`SDK_PINS`, `OTEL_PINS`):

  none            the SDKs only: the baseline every figure is taken against (a global tracer
                  provider is set, so anthropic's own tracing runs in it)
  none-untraced   the SDKs only with anthropic's own tracing off (ANTHROPIC_OPEN_TELEMETRY=false):
                  the clean baseline; this package's figures are also given against it
  otel-llm-usage  this package (`pip install -e .[openai,anthropic]`)
  openllmetry     opentelemetry-instrumentation-openai / -anthropic (Traceloop's OpenLLMetry)
  openai-v2       opentelemetry-instrumentation-openai-v2 (the official contrib one; openai only)
  openinference   openinference-instrumentation-openai / -anthropic (Arize)
  openlit         openlit, as `openlit.init()` sets it up

Each contender runs in its own process: the real openai and anthropic clients on an in-process mock
transport that returns a fixed response (non-streaming, or a stream of 50 chunks and a closing
event), a global SDK TracerProvider whose SimpleSpanProcessor hands every span to an exporter that
drops it, and a global MeterProvider with an InMemoryMetricReader that is never collected while
timing. The providers are global because OpenLIT only reuses global ones; a consequence is that
anthropic 2.x traces its own calls in every environment (one SDK span per call), and what each
contender does about that span shows in its span count. Message content capture is switched off
for every contender, so all record the same kind of data; no exporter of any contender sends
anything anywhere (see `worker_env`), and OpenLIT gets a local price file instead of fetching one.

Passes, in this order:

  capture       one short process per contender with an in-memory exporter: which attributes carry
                input, output, cache read / write and reasoning tokens, cost and time to first
                chunk, whether their values are right for the fixed response, and spans per call
  timing        `--rounds` rounds; in each, one fresh process per contender, taking turns batch by
                batch so that a busy moment of this shared machine falls on every contender alike;
                added µs per call and per chunk against `none` (wall clock and CPU time), peak RSS,
                import + instrument time
  instructions  (`--instructions`) each worker once under `valgrind --tool=callgrind`: instructions
                per call, per stream and per extra chunk, counts that do not depend on machine load
  profile       (`--profile`) cProfile of the otel-llm-usage worker: where its time goes

    make compare                                            # capture + 5 timing rounds
    python3 benchmarks/compare.py --instructions --json compare.json
    python3 benchmarks/compare.py --rounds 2 --calls 400 --streams 100 --profile   # quick look

callgrind comes from Debian: `apt-get update && apt-get install -y valgrind`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

try:  # imported as a module of the repository (the tests)
    from benchmarks import overhead
    from benchmarks._callgrind import (
        VALGRIND_ARGS,
        callgrind_totals,
        marker,
        settle_heap,
        start_instrumentation,
    )
except ImportError:  # run as a script, in any of the environments: benchmarks/ is sys.path[0]
    import overhead  # type: ignore[no-redef]
    from _callgrind import (  # type: ignore[no-redef]
        VALGRIND_ARGS,
        callgrind_totals,
        marker,
        settle_heap,
        start_instrumentation,
    )

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENVS = os.path.join(ROOT, ".bench-venvs")

# The same SDKs everywhere. openlit 1.45 declares openai<3 and anthropic<1: it is installed with its
# own pins first and these are installed over them afterwards (see Contender.force_sdks). 1.45.1 is
# the newest OpenTelemetry SDK that openlit's dependencies resolve with (some of the instrumentations
# it requires have no release matching 1.45.2's semantic conventions).
SDK_PINS = ("openai==3.57.0", "anthropic==2.14.0")
OTEL_PINS = ("opentelemetry-api==1.45.1", "opentelemetry-sdk==1.45.1")


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    packages: tuple[str, ...] = ()
    instruments: tuple[str, ...] = ("openai", "anthropic")
    editable: bool = False
    force_sdks: bool = False
    # The environment it runs in, when it shares another contender's (default: its own name).
    venv: str = ""
    # The anthropic SDK's own tracing switched off (ANTHROPIC_OPEN_TELEMETRY=false).
    sdk_tracing_off: bool = False

    @property
    def env_name(self) -> str:
        return self.venv or self.name


CONTENDERS = (
    Contender("none", "none (SDKs only)", instruments=()),
    # The clean baseline: the same SDKs with anthropic's own tracing off, so its anthropic figures
    # contain no SDK span. `none` keeps that tracing (a global tracer provider is set), and the
    # package, which replaces the SDK's span with its own, is measured against both.
    Contender(
        "none-untraced", "none, anthropic SDK tracing off", instruments=(), venv="none", sdk_tracing_off=True
    ),
    Contender("otel-llm-usage", "otel-llm-usage (this package)", editable=True),
    Contender(
        "openllmetry",
        "OpenLLMetry 0.62.4",
        ("opentelemetry-instrumentation-openai==0.62.4", "opentelemetry-instrumentation-anthropic==0.62.4"),
    ),
    # 2.4b0 imports httpx (openai 2.x's HTTP library) without declaring it, and openai 3.x does
    # not bring it; it also imports opentelemetry.util.genai.instruments, which util-genai 1.2b0
    # removed although 2.4b0 accepts any util-genai >= 0.4b0.dev.
    Contender(
        "openai-v2",
        "openai-v2 2.4b0",
        (
            "opentelemetry-instrumentation-openai-v2==2.4b0",
            "opentelemetry-util-genai==1.1b0",
            "httpx==0.28.1",
        ),
        ("openai",),
    ),
    Contender(
        "openinference",
        "OpenInference 0.1.66 / 3.1.0",
        ("openinference-instrumentation-openai==0.1.66", "openinference-instrumentation-anthropic==3.1.0"),
    ),
    Contender("openlit", "OpenLIT 1.45.0", ("openlit==1.45.0",), force_sdks=True),
)
BY_NAME = {c.name: c for c in CONTENDERS}
REPORTED_DISTS = (
    "openai",
    "anthropic",
    "httpx2",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "otel-llm-usage",
    "opentelemetry-instrumentation-openai",
    "opentelemetry-instrumentation-anthropic",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "openinference-instrumentation-openai",
    "openinference-instrumentation-anthropic",
    "openinference-instrumentation",
    "openlit",
)

# Instrumentation scopes of the spans the SDKs make themselves (anthropic 2.x, with a global provider).
SDK_SCOPES = ("com.anthropic.sdk.python",)
KINDS = ("openai_call", "openai_stream", "anthropic_call", "anthropic_stream")
STREAM_KINDS = ("openai_stream", "anthropic_stream")

# --- the anthropic workload (the openai one comes from overhead.py) ------------------------------

ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_REQUEST_MODEL = "claude-sonnet-4-5"
ANTHROPIC_RESPONSE_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_USAGE: dict[str, Any] = {
    "input_tokens": 200,
    "cache_creation_input_tokens": 500,
    "cache_read_input_tokens": 1000,
    "cache_creation": {"ephemeral_5m_input_tokens": 500, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 300,
    "service_tier": "standard",
}

# What every contender should record for the fixed responses. Input includes cache reads and
# writes and output includes reasoning, as the GenAI semantic conventions define them. Costs from
# the published per-million prices: gpt-4o-mini $0.15 in, $0.075 cached, $0.60 out;
# claude-sonnet-4-5 $3 in, $3.75 5-minute cache write, $0.30 cache read, $15 out.
EXPECTED: dict[str, dict[str, float]] = {
    "openai": {
        "input": 1200,
        "output": 300,
        "cache_read": 1024,
        "reasoning": 64,
        # (1200 - 1024) * 0.15 + 1024 * 0.075 + 300 * 0.60, per million
        "cost": (176 * 0.15 + 1024 * 0.075 + 300 * 0.60) / 1e6,
    },
    "anthropic": {
        "input": 1700,
        "output": 300,
        "cache_read": 1000,
        "cache_write": 500,
        # 200 * 3 + 500 * 3.75 + 1000 * 0.30 + 300 * 15, per million
        "cost": (200 * 3 + 500 * 3.75 + 1000 * 0.30 + 300 * 15) / 1e6,
    },
}
# Values that are wrong but explainable: a number that matches one of these is named in the table.
KNOWN_MISREADINGS: dict[str, dict[float, str]] = {
    "openai": {176: "uncached input only", 236: "output without reasoning"},
    "anthropic": {
        200: "uncached input only (Anthropic's raw input_tokens)",
        1200: "input + cache read only",
        301: "message_start's output_tokens added to message_delta's cumulative count",
    },
}
CONCEPTS = ("input", "output", "cache_read", "cache_write", "reasoning", "cost", "ttfc")
CONCEPT_TITLES = {
    "input": "input tokens",
    "output": "output tokens",
    "cache_read": "cache read",
    "cache_write": "cache write",
    "reasoning": "reasoning",
    "cost": "cost (USD)",
    "ttfc": "time to first chunk",
}

# OpenLIT fetches its price table from GitHub unless given a file; this one holds list prices per
# 1k tokens in its format, under the request and the response model names.
OPENLIT_PRICES = {
    "chat": {
        model: prices
        for names, prices in (
            (
                (overhead.REQUEST_MODEL, overhead.RESPONSE_MODEL),
                {"promptPrice": 0.00015, "completionPrice": 0.0006, "cacheReadPrice": 0.000075},
            ),
            (
                (ANTHROPIC_REQUEST_MODEL, ANTHROPIC_RESPONSE_MODEL),
                {
                    "promptPrice": 0.003,
                    "completionPrice": 0.015,
                    "cacheReadPrice": 0.0003,
                    "cacheCreationPrice": 0.00375,
                },
            ),
        )
        for model in names
    },
    "embeddings": {},
    "images": {},
    "audio": {},
}


def anthropic_message_body() -> bytes:
    return json.dumps(
        {
            "id": "msg_01Bench0000000000000001",
            "type": "message",
            "role": "assistant",
            "model": ANTHROPIC_RESPONSE_MODEL,
            "content": [{"type": "text", "text": "2, 3 and 5."}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": ANTHROPIC_USAGE,
        }
    ).encode()


def anthropic_sse_body(chunks: int) -> bytes:
    """`chunks + 1` events, as many as overhead.sse_body yields: message_start, content_block_start,
    `chunks - 4` text deltas, content_block_stop, message_delta (output usage), message_stop."""
    start_usage = {**ANTHROPIC_USAGE, "output_tokens": 1}
    message: dict[str, Any] = {
        "id": "msg_01Bench0000000000000002",
        "type": "message",
        "role": "assistant",
        "model": ANTHROPIC_RESPONSE_MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": start_usage,
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": message},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    for i in range(chunks - 4):
        events.append(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}}
        )
    events.append({"type": "content_block_stop", "index": 0})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": ANTHROPIC_USAGE["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


def anthropic_http_module() -> Any:
    """The HTTP library the installed anthropic SDK sends through (2.x: httpx2)."""
    from anthropic import _base_client

    return getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx")  # noqa: B009 (1.x)


def make_anthropic_client(body: bytes, content_type: str) -> Any:
    import anthropic

    return anthropic.Anthropic(
        api_key="sk-ant-benchmark",
        base_url=ANTHROPIC_BASE_URL,
        max_retries=0,
        http_client=overhead.fixed_http_client(anthropic_http_module(), body, content_type),
    )


def anthropic_call(client: Any) -> Any:
    return client.messages.create(
        model=ANTHROPIC_REQUEST_MODEL,
        max_tokens=1024,
        system="You are a terse assistant.",
        messages=[{"role": "user", "content": "Name three prime numbers."}],
    )


def anthropic_stream(client: Any) -> int:
    n = 0
    for _event in client.messages.create(
        model=ANTHROPIC_REQUEST_MODEL,
        max_tokens=1024,
        system="You are a terse assistant.",
        messages=[{"role": "user", "content": "Name three prime numbers."}],
        stream=True,
    ):
        n += 1
    return n


# --- a worker: one contender in one process ------------------------------------------------------


def instrument(name: str, tracer_provider: Any, meter_provider: Any) -> None:
    """Sets the contender up the way its documentation says, with content capture off."""
    if not BY_NAME[name].instruments:
        return
    if name == "otel-llm-usage":
        import otel_llm_usage

        otel_llm_usage.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif name == "openllmetry":
        from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        AnthropicInstrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2Instrumentor

        V2Instrumentor().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    elif name == "openinference":
        from openinference.instrumentation import TraceConfig
        from openinference.instrumentation.anthropic import AnthropicInstrumentor as OIAnthropic
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIOpenAI

        config = TraceConfig(hide_inputs=True, hide_outputs=True)
        OIOpenAI().instrument(tracer_provider=tracer_provider, config=config)
        OIAnthropic().instrument(tracer_provider=tracer_provider, config=config)
    elif name == "openlit":
        import openlit

        prices = os.path.join(tempfile.mkdtemp(prefix="openlit-prices-"), "pricing.json")
        with open(prices, "w") as out:
            json.dump(OPENLIT_PRICES, out)
        # It reuses the global providers set before; events off: with content capture off they
        # would carry nothing, and OpenLIT would otherwise build a logger provider of its own.
        openlit.init(capture_message_content=False, disable_events=True, pricing_json=prices)
    else:
        raise ValueError(f"unknown contender {name!r}")


def installed_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for dist in REPORTED_DISTS:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def set_global_providers(tracer_provider: Any, meter_provider: Any) -> None:
    from opentelemetry import metrics, trace

    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)


class SanityError(RuntimeError):
    pass


class Workload:
    """The clients and the four kinds of call, set up after the contender is instrumented."""

    def __init__(self, chunks: int) -> None:
        self.chunks = chunks
        openai_call = overhead.make_client(overhead.chat_completion_body(), "application/json")
        openai_stream = overhead.make_client(overhead.sse_body(chunks), "text/event-stream")
        anthropic_json = make_anthropic_client(anthropic_message_body(), "application/json")
        anthropic_sse = make_anthropic_client(anthropic_sse_body(chunks), "text/event-stream")
        self.fns: dict[str, Callable[[], Any]] = {
            "openai_call": lambda: overhead.plain_call(openai_call),
            "openai_stream": lambda: overhead.plain_stream(openai_stream),
            "anthropic_call": lambda: anthropic_call(anthropic_json),
            "anthropic_stream": lambda: anthropic_stream(anthropic_sse),
        }

    def add_long_streams(self) -> None:
        """Streams of twice as many chunks: the difference is the cost of `chunks` more chunks."""
        long = 2 * self.chunks
        openai_stream = overhead.make_client(overhead.sse_body(long), "text/event-stream")
        anthropic_sse = make_anthropic_client(anthropic_sse_body(long), "text/event-stream")
        self.fns["openai_stream_long"] = lambda: overhead.plain_stream(openai_stream)
        self.fns["anthropic_stream_long"] = lambda: anthropic_stream(anthropic_sse)

    def check(self) -> None:
        response = self.fns["openai_call"]()
        if response.usage.prompt_tokens_details.cached_tokens != 1024:
            raise SanityError(f"unexpected openai usage: {response.usage}")
        message = self.fns["anthropic_call"]()
        if message.usage.cache_read_input_tokens != ANTHROPIC_USAGE["cache_read_input_tokens"]:
            raise SanityError(f"unexpected anthropic usage: {message.usage}")
        for kind in STREAM_KINDS:
            if (n := self.fns[kind]()) != self.chunks + 1:
                raise SanityError(f"{kind} yielded {n} events, expected {self.chunks + 1}")


def set_up(name: str, chunks: int, exporter: Any = None) -> tuple[Workload, Any, Any, float]:
    """Telemetry, the contender, the clients; returns them with the seconds all that took."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    started = time.perf_counter()
    if exporter is None:
        tracer_provider, exporter, meter_provider, reader = overhead.make_telemetry()
    else:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        reader = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[reader])
    set_global_providers(tracer_provider, meter_provider)
    if BY_NAME[name].sdk_tracing_off:
        # Read by the anthropic SDK when a client is built, which happens in Workload below.
        os.environ["ANTHROPIC_OPEN_TELEMETRY"] = "false"
    instrument(name, tracer_provider, meter_provider)
    import anthropic  # noqa: F401
    import openai  # noqa: F401

    return Workload(chunks), exporter, reader, time.perf_counter() - started


def vm_status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def span_record(span: Any) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 120:
            return value[:120] + "…"
        return list(value) if isinstance(value, tuple) else value

    return {
        "name": span.name,
        "kind": span.kind.name,
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "duration_s": (span.end_time - span.start_time) / 1e9,
        "status": span.status.status_code.name,
        "attributes": {k: plain(v) for k, v in (span.attributes or {}).items()},
    }


def capture(name: str, chunks: int) -> dict[str, Any]:
    """One call of each kind, after one untimed call of each: every span each call finished."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    workload, exporter, reader, _ = set_up(name, chunks, InMemorySpanExporter())
    workload.check()
    spans: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS:
        exporter.clear()
        workload.fns[kind]()
        spans[kind] = [span_record(s) for s in exporter.get_finished_spans()]
    metrics = sorted(overhead.metric_signature(reader))
    return {"contender": name, "spans": spans, "metrics": metrics, "versions": installed_versions()}


class TimingWorker:
    """Batches of one kind on the parent's command (as overhead.Worker does), then its figures."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        workload, self.exporter, self.reader, self.setup_s = set_up(name, args.chunks)
        self.workload = workload
        workload.check()
        self.sizes = {k: args.stream_batch if k in STREAM_KINDS else args.batch for k in KINDS}
        self.wall: dict[str, list[float]] = {k: [] for k in KINDS}
        self.cpu: dict[str, list[float]] = {k: [] for k in KINDS}
        self.spans: dict[str, int] = dict.fromkeys(KINDS, 0)
        self.made: dict[str, int] = dict.fromkeys(KINDS, 0)

    def warm_up(self) -> None:
        for kind in KINDS:
            n = max(10, self.sizes[kind])
            for _ in range(n):
                self.workload.fns[kind]()
        gc.collect()

    def batch(self, kind: str) -> tuple[float, float]:
        fn, size = self.workload.fns[kind], self.sizes[kind]
        exported = self.exporter.exported
        start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(size):
            fn()
        end_cpu, end = time.process_time_ns(), time.perf_counter_ns()
        self.spans[kind] += self.exporter.exported - exported
        self.made[kind] += size
        wall, cpu = (end - start) / size / 1000, (end_cpu - start_cpu) / size / 1000
        self.wall[kind].append(wall)
        self.cpu[kind].append(cpu)
        return wall, cpu

    def serve(self) -> dict[str, Any]:
        self.warm_up()
        overhead.reply("ready")
        for line in sys.stdin:
            command = line.strip()
            if command == "gc":
                gc.collect()
                overhead.reply("ok")
            elif command in KINDS:
                wall, cpu = self.batch(command)
                overhead.reply(f"{wall} {cpu}")
            elif command == "end":
                break
            else:
                raise ValueError(f"unknown command {command!r}")
        return {
            "contender": self.name,
            "wall": {k: statistics.median(v) for k, v in self.wall.items() if v},
            "cpu": {k: statistics.median(v) for k, v in self.cpu.items() if v},
            "spans_per_call": {k: self.spans[k] / self.made[k] for k in KINDS if self.made[k]},
            "setup_s": self.setup_s,
            "peak_rss": vm_status("VmHWM"),
            "rss": vm_status("VmRSS"),
        }


def instructions(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Blocks of calls between two markers each; the parent reads one dump per block."""
    workload, _, _, _ = set_up(name, args.chunks)
    workload.add_long_streams()
    workload.check()
    for fn in workload.fns.values():
        for _ in range(3):
            fn()
    start_instrumentation()
    blocks = []
    for kind in workload.fns:
        n = args.cg_streams if "stream" in kind else args.cg_calls
        settle_heap()
        marker()
        for _ in range(n):
            workload.fns[kind]()
        marker()
        blocks.append([kind, n])
    return {"contender": name, "blocks": blocks, "chunks": args.chunks}


def profile(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """cProfile of each kind: the functions of the instrumentation that cost the most, per call."""
    import cProfile
    import pstats

    workload, _, _, _ = set_up(name, args.chunks)
    workload.check()
    out: dict[str, Any] = {}
    for kind in KINDS:
        n = args.streams if kind in STREAM_KINDS else args.calls
        fn = workload.fns[kind]
        for _ in range(max(10, n // 10)):
            fn()
        gc.collect()
        # CPU time: waiting for a core on this shared machine is not a cost of any function.
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        for _ in range(n):
            fn()
        profiler.disable()
        # The raw table: typeshed leaves it out of Stats.
        stats: dict[Any, Any] = getattr(pstats.Stats(profiler), "stats")  # noqa: B009
        total = sum(tt for _cc, _nc, tt, _ct, _callers in stats.values())
        by_package: dict[str, float] = {}
        functions = []
        for (filename, line, function), (_cc, ncalls, tt, ct, _callers) in stats.items():
            package = package_of(filename, function)
            by_package[package] = by_package.get(package, 0.0) + tt
            if package == "otel_llm_usage":
                where = f"{filename.rsplit('otel_llm_usage/', 1)[-1]}:{line} {function}"
                functions.append([where, ncalls / n, tt / n * 1e6, ct / n * 1e6])
        functions.sort(key=lambda f: -f[2])
        out[kind] = {
            "calls": n,
            "total_us": total / n * 1e6,
            "by_package_us": {k: v / n * 1e6 for k, v in sorted(by_package.items(), key=lambda kv: -kv[1])},
            "functions": functions[: args.profile_top],
        }
    return out


def package_of(filename: str, function: str) -> str:
    if filename == "~":
        return "builtins"
    if "/otel_llm_usage/" in filename:
        return "otel_llm_usage"
    if "site-packages/" in filename:
        return filename.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return "stdlib"


def run_worker(args: argparse.Namespace) -> int:
    try:
        if args.phase == "capture":
            result = capture(args.worker, args.chunks)
        elif args.phase == "instructions":
            result = instructions(args.worker, args)
        elif args.phase == "profile":
            result = profile(args.worker, args)
        else:
            result = TimingWorker(args.worker, args).serve()
    except SanityError as exc:
        print(f"SANITY CHECK FAILED: {exc}", file=sys.stderr)
        return 2
    overhead.reply("result " + json.dumps(result))
    return 0


# --- virtual environments ------------------------------------------------------------------------


def venv_python(name: str) -> str:
    return os.path.join(VENVS, BY_NAME[name].env_name if name in BY_NAME else name, "bin", "python")


def install_steps(contender: Contender) -> list[list[str]]:
    """pip install arguments, in order. The SDKs are pinned in every step so pip cannot move them,
    except where a peer's own pins exclude them: those are installed over its choice afterwards."""
    own = list(contender.packages)
    if contender.editable:
        own.append(f"{ROOT}[openai,anthropic]")
        own = ["-e", *own]
    if contender.force_sdks:
        return [[*own, *OTEL_PINS], [*SDK_PINS, *OTEL_PINS]]
    return [[*own, *SDK_PINS, *OTEL_PINS]]


def ensure_venv(contender: Contender, rebuild: bool) -> dict[str, Any]:
    """Builds `.bench-venvs/<name>` unless it was built from the same steps; returns its record."""
    path = os.path.join(VENVS, contender.env_name)
    marker_path = os.path.join(path, ".installed.json")
    steps = install_steps(contender)
    digest = hashlib.sha256(json.dumps(steps).encode()).hexdigest()
    if not rebuild and os.path.exists(marker_path):
        with open(marker_path) as f:
            record: dict[str, Any] = json.load(f)
        if record.get("digest") == digest:
            return record
    shutil.rmtree(path, ignore_errors=True)
    print(f"building {path} ...", file=sys.stderr)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", path], check=True)
    pip = [venv_python(contender.name), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    for step in steps:
        done = subprocess.run([*pip, *step], capture_output=True, text=True)
        if done.returncode != 0:
            sys.stderr.write(done.stdout + done.stderr)
            raise SystemExit(f"pip install {' '.join(step)} failed for {contender.name}")
    check = subprocess.run(
        [venv_python(contender.name), "-m", "pip", "check", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
    )
    record = {
        "digest": digest,
        "steps": steps,
        "pip_check": check.stdout.strip() if check.returncode else "",
        "seconds": time.perf_counter() - started,
    }
    with open(marker_path, "w") as f:
        json.dump(record, f, indent=2)
    print(f"built {path} in {record['seconds']:.0f} s", file=sys.stderr)
    return record


# --- the parent ----------------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    """No OTEL_* or PYTHONPATH from the caller; every switch that could send data or capture content
    set off, so that each contender records the same kind of data and nothing leaves the machine."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "TRACELOOP_", "OPENINFERENCE_", "OPENLIT_", "ANTHROPIC_"))
        and k != "PYTHONPATH"
    }
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "false",
            "TRACELOOP_TELEMETRY": "false",
            "TRACELOOP_TRACE_CONTENT": "false",
            "OPENINFERENCE_HIDE_INPUTS": "true",
            "OPENINFERENCE_HIDE_OUTPUTS": "true",
            # Repeatable instruction counts; harmless for timing.
            "PYTHONHASHSEED": "0",
        }
    )
    return env


def worker_command(name: str, args: argparse.Namespace, phase: str) -> list[str]:
    options = ["--chunks", str(args.chunks), "--calls", str(args.calls), "--streams", str(args.streams)]
    options += ["--batch", str(args.batch), "--stream-batch", str(args.stream_batch)]
    options += ["--cg-calls", str(args.cg_calls), "--cg-streams", str(args.cg_streams)]
    options += ["--profile-top", str(args.profile_top)]
    script = os.path.abspath(__file__)
    return [venv_python(name), script, "--worker", name, "--phase", phase, *options]


class VenvWorker(overhead.WorkerProcess):
    """overhead's worker protocol, for a worker in a contender's environment."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.mode = name
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=worker_env(),
            cwd=ROOT,
        )


def one_shot(name: str, command: list[str]) -> dict[str, Any]:
    worker = VenvWorker(name, command)
    worker.proc.stdin.close()  # type: ignore[union-attr]
    return worker.result()


def run_round(names: Sequence[str], args: argparse.Namespace, index: int) -> dict[str, dict[str, Any]]:
    order = list(names[index % len(names) :]) + list(names[: index % len(names)])
    workers = {n: VenvWorker(n, worker_command(n, args, "timing")) for n in order}
    for worker in workers.values():
        if worker.read() != "ready":
            worker.fail()
    for kind in KINDS:
        total = args.streams if kind in STREAM_KINDS else args.calls
        size = args.stream_batch if kind in STREAM_KINDS else args.batch
        for worker in workers.values():
            worker.send("gc")
        for b in range(max(1, total // size)):
            for n in order[b % len(order) :] + order[: b % len(order)]:
                workers[n].send(kind)
    for worker in workers.values():
        worker.proc.stdin.write("end\n")  # type: ignore[union-attr]
        worker.proc.stdin.close()  # type: ignore[union-attr]
    return {n: workers[n].result() for n in names}


def run_instructions(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The worker under callgrind; block k is the dump written by its (2k+2)-th marker."""
    with tempfile.TemporaryDirectory(prefix=f"callgrind-{name}-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = [
            "valgrind",
            *VALGRIND_ARGS,
            f"--callgrind-out-file={out}",
            *worker_command(name, args, "instructions"),
        ]
        started = time.perf_counter()
        result = one_shot(name, command)
        counts = {}
        for k, (kind, n) in enumerate(result["blocks"]):
            counts[kind] = callgrind_totals(f"{out}.{2 * k + 2}") / n
    print(f"instructions {name}: {time.perf_counter() - started:.0f} s under callgrind", file=sys.stderr)
    return {"per_call": counts, "chunks": result["chunks"]}


# --- reading what was captured ---------------------------------------------------------------------


def concept_of(name: str) -> str | None:
    """The usage concept an attribute name stands for, whatever naming scheme it follows."""
    n = name.lower().replace(".", "_")
    if "audio" in n or "max_tokens" in n or n.endswith(("_model", "_source", "_type")):
        return None
    if "cost" in n or n.endswith("_usd"):
        return "cost"
    if "first" in n or "ttft" in n or "ttfc" in n:
        return "ttfc"
    if "token" not in n and "count" not in n:
        return None
    if "reasoning" in n or "thinking" in n:
        return "reasoning"
    if "cache_read" in n or "cached" in n:
        return "cache_read"
    if "cache_creation" in n or "cache_write" in n:
        return "cache_write"
    if "total" in n:
        return None
    if "input" in n or "prompt" in n:
        return "input"
    if "output" in n or "completion" in n:
        return "output"
    return None


def judge(sdk: str, concept: str, value: Any, span_duration_s: float) -> tuple[bool, str]:
    """Whether a recorded value is right for the fixed response, and a note when it is not."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False, "not a number"
    if concept == "ttfc":
        if 0 < value <= span_duration_s:
            return True, "s"
        if 0 < value <= span_duration_s * 1000:
            return True, "ms"
        return False, f"not within the span's {span_duration_s * 1000:.2f} ms"
    expected = EXPECTED[sdk].get(concept)
    if expected is None:
        return False, "unexpected"
    if concept == "cost":
        if abs(value - expected) <= 1e-9 + 1e-6 * expected:
            return True, ""
        return False, f"expected {expected:.7f}"
    if value == expected:
        return True, ""
    known = KNOWN_MISREADINGS[sdk].get(float(value))
    return False, f"expected {expected:g}" + (f": {known}" if known else "")


def findings(sdk: str, spans: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per concept, every attribute that carries it on any span of the call, judged."""
    out: dict[str, list[dict[str, Any]]] = {c: [] for c in CONCEPTS}
    for span in spans:
        for name, value in span["attributes"].items():
            concept = concept_of(name)
            if concept is None or isinstance(value, str | list | bool):
                continue
            ok, note = judge(sdk, concept, value, span["duration_s"])
            out[concept].append({"name": name, "value": value, "ok": ok, "note": note, "span": span["name"]})
    return out


def cell(found: list[dict[str, Any]], concept: str) -> str:
    right = [f for f in found if f["ok"]]
    if concept == "cost" and right:
        parts = [f"`{f['name']}` = {f['value']:.7f} ✓" for f in right]
        if extra := len(found) - len(right):
            parts.append(f"(+{extra} per-bucket cost attributes)")
        return "<br>".join(parts)
    if right:
        return "<br>".join(
            f"`{f['name']}`" + (f" ({f['note']})" if f["note"] and concept == "ttfc" else "") + " ✓"
            for f in right
        )
    if found:
        return "<br>".join(f"`{f['name']}` = {f['value']:g} ✗ {f['note']}" for f in found)
    return "—"


def span_summary(spans: list[dict[str, Any]]) -> str:
    if not spans:
        return "0"
    names = ", ".join(f"`{s['name']}` ({s['scope']})" for s in spans)
    return f"{len(spans)}: {names}"


def own_spans(name: str, spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contender's spans of a call; for `none`, the spans the SDK made itself."""
    from_sdk = [s for s in spans if s["scope"] in SDK_SCOPES]
    return from_sdk if name == "none" else [s for s in spans if s["scope"] not in SDK_SCOPES]


def attributes_markdown(captures: dict[str, dict[str, Any]], sdk: str) -> str:
    concepts = [c for c in CONCEPTS if c == "ttfc" or c in EXPECTED[sdk]]
    header = "| contender | call | spans | " + " | ".join(CONCEPT_TITLES[c] for c in concepts) + " |"
    rows = [header, "|" + "---|" * (3 + len(concepts))]
    for name, cap in captures.items():
        if name == "none" and not any(own_spans(name, cap["spans"][k]) for k in KINDS if k.startswith(sdk)):
            continue
        for kind in (f"{sdk}_call", f"{sdk}_stream"):
            spans = cap["spans"][kind]
            found = findings(sdk, own_spans(name, spans))
            cells = [cell(found[c], c) if (c != "ttfc" or "stream" in kind) else "" for c in concepts]
            label = ""
            if kind.endswith("call"):
                label = "the SDK's own span" if name == "none" else BY_NAME[name].label
                if name != "none" and sdk not in BY_NAME[name].instruments:
                    label += " (does not instrument it)"
            call = "stream" if "stream" in kind else "call"
            rows.append(f"| {label} | {call} | {span_summary(spans)} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# --- timing tables -------------------------------------------------------------------------------


def summarise(rounds: list[dict[str, dict[str, Any]]], names: Sequence[str]) -> dict[str, Any]:
    """Per contender and kind: the median over rounds of (contender − none) in the same round."""
    out: dict[str, Any] = {}
    for name in names:
        entry: dict[str, Any] = {}
        for clock in ("wall", "cpu"):
            for kind in KINDS:
                values = [r[name][clock][kind] for r in rounds]
                added = [r[name][clock][kind] - r["none"][clock][kind] for r in rounds]
                entry[f"{clock}_{kind}"] = statistics.median(values)
                entry[f"{clock}_{kind}_added"] = statistics.median(added)
                entry[f"{clock}_{kind}_added_range"] = [min(added), max(added)]
        for key in ("setup_s", "peak_rss"):
            values = [r[name][key] for r in rounds]
            entry[key] = statistics.median(values)
            entry[f"{key}_added"] = statistics.median([r[name][key] - r["none"][key] for r in rounds])
        entry["spans_per_call"] = rounds[0][name]["spans_per_call"]
        out[name] = entry
    return out


def added_cell(s: dict[str, Any], key: str, per: int) -> str:
    """Median added µs over rounds, divided by `per`, with the (min … max) over rounds."""
    value = s[f"{key}_added"] / per
    lo, hi = (v / per for v in s[f"{key}_added_range"])
    digits = 1 if per == 1 else 2
    return f"{value:+,.{digits}f} ({lo:+,.{digits}f} … {hi:+,.{digits}f})"


def timing_markdown(summary: dict[str, Any], sdk: str, chunks: int, instrumented: dict[str, bool]) -> str:
    events = chunks + 1
    rows = [
        f"| {sdk}: µs added vs none | per call, CPU | per call, wall | per chunk, CPU | per chunk, wall "
        f"| spans per call / stream |",
        "|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        label = BY_NAME[name].label
        spans = s["spans_per_call"]
        span_cell = f"{spans[f'{sdk}_call']:g} / {spans[f'{sdk}_stream']:g}"
        if name == "none":
            rows.append(
                f"| {label}: absolute | {s[f'cpu_{sdk}_call']:,.1f} | {s[f'wall_{sdk}_call']:,.1f} "
                f"| {s[f'cpu_{sdk}_stream'] / events:,.2f} | {s[f'wall_{sdk}_stream'] / events:,.2f} "
                f"| {span_cell} |"
            )
            continue
        if not instrumented[name]:
            label += " (does not instrument it)"
        cells = [
            added_cell(s, f"{clock}_{sdk}_{kind}", per)
            for kind, per in (("call", 1), ("stream", events))
            for clock in ("cpu", "wall")
        ]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {span_cell} |")
    return "\n".join(rows)


def footprint_markdown(summary: dict[str, Any]) -> str:
    rows = [
        "| contender | import + instrument | added vs none | peak RSS | added vs none |",
        "|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        rows.append(
            f"| {BY_NAME[name].label} | {s['setup_s'] * 1000:,.0f} ms | {s['setup_s_added'] * 1000:+,.0f} ms "
            f"| {s['peak_rss'] / 2**20:,.1f} MB | {s['peak_rss_added'] / 2**20:+,.1f} MB |"
        )
    return "\n".join(rows)


def instructions_markdown(counts: dict[str, dict[str, Any]], chunks: int) -> str:
    base = counts["none"]["per_call"]
    rows = [
        "| instructions added vs none | openai call | openai per chunk | openai stream "
        "| anthropic call | anthropic per chunk | anthropic stream |",
        "|---|---|---|---|---|---|---|",
    ]

    def per_chunk(c: dict[str, float], sdk: str) -> float:
        return (c[f"{sdk}_stream_long"] - c[f"{sdk}_stream"]) / chunks

    for name, result in counts.items():
        c = result["per_call"]
        if name == "none":
            cells = [
                f"{c['openai_call']:,.0f}",
                f"{per_chunk(c, 'openai'):,.0f}",
                f"{c['openai_stream']:,.0f}",
                f"{c['anthropic_call']:,.0f}",
                f"{per_chunk(c, 'anthropic'):,.0f}",
                f"{c['anthropic_stream']:,.0f}",
            ]
            rows.append(f"| {BY_NAME[name].label}: absolute | " + " | ".join(cells) + " |")
            continue
        cells = []
        for sdk in ("openai", "anthropic"):
            cells.append(f"{c[f'{sdk}_call'] - base[f'{sdk}_call']:+,.0f}")
            cells.append(f"{per_chunk(c, sdk) - per_chunk(base, sdk):+,.0f}")
            cells.append(f"{c[f'{sdk}_stream'] - base[f'{sdk}_stream']:+,.0f}")
        rows.append(f"| {BY_NAME[name].label} | " + " | ".join(cells) + " |")
    if "none-untraced" in counts and "otel-llm-usage" in counts:
        # The same package figures against the clean baseline (no SDK span in it).
        clean, own = counts["none-untraced"]["per_call"], counts["otel-llm-usage"]["per_call"]
        cells = []
        for sdk in ("openai", "anthropic"):
            cells.append(f"{own[f'{sdk}_call'] - clean[f'{sdk}_call']:+,.0f}")
            cells.append(f"{per_chunk(own, sdk) - per_chunk(clean, sdk):+,.0f}")
            cells.append(f"{own[f'{sdk}_stream'] - clean[f'{sdk}_stream']:+,.0f}")
        rows.append("| otel-llm-usage vs none, anthropic SDK tracing off | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def profile_markdown(result: dict[str, Any]) -> str:
    out = []
    for kind, p in result.items():
        packages = ", ".join(f"{k} {v / p['total_us']:.0%}" for k, v in list(p["by_package_us"].items())[:8])
        out.append(
            f"**{kind}** ({p['calls']:,} under cProfile, {p['total_us']:,.1f} µs of CPU each, "
            f"profiler included): own time by package: {packages}"
        )
        out.append("")
        out.append("| otel_llm_usage function | calls per call | own µs | incl. callees µs |")
        out.append("|---|---|---|---|")
        for where, ncalls, tt, ct in p["functions"]:
            out.append(f"| `{where}` | {ncalls:g} | {tt:,.2f} | {ct:,.2f} |")
        out.append("")
    return "\n".join(out)


def versions_line(captures: dict[str, dict[str, Any]]) -> str:
    parts = []
    for name, cap in captures.items():
        v = cap["versions"]
        own = ", ".join(f"{k} {val}" for k, val in v.items() if k not in ("python", *REPORTED_DISTS[:6]))
        parts.append(f"{name}: {own or '-'}")
    v = captures["none"]["versions"]
    common = ", ".join(f"{k} {v[k]}" for k in ("python", *REPORTED_DISTS[:6]) if k in v)
    return f"Common: {common}. Per contender: " + "; ".join(parts) + "."


def check_same_sdks(captures: dict[str, dict[str, Any]]) -> list[str]:
    notes = []
    base = captures["none"]["versions"]
    for name, cap in captures.items():
        for dist in REPORTED_DISTS[:6]:
            if dist in base and cap["versions"].get(dist) != base[dist]:
                notes.append(f"{name} has {dist} {cap['versions'].get(dist)} (none: {base.get(dist)})")
    return notes


def run_parent(args: argparse.Namespace) -> int:
    names = ["none", *[n for n in args.contenders if n != "none"]]
    if args.instructions and not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed: apt-get update && apt-get install -y valgrind")
    os.makedirs(VENVS, exist_ok=True)
    envs = {BY_NAME[n].env_name: BY_NAME[n] for n in reversed(names)}
    built = {env: ensure_venv(contender, args.rebuild) for env, contender in envs.items()}
    builds = {n: built[BY_NAME[n].env_name] for n in names}
    for n, record in builds.items():
        if record.get("pip_check"):
            print(f"pip check in {n}: {record['pip_check']}", file=sys.stderr)
    if args.build_only:
        return 0
    started = time.perf_counter()

    captures = {n: one_shot(n, worker_command(n, args, "capture")) for n in names}
    sdk_notes = check_same_sdks(captures)

    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        round_started = time.perf_counter()
        rounds.append(results := run_round(names, args, r))
        for n in names:
            res = results[n]
            cells = "  ".join(f"{k} {res['cpu'][k]:8.1f}" for k in KINDS)
            print(f"round {r + 1}/{args.rounds} {n:<15} CPU µs: {cells}", file=sys.stderr)
        print(f"round {r + 1} took {time.perf_counter() - round_started:.0f} s", file=sys.stderr)
    summary = summarise(rounds, names) if rounds else None

    counts: dict[str, dict[str, Any]] | None = None
    if args.instructions:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            counts = dict(zip(names, pool.map(lambda n: run_instructions(n, args), names), strict=True))
    profiled = None
    if args.profile:
        profiled = one_shot("otel-llm-usage", worker_command("otel-llm-usage", args, "profile"))
    elapsed = time.perf_counter() - started

    print()
    if summary is not None:
        for sdk in ("openai", "anthropic"):
            instrumented = {n: sdk in BY_NAME[n].instruments for n in names}
            print(timing_markdown(summary, sdk, args.chunks, instrumented))
            print()
        print(footprint_markdown(summary))
        print()
    if counts is not None:
        print(instructions_markdown(counts, args.chunks))
        print()
    for sdk in ("openai", "anthropic"):
        print(f"What each records for the same {sdk} response (✓ right, ✗ wrong, — not recorded):")
        print()
        print(attributes_markdown(captures, sdk))
        print()
    metrics = "; ".join(f"{n}: {', '.join(c['metrics']) or 'none'}" for n, c in captures.items())
    print(f"Metrics recorded: {metrics}.")
    print()
    print(
        f"{args.rounds} rounds; per round one fresh process per contender, taking turns batch by batch: "
        f"{args.calls:,} non-streaming calls per SDK (batches of {args.batch}) and {args.streams:,} streams "
        f"of {args.chunks} chunks + 1 closing event (batches of {args.stream_batch}); a worker's figure is "
        f"the median of its batch means, added cost is taken against the same round's `none`, and the "
        f"tables give the median over rounds with (min … max). Per chunk = per stream / {args.chunks + 1}. "
        f"{versions_line(captures)} Run time {elapsed:.0f} s."
    )
    for note in sdk_notes:
        print(f"\nNote: different SDK versions: {note}")
    for n, record in builds.items():
        if record.get("pip_check"):
            print(f"\nNote: `pip check` in {n}: {record['pip_check']}")
    if profiled is not None:
        print()
        print(profile_markdown(profiled))
    if args.json:
        payload = {
            "settings": {
                k: getattr(args, k)
                for k in (
                    "rounds",
                    "calls",
                    "streams",
                    "chunks",
                    "batch",
                    "stream_batch",
                    "cg_calls",
                    "cg_streams",
                )
            },
            "builds": builds,
            "captures": captures,
            "rounds": rounds,
            "summary": summary,
            "instructions": counts,
            "profile": profiled,
            "seconds": elapsed,
        }
        with open(args.json, "w") as out:
            json.dump(payload, out, indent=2)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (default 5)")
    p.add_argument("--calls", type=int, default=2000, help="timed non-streaming calls per SDK and worker")
    p.add_argument("--streams", type=int, default=400, help="timed streams per SDK and worker")
    p.add_argument("--chunks", type=int, default=50, help="chunks per stream (plus one closing event)")
    p.add_argument("--batch", type=int, default=100, help="calls per timed batch")
    p.add_argument("--stream-batch", type=int, default=20, help="streams per timed batch")
    p.add_argument("--instructions", action="store_true", help="also count instructions under callgrind")
    p.add_argument("--cg-calls", type=int, default=50, help="calls per block under callgrind")
    p.add_argument("--cg-streams", type=int, default=5, help="streams per block under callgrind")
    p.add_argument("--jobs", type=int, default=2, help="callgrind workers at once")
    p.add_argument("--profile", action="store_true", help="also profile the otel-llm-usage worker")
    p.add_argument("--profile-top", type=int, default=12, help="functions listed per kind by --profile")
    p.add_argument(
        "--contenders",
        nargs="+",
        choices=list(BY_NAME),
        default=list(BY_NAME),
        help="which to run (none is always run)",
    )
    p.add_argument("--rebuild", action="store_true", help="recreate the virtual environments")
    p.add_argument("--build-only", action="store_true", help="build the environments and stop")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    p.add_argument("--worker", choices=list(BY_NAME), help=argparse.SUPPRESS)
    p.add_argument("--phase", default="timing", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
