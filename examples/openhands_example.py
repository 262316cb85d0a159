"""An OpenHands SDK conversation with exact usage and cost, next to OpenHands' own numbers.

Runs against the embedded OpenAI emulator (no API key needed). The agent's LLM (`usage_id`
"agent", gpt-4o through litellm's chat completions) answers three messages, one `run()` each, then
a summarizing condenser's LLM (`usage_id` "condenser", gpt-5 through litellm's Responses API)
condenses the history. OpenHands' `conversation_stats` and this package's session and per-agent
totals are printed side by side. No change to the agent code: `instrument()` is all.

Needs Python 3.12+ and `openhands-sdk`:

    python -m examples.openhands_example
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

# OpenHands starts Laminar tracing of its own when an OTLP endpoint is configured; this example
# exports nowhere, so none is.
os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
os.environ.pop("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None)
os.environ.setdefault("OPENHANDS_SUPPRESS_BANNER", "1")
os.environ.setdefault("LOG_LEVEL", "WARNING")  # OpenHands' own logging
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of litellm's prices

from openhands.sdk import LLM, Agent, Conversation
from openhands.sdk.context.condenser import LLMSummarizingCondenser
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import semconv as sc

ROW = "{:<34} {:>8} {:>8} {:>10} {:>10}"


def header() -> None:
    print(ROW.format("", "input", "output", "cache read", "cost USD"))


def openhands_row(label: str, metrics: Any) -> None:
    t = metrics.accumulated_token_usage
    print(
        ROW.format(
            label,
            t.prompt_tokens,
            t.completion_tokens,
            t.cache_read_tokens,
            f"{metrics.accumulated_cost:.6f}",
        )
    )


def ours_row(label: str, u: Any) -> None:
    print(ROW.format(label, u.input_tokens, u.output_tokens, u.cache_read_tokens, f"{u.cost_usd:.6f}"))


def llm(emu: OpenAIEmulator, model: str, usage_id: str) -> LLM:
    return LLM(
        model=model, base_url=emu.base_url, api_key=SecretStr("emulator"), usage_id=usage_id, num_retries=0
    )


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    otel_llm_usage.instrument(tracer_provider=provider)

    with OpenAIEmulator() as emu, tempfile.TemporaryDirectory() as workspace:
        for i in range(3):
            emu.push(
                Reply(
                    text=f"Answer {i}.",
                    prompt_tokens=1200 + 300 * i,
                    cached_tokens=1024,
                    completion_tokens=80,
                )
            )
        emu.push(Reply(text="Summary of the conversation.", prompt_tokens=2000, completion_tokens=150))

        condenser = LLMSummarizingCondenser(
            llm=llm(emu, "openai/gpt-5", "condenser"), max_size=20, keep_first=1
        )
        agent = Agent(llm=llm(emu, "openai/gpt-4o", "agent"), tools=[], condenser=condenser)
        conversation = Conversation(
            agent=agent, workspace=workspace, persistence_dir=workspace, visualizer=None
        )
        for question in ("What is 2 + 2?", "And times 3?", "Thanks!"):
            conversation.send_message(question)
            conversation.run()
        conversation.condense()

        session_id = str(conversation.id)
        stats = conversation.conversation_stats
        ours = otel_llm_usage.session_usage(session_id)
        assert ours is not None
        by_agent = {row.name: row for row in otel_llm_usage.usage_summary().by_agent}

        print(f"conversation {session_id}\n")
        header()
        openhands_row("OpenHands: combined", stats.get_combined_metrics())
        ours_row("ours: session", ours)
        for usage_id, metrics in stats.usage_to_metrics.items():
            openhands_row(f"OpenHands: usage_id {usage_id!r}", metrics)
            ours_row(f"ours: agent {usage_id!r}", by_agent[usage_id])

    print("\nspans:")
    spans = sorted(exporter.get_finished_spans(), key=lambda s: s.start_time or 0)
    runs = [s for s in spans if (s.attributes or {}).get(sc.OPERATION_NAME) == sc.OP_INVOKE_AGENT]
    for run in runs:
        a = dict(run.attributes or {})
        print(f"  {run.name}  cost {a[sc.RUN_COST_USD]:.6f}  session {a[sc.SESSION_ID]}")
        for call in spans:
            if call.parent is not None and call.parent.span_id == run.context.span_id:
                print(f"    {call.name}  agent {(call.attributes or {}).get(sc.AGENT_NAME)!r}")
    for call in spans:
        if call.parent is None and call not in runs:
            a = dict(call.attributes or {})
            print(f"  {call.name}  agent {a.get(sc.AGENT_NAME)!r}  session {a.get(sc.SESSION_ID)} (no run)")
    otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
