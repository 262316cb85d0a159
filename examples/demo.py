"""The demo: a small multi-agent workload, its run and session rollups, and Prometheus /metrics.

Runs against the embedded OpenAI emulator (no API key needed). With OPENAI_API_KEY set it calls
the real OpenAI API instead. With OTEL_EXPORTER_OTLP_ENDPOINT set, spans also go to that
Collector / Jaeger over OTLP; with `--metrics otlp` the metrics go there too, instead of being
served on /metrics (one path, so nothing is counted twice).

    python -m examples.demo [--loops N | --forever] [--interval SECONDS] [--metrics prometheus|otlp]
                            [--serve SECONDS] [--port PORT]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import openai
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import otel_llm_usage
from emulators import OpenAIEmulator, Reply

Push = Callable[..., None]
EMULATED = not os.environ.get("OPENAI_API_KEY")
# Warnings only, never reached by one round of the workload; on /metrics as llm_usage_budget_*.
BUDGETS = [
    otel_llm_usage.Budget(max_cost_usd=1.0, scope="process"),
    otel_llm_usage.Budget(max_cost_usd=0.05, scope="run", agent="writer"),
]


def resource() -> Resource:
    return Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "otel-llm-usage-demo"})


def tracer_provider() -> TracerProvider:
    tp = TracerProvider(resource=resource())
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tp)
    return tp


def otlp_meter_provider() -> MeterProvider:
    """Metrics over OTLP/HTTP to OTEL_EXPORTER_OTLP_ENDPOINT, every OTEL_METRIC_EXPORT_INTERVAL ms.

    Histogram points carry exemplars (the SDK's default filter keeps measurements made inside a
    sampled span: each call's own span), which a Collector can expose as OpenMetrics."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())], resource=resource()
    )


def triage(client: openai.OpenAI, push: Push, question: str) -> str:
    with otel_llm_usage.run("triage", agent="triage") as r:
        push(prompt_tokens=420, completion_tokens=12, model="gpt-4o-mini-2024-07-18", text="research")
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"Classify: {question}"}], max_tokens=5
        )
    print_run(r)
    return answer.choices[0].message.content or ""


def research(client: openai.OpenAI, push: Push, question: str) -> None:
    with otel_llm_usage.run("research", agent="researcher") as r:
        push(prompt_tokens=30)
        client.embeddings.create(model="text-embedding-3-small", input=[question])
        for step in range(2):
            # the second step re-sends the first's context: most of it comes from the prompt cache
            push(
                prompt_tokens=2400 + 1200 * step, cached_tokens=2048 * step, completion_tokens=350, chunks=12
            )
            stream = client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": f"Research step {step}: {question}"}],
                stream=True,
            )
            for _ in stream:
                pass
    print_run(r)


def answer(client: openai.OpenAI, push: Push, question: str) -> None:
    with otel_llm_usage.run("answer", agent="writer") as r:
        push(prompt_tokens=3100, completion_tokens=900, reasoning_tokens=640, model="o4-mini-2025-04-16")
        client.responses.create(model="o4-mini", input=f"Write the answer to: {question}")
        push(prompt_tokens=800, completion_tokens=120, model="house-llm")  # no public price: unpriced
        client.chat.completions.create(
            model="house-llm", messages=[{"role": "user", "content": "Check tone"}]
        )
        if EMULATED:
            push(status=429)  # a rate limit: recorded as an error, and the app sees the SDK's exception
            try:
                client.chat.completions.create(
                    model="o4-mini", messages=[{"role": "user", "content": "Again"}]
                )
            except openai.RateLimitError:
                pass
    print_run(r)


def print_run(r: Any) -> None:
    u = r.usage
    print(
        f"    run {r.name:<9} requests={u.requests:<2} in={u.input_tokens:<6} "
        f"(cached {u.cache_read_tokens:<5}) out={u.output_tokens:<5} (reasoning {u.reasoning_tokens:<4}) "
        f"cost=${u.cost_usd:.6f} unpriced={u.unpriced_requests} errors={u.errors}"
    )


