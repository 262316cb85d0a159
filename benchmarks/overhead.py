"""Per-call overhead of otel_llm_usage on the real openai client, against a baseline and a floor.

The openai client talks to an in-process mock transport that returns a fixed chat completion (or a
fixed SSE stream), so what is timed is the SDK plus whatever telemetry runs around it. Modes:

  baseline      the client, uninstrumented
  instrumented  `otel_llm_usage.instrument(tracer_provider=..., meter_provider=...)`
  floor         the uninstrumented client plus one hand-made span and the same metric records per
                call, each through the SDK's synchronous instruments: the yardstick of the targets
  floor-summed  the floor with its counters summed in a dict that observable counters read, as the
                package sums them: the least any instrumentation recording the same data could cost
                (with --instructions only)

Each mode runs in its own process. Within a round the three processes take turns batch by batch
(`--sequential` runs them one after the other instead), so that a busy moment of a shared machine
falls on every mode alike; fresh processes are started for every round. The parent prints Markdown
tables: the baseline cost, the microseconds each mode adds, and the ratio of what the package adds
to what the floor adds, by the wall clock and by CPU time.

    PYTHONPATH=. python benchmarks/overhead.py                      # defaults: 5 rounds
    PYTHONPATH=. python benchmarks/overhead.py --memory --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

try:  # imported as a module of the repository (compare.py, the tests)
    from benchmarks._callgrind import (
        VALGRIND_ARGS,
        callgrind_totals,
        marker,
        settle_heap,
        start_instrumentation,
    )
except ImportError:  # run as a script: benchmarks/ is sys.path[0]
    from _callgrind import (  # type: ignore[no-redef]
        VALGRIND_ARGS,
        callgrind_totals,
        marker,
        settle_heap,
        start_instrumentation,
    )

MODES = ("baseline", "instrumented", "floor")
COUNTED_MODES = (*MODES, "floor-summed")
REPLY_PREFIX = "overhead-worker: "  # marks the protocol lines among whatever else a worker prints

# api.openai.com so the package sees OpenAI (priced, provider "openai"); nothing leaves the process.
BASE_URL = "https://api.openai.com/v1"
SERVER_ADDRESS = "api.openai.com"
SERVER_PORT = 443
REQUEST_MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
MESSAGES = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "Name three prime numbers."},
]
USAGE: dict[str, Any] = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 64,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# gpt-4o-mini list prices in USD per token; the floor computes a cost as cheaply as it can.
PRICE_INPUT = 0.15e-6
PRICE_CACHE_READ = 0.075e-6
PRICE_OUTPUT = 0.6e-6
CONTEXT_WINDOW = 128_000

# Bucket lists of the same length as the package's, so histogram records cost the same bisect.
TOKEN_BUCKETS = [4.0**i for i in range(14)]
DURATION_BUCKETS = [0.01 * 2**i for i in range(14)]
TTFC_BUCKETS = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
UTILIZATION_BUCKETS = [i / 10 for i in range(1, 11)]
TPOC_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5]

TARGET_CALL = 1.2
TARGET_STREAM = 1.5


# --- the mock server ---------------------------------------------------------------------------


def chat_completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench0001",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": RESPONSE_MODEL,
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "2, 3 and 5.", "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": USAGE,
            "service_tier": "default",
        }
    ).encode()


def sse_body(chunks: int) -> bytes:
    """`chunks` content chunks (the last one carrying finish_reason), a usage-only chunk, [DONE]."""
    common = {
        "id": "chatcmpl-bench0002",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_bench",
    }
    events = []
    for i in range(chunks):
        delta: dict[str, Any] = {"content": f"tok{i} "} if i < chunks - 1 else {}
        if i == 0:
            delta["role"] = "assistant"
        finish = "stop" if i == chunks - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        events.append({**common, "choices": [choice], "usage": None})
    events.append({**common, "choices": [], "usage": USAGE})
    lines = [f"data: {json.dumps(event)}\n\n" for event in events]
    lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def http_module() -> Any:
    """openai 3.x sends through httpx2, openai 2.x through httpx."""
    import openai

    if int(openai.__version__.split(".")[0]) >= 3:
        import httpx2

        return httpx2
    import httpx

    return httpx


def fixed_http_client(http: Any, body: bytes, content_type: str) -> Any:
    """An `http.Client` (httpx or httpx2) whose transport answers every request with `body`."""
    headers = {"content-type": content_type}

    def handler(request: Any) -> Any:
        return http.Response(200, headers=headers, content=body)

    return http.Client(transport=http.MockTransport(handler))


def make_client(body: bytes, content_type: str) -> Any:
    """A real openai client whose transport answers every request with `body`."""
    import openai

    return openai.OpenAI(
        api_key="sk-benchmark",
        base_url=BASE_URL,
        max_retries=0,
        http_client=fixed_http_client(http_module(), body, content_type),
    )


# --- the caller's code ---------------------------------------------------------------------------


def plain_call(client: Any) -> Any:
    return client.chat.completions.create(model=REQUEST_MODEL, messages=MESSAGES)


def open_stream(client: Any) -> Any:
    # include_usage is set by the caller in every mode so that all modes send the same request and
    # see the same chunks (the package would otherwise add it itself for api.openai.com).
    return client.chat.completions.create(
        model=REQUEST_MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )


def plain_stream(client: Any) -> int:
    n = 0
    for _chunk in open_stream(client):
        n += 1
    return n


# --- telemetry -----------------------------------------------------------------------------------


def make_telemetry() -> tuple[Any, Any, Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class DroppingExporter(SpanExporter):
        """Drops every span: the cost of a real exporter is the same for any instrumentation."""

        def __init__(self) -> None:
            self.exported = 0
            self.last: ReadableSpan | None = None

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            self.exported += len(spans)
            self.last = spans[-1]
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

    exporter = DroppingExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    return tracer_provider, exporter, meter_provider, reader


class Floor:
    """What a minimal hand-written instrumentation records per call, written inline at the call site.

    One CLIENT span, current while the request is sent (so HTTP client spans would nest under it),
    with the attributes otel_llm_usage writes, and the same metric records: through synchronous
    counters, or (`summed`) with the counters summed in a dict that observable counters read, as the
    package sums them. Usage is read from the typed response directly and the cost is three
    multiplications. The parent compares the span
    attributes and metric series with the package's and prints any difference, so that the floor
    cannot silently drift from what the package records.
    """

    def __init__(self, tracer_provider: Any, meter_provider: Any, summed: bool = False) -> None:
        self.tracer = tracer_provider.get_tracer("benchmark.floor")
        meter = meter_provider.get_meter("benchmark.floor")
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", "s", explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", "{token}", explicit_bucket_boundaries_advisory=TOKEN_BUCKETS
        )
        self.ttfc = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            explicit_bucket_boundaries_advisory=TTFC_BUCKETS,
        )
        self.tpoc = meter.create_histogram(
            "gen_ai.client.operation.time_per_output_chunk",
            "s",
            explicit_bucket_boundaries_advisory=TPOC_BUCKETS,
        )
        # Summed: counter sums by attribute set, read at collection, as the package keeps them. Here
        # the response model is the only attribute that varies, so it alone is the key.
        self.summed = summed
        self.sums: dict[str, list[Any]] = {}
        self.lock = threading.Lock()
        if summed:
            meter.create_observable_counter("llm_usage.tokens", [self._observe_tokens], "{token}")
            meter.create_observable_counter("llm_usage.cost", [self._observe_cost], "USD")
        else:
            self.tokens = meter.create_counter("llm_usage.tokens", "{token}")
            self.cost = meter.create_counter("llm_usage.cost", "USD")
        self.utilization = meter.create_histogram(
            "llm_usage.context.utilization", "1", explicit_bucket_boundaries_advisory=UTILIZATION_BUCKETS
        )

    def _start(self, stream: bool) -> tuple[Any, Any]:
        from opentelemetry import context, trace

        span = self.tracer.start_span(
            f"chat {REQUEST_MODEL}",
            kind=trace.SpanKind.CLIENT,
            attributes={
                "llm_usage.call": True,
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.stream": stream,
                "gen_ai.request.model": REQUEST_MODEL,
                "server.address": SERVER_ADDRESS,
                "server.port": SERVER_PORT,
            },
        )
        return span, context.attach(trace.set_span_in_context(span))

    def _finish(
        self,
        span: Any,
        duration: float,
        model: str,
        response_id: str,
        reasons: list[str],
        usage: Any,
        extra: dict[str, Any],
    ) -> dict[str, Any]:
        input_tokens = usage.prompt_tokens
        output_tokens = usage.completion_tokens
        cached = usage.prompt_tokens_details.cached_tokens
        reasoning = usage.completion_tokens_details.reasoning_tokens
        input_usd = (input_tokens - cached) * PRICE_INPUT
        cache_read_usd = cached * PRICE_CACHE_READ
        output_usd = output_tokens * PRICE_OUTPUT
        total_usd = input_usd + cache_read_usd + output_usd
        utilization = input_tokens / CONTEXT_WINDOW
        span.set_attributes(
            {
                "gen_ai.response.model": model,
                "gen_ai.response.id": response_id,
                "gen_ai.response.finish_reasons": tuple(reasons),
                **extra,
                "llm_usage.usage.source": "provider",
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
                "gen_ai.usage.cache_read.input_tokens": cached,
                "gen_ai.usage.reasoning.output_tokens": reasoning,
                "llm_usage.context.window": CONTEXT_WINDOW,
                "llm_usage.context.utilization": utilization,
                "llm_usage.cost.input_usd": input_usd,
                "llm_usage.cost.cache_read_usd": cache_read_usd,
                "llm_usage.cost.cache_write_usd": 0.0,
                "llm_usage.cost.output_usd": output_usd,
                "llm_usage.price.model": REQUEST_MODEL,
                "llm_usage.cost.source": "price_table",
                "gen_ai.usage.cost": total_usd,
            }
        )
        span.end()
        attrs = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": REQUEST_MODEL,
            "gen_ai.response.model": model,
        }
        self.duration.record(duration, attrs)
        self.token_usage.record(input_tokens, {**attrs, "gen_ai.token.type": "input"})
        self.token_usage.record(output_tokens, {**attrs, "gen_ai.token.type": "output"})
        self.utilization.record(utilization, attrs)
        if not self.summed:
            tokens = self.tokens
            tokens.add(input_tokens, {**attrs, "llm_usage.token.type": "input"})
            tokens.add(output_tokens, {**attrs, "llm_usage.token.type": "output"})
            tokens.add(cached, {**attrs, "llm_usage.token.type": "cache_read"})
            if reasoning:
                tokens.add(reasoning, {**attrs, "llm_usage.token.type": "reasoning"})
            self.cost.add(total_usd, attrs)
            return attrs
        with self.lock:
            sums = self.sums.get(model)
            if sums is None:
                sums = self.sums[model] = [attrs, 0, 0, 0, 0, 0.0]
            sums[1] += input_tokens
            sums[2] += output_tokens
            sums[3] += cached
            sums[4] += reasoning
            sums[5] += total_usd
        return attrs

    def _observe_tokens(self, options: Any) -> Any:
        from opentelemetry.metrics import Observation

        with self.lock:
            rows = [list(s) for s in self.sums.values()]
        for attrs, input_tokens, output_tokens, cached, reasoning, _ in rows:
            yield Observation(input_tokens, {**attrs, "llm_usage.token.type": "input"})
            yield Observation(output_tokens, {**attrs, "llm_usage.token.type": "output"})
            yield Observation(cached, {**attrs, "llm_usage.token.type": "cache_read"})
            if reasoning:
                yield Observation(reasoning, {**attrs, "llm_usage.token.type": "reasoning"})

    def _observe_cost(self, options: Any) -> Any:
        from opentelemetry.metrics import Observation

        with self.lock:
            rows = [(s[0], s[5]) for s in self.sums.values()]
        for attrs, cost in rows:
            yield Observation(cost, attrs)

    def call(self, client: Any) -> Any:
        from opentelemetry import context

        t0 = time.perf_counter()
        span, token = self._start(False)
        try:
            response = plain_call(client)
        finally:
            context.detach(token)
        reasons = [c.finish_reason for c in response.choices if c.finish_reason]
        self._finish(span, time.perf_counter() - t0, response.model, response.id, reasons, response.usage, {})
        return response

    def stream(self, client: Any) -> int:
        from opentelemetry import context

        t0 = time.perf_counter()
        span, token = self._start(True)
        try:
            stream = open_stream(client)
        finally:
            context.detach(token)
        first: Any = None
        t_first = 0.0
        usage: Any = None
        reasons: list[str] = []
        n = 0
        for chunk in stream:
            if first is None:
                t_first = time.perf_counter()
                first = chunk
            n += 1
            choices = chunk.choices
            if choices and choices[0].finish_reason:
                reasons.append(choices[0].finish_reason)
            if chunk.usage is not None:
                usage = chunk.usage
        t_last = time.perf_counter()
        ttfc = t_first - t0
        extra = {"llm_usage.stream.chunks": n, "gen_ai.response.time_to_first_chunk": ttfc}
        attrs = self._finish(span, t_last - t0, first.model, first.id, reasons, usage, extra)
        self.ttfc.record(ttfc, attrs)
        if n > 1:
            self.tpoc.record((t_last - t_first) / (n - 1), attrs)
        return n


# --- worker ----------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def metric_signature(reader: Any) -> dict[str, Any]:
    """Per metric: its series (attribute sets) and, for histograms, how many values were recorded."""
    out: dict[str, Any] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = metric.data.data_points
                series = sorted(json.dumps(sorted(dict(p.attributes or {}).items())) for p in points)
                counts = [p.count for p in points if hasattr(p, "count")]
                out[metric.name] = {"series": series, "records": sum(counts) if counts else None}
    return out


class SanityError(RuntimeError):
    pass


class Worker:
    """One mode in one process: the clients, the telemetry, and the timings of its batches."""

    def __init__(self, mode: str, args: argparse.Namespace) -> None:
        import otel_llm_usage  # every mode imports it, so every process holds the same modules

        self.mode = mode
        self.args = args
        self.package = otel_llm_usage
        tracer_provider, self.exporter, meter_provider, self.reader = make_telemetry()
        if mode == "instrumented":
            otel_llm_usage.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
        self.call_client = make_client(chat_completion_body(), "application/json")
        stream_client = make_client(sse_body(args.chunks), "text/event-stream")
        self.fns: dict[str, Callable[[], Any]]
        if mode in ("floor", "floor-summed"):
            floor = Floor(tracer_provider, meter_provider, summed=mode == "floor-summed")
            self.fns = {
                "call": lambda: floor.call(self.call_client),
                "stream": lambda: floor.stream(stream_client),
            }
        else:
            self.fns = {
                "call": lambda: plain_call(self.call_client),
                "stream": lambda: plain_stream(stream_client),
            }
        self.sizes = {"call": args.batch, "stream": args.stream_batch}
        self.wall: dict[str, list[float]] = {"call": [], "stream": []}
        self.cpu: dict[str, list[float]] = {"call": [], "stream": []}
        self.made = 0

        response = self.fns["call"]()
        if (
            response.usage.prompt_tokens_details.cached_tokens
            != USAGE["prompt_tokens_details"]["cached_tokens"]
        ):
            raise SanityError(f"unexpected usage in the mock response: {response.usage}")
        if (n := self.fns["stream"]()) != args.chunks + 1:
            raise SanityError(f"stream yielded {n} chunks, expected {args.chunks + 1}")
        self.made = 2

    def warm_up(self) -> None:
        calls, streams = max(50, self.args.calls // 10), max(10, self.args.streams // 10)
        for _ in range(calls):
            self.fns["call"]()
        for _ in range(streams):
            self.fns["stream"]()
        self.made += calls + streams
        gc.collect()

    def batch(self, kind: str) -> tuple[float, float]:
        """Mean µs per call of one batch, by the wall clock and by process CPU time.

        gc stays on: users run with it. CPU time leaves out the time the process waits for a core;
        the wall clock is what a caller experiences.
        """
        fn, size = self.fns[kind], self.sizes[kind]
        start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(size):
            fn()
        end_cpu, end = time.process_time_ns(), time.perf_counter_ns()
        self.made += size
        wall, cpu = (end - start) / size / 1000, (end_cpu - start_cpu) / size / 1000
        self.wall[kind].append(wall)
        self.cpu[kind].append(cpu)
        return wall, cpu

    def check_spans(self) -> int:
        """One span per call, except in the baseline; returns the count expected so far."""
        exported, made = self.exporter.exported, self.made
        if self.mode == "instrumented" and exported == 0:
            raise SanityError(
                f"instrument() produced no spans over {made} calls: the openai client is not patched"
            )
        expected = made if self.mode != "baseline" else 0
        if exported != expected:
            raise SanityError(
                f"{self.mode}: {exported} spans exported over {made} calls, expected {expected}"
            )
        return expected

    def result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"mode": self.mode}
        for clock, batches in (("wall", self.wall), ("cpu", self.cpu)):
            result[clock] = {
                "call_us": statistics.median(batches["call"]),
                "stream_us": statistics.median(batches["stream"]),
                "call_batches_us": batches["call"],
                "stream_batches_us": batches["stream"],
            }
        # Sanity: the right number of spans, and what they carry (the parent compares with the floor).
        expected = self.check_spans()
        result["metrics"] = metric_signature(self.reader)
        if self.mode != "baseline":
            self.fns["call"]()
            result["call_span_attributes"] = sorted((self.exporter.last.attributes or {}).keys())
            self.fns["stream"]()
            result["stream_span_attributes"] = sorted((self.exporter.last.attributes or {}).keys())
            expected += 2
        result["spans"] = self.exporter.exported
        if self.mode == "instrumented":
            self.package.uninstrument()
            plain_call(self.call_client)
            if self.exporter.exported != expected:
                raise SanityError("a call after uninstrument() still produced a span")
        return result

    def run_alone(self) -> dict[str, Any]:
        """All batches back to back (--sequential)."""
        self.warm_up()
        for kind, total in (("call", self.args.calls), ("stream", self.args.streams)):
            gc.collect()
            for _ in range(max(1, total // self.sizes[kind])):
                self.batch(kind)
        return self.result()

    def serve(self) -> dict[str, Any]:
        """Batches on the parent's command, so that the modes' processes take turns batch by batch."""
        self.warm_up()
        reply("ready")
        for line in sys.stdin:
            command = line.strip()
            if command == "gc":
                gc.collect()
                reply("ok")
            elif command in self.fns:
                wall, cpu = self.batch(command)
                reply(f"{wall} {cpu}")
            elif command == "end":
                break
            else:
                raise ValueError(f"unknown command {command!r}")
        return self.result()

    def instructions(self) -> dict[str, Any]:
        """A block of calls and a block of streams between markers: the parent reads one callgrind
        dump per block (see _callgrind.py)."""
        for kind in ("call", "stream"):
            for _ in range(3):
                self.fns[kind]()
        start_instrumentation()
        blocks = []
        for kind, n in (("call", self.args.cg_calls), ("stream", self.args.cg_streams)):
            settle_heap()
            marker()
            for _ in range(n):
                self.fns[kind]()
            marker()
            blocks.append([kind, n])
        return {"mode": self.mode, "blocks": blocks}

    def memory(self) -> dict[str, Any]:
        call = self.fns["call"]
        for _ in range(1000):
            call()
        self.made += 1000
        gc.collect()
        rss_start = rss_bytes()
        rss_checkpoint = 0
        started = time.perf_counter()
        for i in range(1, self.args.memory_calls + 1):
            call()
            if i == self.args.memory_checkpoint:
                gc.collect()
                rss_checkpoint = rss_bytes()
        gc.collect()
        rss_end = rss_bytes()
        self.made += self.args.memory_calls
        self.check_spans()
        return {
            "mode": self.mode,
            "calls": self.args.memory_calls,
            "checkpoint": self.args.memory_checkpoint,
            "rss_start_mb": rss_start / 2**20,
            "rss_checkpoint_mb": rss_checkpoint / 2**20,
            "rss_end_mb": rss_end / 2**20,
            "growth_mb": (rss_end - rss_checkpoint) / 2**20,
            "spans": self.exporter.exported,
            "seconds": time.perf_counter() - started,
        }


def reply(text: str) -> None:
    sys.stdout.write(f"{REPLY_PREFIX}{text}\n")
    sys.stdout.flush()


# --- parent ----------------------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    # OTEL_* variables (content capture, SDK switches, ...) would change what is measured.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def worker_command(mode: str, args: argparse.Namespace, *extra: str) -> list[str]:
    options = ["--calls", str(args.calls), "--streams", str(args.streams), "--chunks", str(args.chunks)]
    options += ["--batch", str(args.batch), "--stream-batch", str(args.stream_batch)]
    return [sys.executable, os.path.abspath(__file__), "--worker", mode, *options, *extra]


class WorkerProcess:
    """A worker driven over its stdin and stdout; its stderr goes to a file shown if it fails."""

    def __init__(self, mode: str, args: argparse.Namespace, *extra: str) -> None:
        self.mode = mode
        # Lives as long as the worker; closed by result() or fail().
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            worker_command(mode, args, *extra),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=worker_env(),
        )

    def read(self) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(REPLY_PREFIX):
                return line[len(REPLY_PREFIX) :].rstrip("\n")
        self.fail()

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def result(self) -> dict[str, Any]:
        text = self.read()
        if self.proc.wait() != 0 or not text.startswith("result "):
            self.fail()
        self.stderr.close()
        return dict(json.loads(text[len("result ") :]))

    def fail(self) -> NoReturn:
        self.proc.kill()
        self.proc.wait()
        self.stderr.seek(0)
        sys.stderr.write(self.stderr.read())
        self.stderr.close()
        raise SystemExit(f"worker {self.mode!r} failed (exit status {self.proc.returncode})")


def run_round(args: argparse.Namespace, index: int) -> dict[str, dict[str, Any]]:
    """One process per mode; unless --sequential they take turns batch by batch, so that a busy
    moment of the machine falls on every mode alike."""
    order = MODES[index % len(MODES) :] + MODES[: index % len(MODES)]
    if args.sequential:
        results = {}
        for mode in order:
            worker = WorkerProcess(mode, args, "--alone")
            worker.proc.stdin.close()  # type: ignore[union-attr]
            results[mode] = worker.result()
        return results
    workers = {mode: WorkerProcess(mode, args) for mode in order}
    for worker in workers.values():
        if worker.read() != "ready":
            worker.fail()
    for kind, total, size in (("call", args.calls, args.batch), ("stream", args.streams, args.stream_batch)):
        for worker in workers.values():
            worker.send("gc")
        for b in range(max(1, total // size)):
            for mode in order[b % len(order) :] + order[: b % len(order)]:
                workers[mode].send(kind)
    for worker in workers.values():
        worker.proc.stdin.write("end\n")  # type: ignore[union-attr]
        worker.proc.stdin.close()  # type: ignore[union-attr]
    return {mode: workers[mode].result() for mode in MODES}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    import openai

    return {
        "python": platform.python_version(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpus": str(os.cpu_count()),
        "openai": openai.__version__,
        "transport": http_module().__name__,
        "opentelemetry-sdk": version("opentelemetry-sdk"),
        "otel-llm-usage": version("otel-llm-usage") if _installed("otel-llm-usage") else "source",
    }


def _installed(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def summarise(rounds: list[dict[str, dict[str, Any]]], clock: str) -> dict[str, Any]:
    """Added cost per round is paired with the same round's baseline, then the median is taken."""
    out: dict[str, Any] = {}
    for kind in ("call", "stream"):
        key = f"{kind}_us"
        base = [r["baseline"][clock][key] for r in rounds]
        added = {
            m: [r[m][clock][key] - r["baseline"][clock][key] for r in rounds]
            for m in ("instrumented", "floor")
        }
        inst, floor = statistics.median(added["instrumented"]), statistics.median(added["floor"])
        per_round = [i / f for i, f in zip(added["instrumented"], added["floor"], strict=True) if f > 0]
        out[kind] = {
            "baseline_us": statistics.median(base),
            "baseline_range_us": [min(base), max(base)],
            "instrumented_added_us": inst,
            "instrumented_added_range_us": [min(added["instrumented"]), max(added["instrumented"])],
            "floor_added_us": floor,
            "floor_added_range_us": [min(added["floor"]), max(added["floor"])],
            "ratio": inst / floor if floor > 0 else None,
            "ratio_range_per_round": [min(per_round), max(per_round)] if per_round else None,
            "target": TARGET_CALL if kind == "call" else TARGET_STREAM,
        }
    return out


