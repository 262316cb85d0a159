"""OpenAI Agents SDK runs with exact usage and cost, next to the SDK's own usage numbers.

Runs against the embedded OpenAI emulator (no API key needed): two turns of one conversation
(`SQLiteSession`), one of them streamed, then a streamed Chat Completions run, where the SDK sees
no usage and the run span still has it. No change to the agent code: `instrument()` is all.

    python -m examples.openai_agents_example
"""

from __future__ import annotations

import asyncio
from typing import Any

from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    SQLiteSession,
    set_tracing_disabled,
)
from openai import AsyncOpenAI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.runs import session_usage

ROW = "{:<34} {:>9} {:>8} {:>8} {:>7} {:>9} {:>10}"


def header() -> None:
    print(ROW.format("", "requests", "input", "output", "cached", "reasoning", "cost USD"))


def sdk_row(label: str, usage: Any) -> None:
    print(
        ROW.format(
            label,
            usage.requests,
            usage.input_tokens,
            usage.output_tokens,
            usage.input_tokens_details.cached_tokens,
            usage.output_tokens_details.reasoning_tokens,
            "-",
        )
    )


def span_row(label: str, span: ReadableSpan) -> None:
    a = dict(span.attributes or {})
    print(
        ROW.format(
            label,
            a[sc.RUN_REQUESTS],
            a[sc.RUN_INPUT_TOKENS],
            a[sc.RUN_OUTPUT_TOKENS],
            a[sc.RUN_CACHE_READ_TOKENS],
            a[sc.RUN_REASONING_TOKENS],
            f"{a[sc.RUN_COST_USD]:.6f}",
        )
    )


def last_run_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    runs = [
        s
        for s in exporter.get_finished_spans()
        if (s.attributes or {}).get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT
    ]
    return runs[-1]


async def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # stream_usage="always" asks every streamed Chat Completions call for its usage, which the
    # SDK does only for api.openai.com unless ModelSettings(include_usage=True).
    otel_llm_usage.instrument(tracer_provider=provider, stream_usage="always")
    set_tracing_disabled(True)  # the SDK's own tracing would export to OpenAI's backend

    with OpenAIEmulator() as emu:
        client = AsyncOpenAI(base_url=emu.base_url, api_key="emulator", max_retries=0)
        agent = Agent(
            name="support",
            instructions="Answer briefly.",
            model=OpenAIResponsesModel(model="gpt-4o", openai_client=client),
        )
        conversation = SQLiteSession("support-42")
        emu.push(
            Reply(prompt_tokens=1200, cached_tokens=0, completion_tokens=180, text="Try restarting it."),
            Reply(prompt_tokens=1450, cached_tokens=1024, completion_tokens=95, text="Then reset it."),
        )
        header()

        first = await Runner.run(agent, "My router drops Wi-Fi.", session=conversation)
        sdk_row("turn 1, SDK usage", first.context_wrapper.usage)
        span_row("turn 1, our run span", last_run_span(exporter))

        second = Runner.run_streamed(agent, "Still dropping.", session=conversation)
        async for _ in second.stream_events():
            pass
        sdk_row("turn 2 (streamed), SDK usage", second.context_wrapper.usage)
        span_row("turn 2 (streamed), our run span", last_run_span(exporter))

        total = session_usage("support-42")
        if total is not None:
            print(
                ROW.format(
                    "session support-42, ours",
                    total.requests,
                    total.input_tokens,
                    total.output_tokens,
                    total.cache_read_tokens,
                    total.reasoning_tokens,
                    f"{total.cost_usd:.6f}",
                )
            )

        chat_agent = agent.clone(
            name="support-chat", model=OpenAIChatCompletionsModel(model="gpt-4o", openai_client=client)
        )
        emu.push(Reply(prompt_tokens=900, completion_tokens=60))
        streamed = Runner.run_streamed(chat_agent, "Which channel is best?")
        async for _ in streamed.stream_events():
            pass
        print()
        sdk_row("chat stream, SDK usage", streamed.context_wrapper.usage)
        span_row("chat stream, our run span", last_run_span(exporter))
        print(
            "\nThe SDK sees no usage on a streamed Chat Completions run against a non-OpenAI base URL;"
            "\nthe run span has it because stream_usage='always' asked for it on the wire."
        )

    otel_llm_usage.uninstrument()


if __name__ == "__main__":
    asyncio.run(main())
