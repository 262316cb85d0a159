"""Resident memory of the rollups over a long run: it must stay flat once the session LRU is full.

Drives 1,000,000 LLM calls through the recorder (and so the rollup, its listener) on a real SDK
TracerProvider whose only other span processor drops every span. Calls come in runs of
`--per-run` calls, each run in one of `--sessions` sessions visited in a scrambled order, with
`max_sessions` far below the number of sessions so the LRU keeps evicting. Prints VmRSS (from
/proc/self/status) at intervals.

    PYTHONPATH=. python benchmarks/rollup_memory.py
    PYTHONPATH=. python benchmarks/rollup_memory.py --calls 200000 --every 20000
"""

from __future__ import annotations

import argparse
import gc
import time

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider

import otel_llm_usage
from otel_llm_usage import active
from otel_llm_usage.recorder import CallRequest, CallResult
from otel_llm_usage.runs import run, session, usage_summary
from otel_llm_usage.usage import TokenUsage

MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "o4-mini")


class DropAll(SpanProcessor):
    """Stands in for an exporter that loses everything: the rollups must not need export."""

    def on_end(self, span: ReadableSpan) -> None:
        return None


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--max-sessions", type=int, default=10_000)
    parser.add_argument("--per-run", type=int, default=5)
    parser.add_argument("--every", type=int, default=100_000)
    args = parser.parse_args()

    tp = TracerProvider()
    tp.add_span_processor(DropAll())
    mp = MeterProvider(metric_readers=[InMemoryMetricReader()])
    otel_llm_usage.instrument(tracer_provider=tp, meter_provider=mp, max_sessions=args.max_sessions)
    inst = active.current()
    assert inst is not None and inst.rollup is not None and inst.rollup.attached_to_provider
    recorder, rollup = inst.recorder, inst.rollup

    gc.collect()
    print(f"calls={args.calls:,} sessions={args.sessions:,} max_sessions={args.max_sessions:,}")
    print(
        f"{'calls':>10} {'VmRSS MiB':>10} {'held sessions':>14} {'open spans':>11} "
        f"{'wall µs/call':>13} {'cpu µs/call':>12}"
    )
    print(f"{0:>10,} {rss_kib() / 1024:>10.1f} {0:>14,} {0:>11,}")
    done = 0
    group = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while done < args.calls:
        # A multiplicative scramble of the group number: sessions recur, but far apart.
        sid = f"session-{(group * 40503) % args.sessions}"
        with session(sid, user_id=f"user-{group % 977}"), run("agent-" + str(group % 8)):
            for k in range(min(args.per_run, args.calls - done)):
                model = MODELS[(group + k) % len(MODELS)]
                call = recorder.start(CallRequest("chat", "openai", model, server_address="api.openai.com"))
                usage = TokenUsage(input=1200 + k, output=300, cache_read=1024, reasoning=64)
                call.finish(CallResult(response_model=model, response_id=f"chatcmpl-{done}", usage=usage))
                done += 1
                if done % args.every == 0:
                    wall = (time.perf_counter() - t0) / args.every * 1e6
                    cpu = (time.process_time() - c0) / args.every * 1e6
                    held = len(rollup.sessions.items)
                    print(
                        f"{done:>10,} {rss_kib() / 1024:>10.1f} {held:>14,} {len(rollup.spans):>11,} "
                        f"{wall:>13.1f} {cpu:>12.1f}",
                        flush=True,
                    )
                    t0, c0 = time.perf_counter(), time.process_time()
        group += 1

    total = usage_summary().total
    print(
        f"process total: {total.requests:,} requests, {total.input_tokens:,} input tokens, "
        f"${total.cost_usd:,.2f}"
    )
    assert total.requests == args.calls
    otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
