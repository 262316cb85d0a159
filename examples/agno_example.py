"""Agno runs with exact usage and cost, next to Agno's own metrics.

Runs against the embedded OpenAI and Anthropic emulators (no API key needed): two runs of one
Agno session on an OpenAI model, one of them streamed, then a Claude run with prompt caching,
where Agno's input count leaves the cached tokens out and ours keeps them in. No change to the
agent code: `instrument()` is all.

    python -m examples.agno_example
"""

from __future__ import annotations

from typing import Any

from agno.agent import Agent
from agno.db.in_memory import InMemoryDb
from agno.models.anthropic import Claude
from agno.models.openai import OpenAIChat
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage
from emulators import AnthropicEmulator, AnthropicReply, OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.runs import session_usage

ROW = "{:<30} {:>8} {:>8} {:>10} {:>11} {:>9} {:>10}"


def header() -> None:
    print(ROW.format("", "input", "output", "cache read", "cache write", "reasoning", "cost USD"))


def agno_row(label: str, m: Any) -> None:
    cost = "-" if m.cost is None else f"{m.cost:.6f}"
    print(
        ROW.format(
            label,
            m.input_tokens,
            m.output_tokens,
            m.cache_read_tokens,
            m.cache_write_tokens,
            m.reasoning_tokens,
            cost,
        )
    )


def ours_row(label: str, input: Any, output: Any, read: Any, write: Any, reasoning: Any, cost: float) -> None:
    print(ROW.format(label, input, output, read, write, reasoning, f"{cost:.6f}"))


def span_row(label: str, span: ReadableSpan) -> None:
    a = dict(span.attributes or {})
    ours_row(
        label,
        a[sc.RUN_INPUT_TOKENS],
        a[sc.RUN_OUTPUT_TOKENS],
        a[sc.RUN_CACHE_READ_TOKENS],
        a[sc.RUN_CACHE_WRITE_TOKENS],
        a[sc.RUN_REASONING_TOKENS],
        float(a[sc.RUN_COST_USD]),  # type: ignore[arg-type]
    )


def run_span(exporter: InMemorySpanExporter, run_id: str) -> ReadableSpan:
    return next(s for s in exporter.get_finished_spans() if (s.attributes or {}).get(sc.RUN_ID) == run_id)


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_llm_usage.instrument(tracer_provider=provider)

    with OpenAIEmulator() as openai_emu, AnthropicEmulator() as anthropic_emu:
        agent = Agent(
            name="support",
            model=OpenAIChat(id="gpt-4o", base_url=openai_emu.base_url, api_key="emulator", max_retries=0),
            db=InMemoryDb(),
        )
        openai_emu.push(
            Reply(prompt_tokens=1200, completion_tokens=180, text="Try restarting it."),
            Reply(prompt_tokens=1450, cached_tokens=1024, completion_tokens=95, text="Then reset it."),
        )
        header()

        first = agent.run("My router drops Wi-Fi.")
        agno_row("run 1, Agno metrics", first.metrics)
        span_row("run 1, our run span", run_span(exporter, first.run_id))

        second = None
        for event in agent.run("Still dropping.", stream=True, yield_run_output=True):
            second = event
        assert second is not None
        agno_row("run 2 (streamed), Agno", second.metrics)
        span_row("run 2 (streamed), ours", run_span(exporter, second.run_id))

        theirs = agent.get_session_metrics()
        ours = session_usage(first.session_id)
        if theirs is not None and ours is not None:
            agno_row("session, Agno", theirs)
            ours_row(
                "session, ours",
                ours.input_tokens,
                ours.output_tokens,
                ours.cache_read_tokens,
                ours.cache_write_tokens,
                ours.reasoning_tokens,
                ours.cost_usd,
            )

        claude = Agent(
            name="writer",
            model=Claude(
                id="claude-sonnet-4-5",
                api_key="emulator",
                client_params={"base_url": anthropic_emu.url, "max_retries": 0},
            ),
        )
        anthropic_emu.push(
            AnthropicReply(
                input_tokens=300,
                cache_creation_input_tokens=1000,
                cache_read_input_tokens=5000,
                output_tokens=400,
            )
        )
        output = claude.run("Summarise the ticket.")
        print()
        agno_row("Claude run, Agno metrics", output.metrics)
        span_row("Claude run, our run span", run_span(exporter, output.run_id))
        print(
            "\nAgno's Claude input is Anthropic's uncached input (300); ours is all input, cache"
            "\nreads and writes included (300 + 5000 + 1000 = 6300), as OpenAI models count it."
            "\nAgno computes no cost; ours prices every call."
        )

    otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