def conversation(client: openai.OpenAI, push: Push, session_id: str, user: str, questions: list[str]) -> None:
    print(f"\nsession {session_id} (user {user})")
    with otel_llm_usage.session(session_id, user_id=user):
        for question in questions:
            triage(client, push, question)
            research(client, push, question)
            answer(client, push, question)
    s = otel_llm_usage.session_usage(session_id)
    if s is not None:
        print(
            f"  session total: requests={s.requests} in={s.input_tokens} out={s.output_tokens} "
            f"cost=${s.cost_usd:.6f} unpriced={s.unpriced_requests} errors={s.errors}"
        )


def close_sessions(session_ids: tuple[str, ...]) -> None:
    """The conversations are over: closing them records the session histograms (cost per session)."""
    for session_id in session_ids:
        otel_llm_usage.close_session(session_id)


def show_metrics(port: int) -> None:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    wanted = ("llm_usage_cost_USD_total", "llm_usage_requests_unpriced_total", "llm_usage_budget_")
    print(f"\nPrometheus metrics at http://127.0.0.1:{port}/metrics (excerpt, scope labels left out):")
    for line in body.splitlines():
        if line.startswith(wanted):
            print("  " + re.sub(r',?otel_scope_[a-z_]+="[^"]*"', "", line))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loops", type=int, default=1, help="repeat the workload (0: until interrupted)")
    parser.add_argument("--forever", action="store_true", help="repeat the workload until interrupted")
    parser.add_argument(
        "--interval", type=float, default=0.0, help="seconds to wait between two rounds of the workload"
    )
    parser.add_argument(
        "--metrics",
        choices=("prometheus", "otlp"),
        default="prometheus",
        help="serve /metrics on --port (default), or send metrics over OTLP to OTEL_EXPORTER_OTLP_ENDPOINT",
    )
    parser.add_argument(
        "--serve",
        type=float,
        default=float(os.environ.get("DEMO_SERVE_SECONDS", "5")),
        help="keep serving /metrics this many seconds after the workload (-1: forever)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_METRICS_PORT", "9464")))
    args = parser.parse_args(argv)
    if args.interval < 0:
        parser.error("--interval must be >= 0")
    if args.forever:
        args.loops = 0

    emulator = OpenAIEmulator().start() if EMULATED else None
    tracer_provider()
    meter_provider = otlp_meter_provider() if args.metrics == "otlp" else None
    if meter_provider is not None:
        otel_llm_usage.instrument(meter_provider=meter_provider, stream_usage="always", budgets=BUDGETS)
    else:
        otel_llm_usage.instrument(prometheus_port=args.port, stream_usage="always", budgets=BUDGETS)
    if emulator is not None:
        client = openai.OpenAI(base_url=emulator.base_url, api_key="demo", max_retries=0)

        def push(**reply: Any) -> None:
            emulator.push(Reply(**reply))

        print(f"Using the embedded OpenAI emulator at {emulator.base_url}")
    else:
        client = openai.OpenAI()

        def push(**reply: Any) -> None:
            pass

        print("Using the real OpenAI API (OPENAI_API_KEY is set)")

    loop = 0
    sessions: tuple[str, ...] = ()
    try:
        while args.loops == 0 or loop < args.loops:
            loop += 1
            sessions = (f"support-alice-{loop}", f"research-bob-{loop}")
            conversation(client, push, sessions[0], "alice", ["Why was I billed twice?"])
            conversation(client, push, sessions[1], "bob", ["Compare vector DBs", "Pick one"])
            if args.loops == 0 or loop < args.loops:
                close_sessions(sessions)
                # A modest, steady rate: a dashboard's rate() sees a flat line, not bursts.
                time.sleep(args.interval)
        print("\nUsage summary (this process):")
        print(otel_llm_usage.usage_summary())
        close_sessions(sessions)
        if meter_provider is None:
            show_metrics(args.port)
        if args.serve:
            print(
                f"\nServing /metrics {'until interrupted' if args.serve < 0 else f'for {args.serve:g} s'}..."
            )
            deadline = None if args.serve < 0 else time.monotonic() + args.serve
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        otel_llm_usage.uninstrument()
        trace.get_tracer_provider().shutdown()  # type: ignore[attr-defined]
        if meter_provider is not None:
            meter_provider.shutdown()
        if emulator is not None:
            emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