def _range(lo: float, hi: float) -> str:
    return f"({lo:,.1f} … {hi:,.1f})"


def _verdict(d: dict[str, Any]) -> str:
    ratio, target = d["ratio"], d["target"]
    if ratio is None:
        return "n/a: the floor added nothing measurable"
    spread = d["ratio_range_per_round"]
    # The headline is the ratio of the medians; per-round ratios show how far the noise moves it.
    per_round = f" (per round {spread[0]:.2f} … {spread[1]:.2f})" if spread else ""
    return f"**{ratio:.2f}×**{per_round}, target ≤ {target}×: {'met' if ratio <= target else '**missed**'}"


def markdown(summary: dict[str, Any], title: str, chunks: int) -> str:
    c, s = summary["call"], summary["stream"]

    def added(d: dict[str, Any], mode: str) -> str:
        return f"+{d[f'{mode}_added_us']:,.1f} µs {_range(*d[f'{mode}_added_range_us'])}"

    rows = [
        f"| {title} | per call | per stream ({chunks} chunks + usage chunk) |",
        "|---|---|---|",
        f"| baseline, uninstrumented | {c['baseline_us']:,.1f} µs {_range(*c['baseline_range_us'])} "
        f"| {s['baseline_us']:,.1f} µs {_range(*s['baseline_range_us'])} |",
        f"| added by otel_llm_usage | {added(c, 'instrumented')} | {added(s, 'instrumented')} |",
        f"| added by the floor | {added(c, 'floor')} | {added(s, 'floor')} |",
        f"| otel_llm_usage / floor | {_verdict(c)} | {_verdict(s)} |",
    ]
    return "\n".join(rows)


