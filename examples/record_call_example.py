"""Calls no patched library made, recorded with `record_call()`; run latency and context use.

python -m examples.record_call_example
"""

from __future__ import annotations

import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage
from otel_llm_usage import semconv as sc


def main() -> None:
    exporter = InMemorySpanExporter()
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    otel_llm_usage.instrument(tracer_provider=tp)
    try:
        with otel_llm_usage.session("batch-2026-11-29"), otel_llm_usage.run("nightly", agent="summariser"):
            # A batch result file in Anthropic's shape: input_tokens there excludes the cache.
            raw = {"input_tokens": 300, "cache_read_input_tokens": 5000,
                   "cache_creation_input_tokens": 1000, "output_tokens": 400}  # fmt: skip
            otel_llm_usage.record_call(
                model="claude-sonnet-4-5",
                provider="anthropic",
                input_tokens=raw["input_tokens"]
                + raw["cache_read_input_tokens"]
                + raw["cache_creation_input_tokens"],
                cache_read_tokens=raw["cache_read_input_tokens"],
                cache_write_tokens=raw["cache_creation_input_tokens"],
                output_tokens=raw["output_tokens"],
                duration_s=2.4,
            )
            # An in-house gateway, timed by the context manager.
            with otel_llm_usage.record_call(model="gpt-4o", provider="openai") as call:
                time.sleep(0.05)  # stands for the gateway's network round trip
                call.set_usage(input_tokens=96_000, output_tokens=800)
    finally:
        otel_llm_usage.uninstrument()

    for span in exporter.get_finished_spans():
        a = dict(span.attributes or {})
        if a.get(sc.LLM_CALL_MARK):
            print(
                f"{span.name:<26} input={a[sc.USAGE_INPUT_TOKENS]:<6} cost=${a[sc.USAGE_COST]:.5f} "
                f"context use={a.get(sc.CONTEXT_UTILIZATION, 0):.0%}"
            )
        else:
            print(
                f"{span.name:<26} requests={a[sc.RUN_REQUESTS]} cost=${a[sc.RUN_COST_USD]:.5f} "
                f"time to first token={a[sc.RUN_TIME_TO_FIRST_TOKEN]:.3f}s "
                f"LLM busy={a[sc.RUN_LLM_DURATION]:.3f}s "
                f"peak context use={a[sc.RUN_MAX_CONTEXT_UTILIZATION]:.0%}"
            )


if __name__ == "__main__":
    main()