def memory_markdown(memory: dict[str, Any], limit_mb: float) -> str:
    rows = ["| RSS (VmRSS) | start | after 10k calls | end | growth |", "|---|---|---|---|---|"]
    rows[0] = rows[0].replace("10k", f"{memory['instrumented']['checkpoint']:,}")
    for mode, label in (("instrumented", "otel_llm_usage"), ("baseline", "baseline, uninstrumented")):
        if mode not in memory:
            continue
        m = memory[mode]
        growth = f"{m['growth_mb']:+.1f} MB over the last {m['calls'] - m['checkpoint']:,} calls"
        if mode == "instrumented":
            growth += f" (flat if < {limit_mb:g} MB: {'met' if m['growth_mb'] < limit_mb else '**missed**'})"
        rows.append(
            f"| {label}, {m['calls']:,} calls | {m['rss_start_mb']:.1f} MB | {m['rss_checkpoint_mb']:.1f} MB "
            f"| {m['rss_end_mb']:.1f} MB | {growth} |"
        )
    return "\n".join(rows)


def compare_with_floor(rounds: list[dict[str, dict[str, Any]]]) -> list[str]:
    """Differences between what the package and the floor record: the floor must stay comparable."""
    inst, floor = rounds[0]["instrumented"], rounds[0]["floor"]
    notes = []
    for kind in ("call", "stream"):
        key = f"{kind}_span_attributes"
        only_pkg = sorted(set(inst[key]) - set(floor[key]))
        only_floor = sorted(set(floor[key]) - set(inst[key]))
        if only_pkg or only_floor:
            notes.append(
                f"{kind} span attributes only in the package: {only_pkg}; only in the floor: {only_floor}"
            )
    if set(inst["metrics"]) != set(floor["metrics"]):
        notes.append(
            f"metric names differ: package {sorted(inst['metrics'])}, floor {sorted(floor['metrics'])}"
        )
    for name in sorted(set(inst["metrics"]) & set(floor["metrics"])):
        if inst["metrics"][name] != floor["metrics"][name]:
            notes.append(f"metric {name}: package {inst['metrics'][name]} vs floor {floor['metrics'][name]}")
    return notes


def count_instructions(mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Instructions per call and per stream of one mode, its worker run under callgrind."""
    with tempfile.TemporaryDirectory(prefix=f"callgrind-{mode}-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        extra = ["--counting", "--cg-calls", str(args.cg_calls), "--cg-streams", str(args.cg_streams)]
        proc = subprocess.run(
            ["valgrind", *VALGRIND_ARGS, f"--callgrind-out-file={out}", *worker_command(mode, args, *extra)],
            capture_output=True,
            text=True,
            env={**worker_env(), "PYTHONHASHSEED": "0"},
            check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(REPLY_PREFIX + "result ")]
        if proc.returncode != 0 or not lines:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"worker {mode!r} under callgrind failed (exit status {proc.returncode})")
        result = json.loads(lines[-1][len(REPLY_PREFIX + "result ") :])
        return {
            kind: callgrind_totals(f"{out}.{2 * k + 2}") / n for k, (kind, n) in enumerate(result["blocks"])
        }


def instructions_markdown(counts: dict[str, dict[str, float]], chunks: int) -> str:
    base, floor, ours = counts["baseline"], counts["floor"], counts["instrumented"]
    summed = counts["floor-summed"]
    rows = [
        "| instructions | baseline | added: instrumented | added: floor | ratio to the floor | target "
        "| added: floor, counters summed | ratio to it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, label, target in (
        ("call", "per call", TARGET_CALL),
        ("stream", f"per {chunks}-chunk stream", TARGET_STREAM),
    ):
        added, added_floor, added_summed = (
            ours[kind] - base[kind],
            floor[kind] - base[kind],
            summed[kind] - base[kind],
        )
        ratio = added / added_floor if added_floor > 0 else float("nan")
        ratio_summed = added / added_summed if added_summed > 0 else float("nan")
        verdict = "met" if ratio <= target else "missed"
        rows.append(
            f"| {label} | {base[kind]:,.0f} | +{added:,.0f} | +{added_floor:,.0f} | {ratio:.2f}× | "
            f"≤ {target}× ({verdict}) | +{added_summed:,.0f} | {ratio_summed:.2f}× |"
        )
    return "\n".join(rows)


def run_instructions(args: argparse.Namespace) -> int:
    """Each mode's worker once under callgrind: counts repeat whatever else the machine is doing."""
    if shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install -y valgrind)")
    print(
        f"counting instructions: {args.cg_calls} calls and {args.cg_streams} streams per mode",
        file=sys.stderr,
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        counts = dict(
            zip(COUNTED_MODES, pool.map(lambda m: count_instructions(m, args), COUNTED_MODES), strict=True)
        )
    print(instructions_markdown(counts, args.chunks))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"instructions": counts, "versions": versions()}, f, indent=2)
    return 0


def run_parent(args: argparse.Namespace) -> int:
    if args.instructions:
        return run_instructions(args)
    info = versions()
    print(
        f"otel_llm_usage overhead: openai {info['openai']} ({info['transport']}), opentelemetry-sdk "
        f"{info['opentelemetry-sdk']}, Python {info['python']}, {info['platform']}, {info['cpus']} CPUs",
        file=sys.stderr,
    )
    print(
        f"{args.rounds} rounds x {len(MODES)} modes, each worker: {args.calls:,} calls "
        f"(batches of {args.batch}) + {args.streams:,} streams of {args.chunks} chunks "
        f"(batches of {args.stream_batch})",
        file=sys.stderr,
    )
    started = time.perf_counter()
    rounds: list[dict[str, dict[str, Any]]] = []
    for r in range(args.rounds):
        round_started = time.perf_counter()
        rounds.append(results := run_round(args, r))
        for mode in MODES:
            res = results[mode]
            print(
                f"round {r + 1}/{args.rounds} {mode:<12} {res['wall']['call_us']:8.1f} µs/call "
                f"{res['wall']['stream_us']:9.1f} µs/stream   CPU {res['cpu']['call_us']:8.1f} µs/call "
                f"{res['cpu']['stream_us']:9.1f} µs/stream   {res['spans']:,} spans",
                file=sys.stderr,
            )
        print(
            f"round {r + 1}/{args.rounds} took {time.perf_counter() - round_started:.0f} s", file=sys.stderr
        )
    summary = {clock: summarise(rounds, clock) for clock in ("wall", "cpu")}
    notes = compare_with_floor(rounds)

    memory: dict[str, Any] | None = None
    if args.memory:
        memory = {}
        extra = ["--memory", "--memory-calls", str(args.memory_calls)]
        extra += ["--memory-checkpoint", str(args.memory_checkpoint)]
        for mode in ("instrumented", "baseline"):
            worker = WorkerProcess(mode, args, *extra)
            worker.proc.stdin.close()  # type: ignore[union-attr]
            memory[mode] = res = worker.result()
            print(
                f"memory {mode:<12} RSS {res['rss_start_mb']:.1f} MB at start, "
                f"{res['rss_checkpoint_mb']:.1f} MB after {res['checkpoint']:,}, "
                f"{res['rss_end_mb']:.1f} MB after {res['calls']:,} calls ({res['seconds']:.0f} s)",
                file=sys.stderr,
            )
    elapsed = time.perf_counter() - started

    attrs = rounds[0]["instrumented"]
    print()
    print(markdown(summary["wall"], "wall clock", args.chunks))
    print()
    print(markdown(summary["cpu"], "CPU time", args.chunks))
    if memory is not None:
        print()
        print(memory_markdown(memory, args.memory_limit_mb))
    print()
    print(
        f"openai {info['openai']} ({info['transport']}), opentelemetry-sdk {info['opentelemetry-sdk']}, "
        f"Python {info['python']}, {info['platform']}, {info['cpus']} CPUs. {args.rounds} rounds; each "
        f"round runs every mode in its own process: {args.calls:,} calls timed in batches of {args.batch} "
        f"and {args.streams:,} streams in batches of {args.stream_batch}, median of batch means. Added cost "
        f"is measured against the same round's baseline; figures are medians over rounds, (min … max) "
        f"the spread over rounds. Wall clock is time.perf_counter_ns; CPU time is time.process_time_ns, "
        f"which leaves out time spent waiting for a core. Spans carry "
        f"{len(attrs['call_span_attributes'])} attributes ({len(attrs['stream_span_attributes'])} for "
        f"streams). Run time {elapsed:.0f} s."
    )
    for note in notes:
        print(f"\nNote: the floor records differently from the package: {note}")

    if args.json:
        payload = {
            "versions": info,
            "settings": {
                k: getattr(args, k) for k in ("rounds", "calls", "streams", "chunks", "batch", "stream_batch")
            },
            "summary": summary,
            "rounds": rounds,
            "memory": memory,
            "floor_differences": notes,
            "seconds": elapsed,
        }
        with open(args.json, "w") as out:
            json.dump(payload, out, indent=2)
    missed = any(d["ratio"] is not None and d["ratio"] > d["target"] for d in summary["wall"].values())
    if memory is not None and memory["instrumented"]["growth_mb"] >= args.memory_limit_mb:
        missed = True
    return 1 if args.strict and missed else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="processes per mode (default 5)")
    p.add_argument("--calls", type=int, default=2000, help="timed non-streaming calls per worker")
    p.add_argument("--streams", type=int, default=500, help="timed streams per worker")
    p.add_argument("--chunks", type=int, default=50, help="content chunks per stream (plus one usage chunk)")
    p.add_argument("--batch", type=int, default=100, help="calls per timed batch")
    p.add_argument("--stream-batch", type=int, default=25, help="streams per timed batch")
    p.add_argument("--memory", action="store_true", help="also run the RSS check (takes a few minutes)")
    p.add_argument("--memory-calls", type=int, default=100_000, help="calls of the RSS check")
    p.add_argument("--memory-checkpoint", type=int, default=10_000, help="RSS is compared from this call on")
    p.add_argument("--memory-limit-mb", type=float, default=4.0, help="growth still counted as flat")
    p.add_argument("--json", metavar="PATH", help="write all results to PATH")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--sequential",
        action="store_true",
        help="run each mode's process to the end before starting the next, instead of taking turns",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind's callgrind instead of timing (repeatable on a busy machine)",
    )
    p.add_argument("--cg-calls", type=int, default=60, help="calls counted under callgrind")
    p.add_argument("--cg-streams", type=int, default=20, help="streams counted under callgrind")
    p.add_argument("--jobs", type=int, default=2, help="callgrind workers at once")
    p.add_argument("--counting", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", choices=COUNTED_MODES, help=argparse.SUPPRESS)
    p.add_argument("--alone", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        try:
            worker = Worker(args.worker, args)
            if args.counting:
                result = worker.instructions()
            elif args.memory:
                result = worker.memory()
            elif args.alone:
                result = worker.run_alone()
            else:
                result = worker.serve()
        except SanityError as exc:
            print(f"SANITY CHECK FAILED: {exc}", file=sys.stderr)
            return 2
        reply("result " + json.dumps(result))
        return 0
    return run_parent(args)


if __name__ == "__main__":
    sys.exit(main())
