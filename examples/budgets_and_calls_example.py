"""Per-call entries of a run and a session, budget gauges, and the tightest budget stopping a run.

Runs against the embedded OpenAI emulator; no API key needed.

python -m examples.budgets_and_calls_example
"""

from __future__ import annotations

import openai
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import Budget, BudgetExceeded


def print_gauges(reader: InMemoryMetricReader) -> None:
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name.startswith("llm_usage.budget."):
                    for p in m.data.data_points:
                        labels = ", ".join(f"{k}={v}" for k, v in sorted((p.attributes or {}).items()))
                        print(f"  {m.name:<22} {p.value:.4f} USD  {{{labels}}}")


def main() -> None:
    reader = InMemoryMetricReader()
    otel_llm_usage.instrument(
        tracer_provider=TracerProvider(),
        meter_provider=MeterProvider(metric_readers=[reader]),
        budgets=[
            Budget(max_cost_usd=0.005, scope="run", action="raise"),  # every run
            Budget(max_cost_usd=1.0, scope="process"),  # warns only
        ],
    )
    with OpenAIEmulator() as emu:
        client = openai.OpenAI(base_url=emu.base_url, api_key="demo", max_retries=0)
        try:
            # The planner run has a tighter budget of its own, $0.001. One call of $0.006 crosses
            # both limits; the next call is refused naming the tighter one.
            tight = [Budget(max_cost_usd=0.001, action="raise")]
            with otel_llm_usage.session("conv-7"), otel_llm_usage.run("planner", budgets=tight) as r:
                for _ in range(3):
                    emu.push(Reply(prompt_tokens=2000, completion_tokens=100))  # $0.006 each
                    try:
                        client.chat.completions.create(
                            model="gpt-4o", messages=[{"role": "user", "content": "plan"}]
                        )
                    except BudgetExceeded as exc:
                        print(f"refused before sending: {exc} (limit ${exc.limit_usd})")
                        break
                print("budget gauges while the run is open:")
                print_gauges(reader)
            print(f"run {r.name}: {len(r.calls)} call(s), {r.calls.dropped} dropped")
            for call in r.calls:
                u = call.usage
                print(
                    f"  {call.provider} {call.model} in={u.input if u else '?'} out={u.output if u else '?'} "
                    f"cost=${call.cost_usd or 0:.4f} {call.duration_s * 1000:.1f} ms "
                    f"response={call.response_id} span={call.span_id}"
                )
            log = otel_llm_usage.session_calls("conv-7")
            print(f"session conv-7: {len(log or ())} call(s)")
            with otel_llm_usage.run("tracker"):
                try:
                    for _ in range(3):  # a tracker that records after each call is stopped too
                        otel_llm_usage.record_call(
                            model="gpt-4o", provider="openai", input_tokens=1000, output_tokens=100
                        )
                except BudgetExceeded as exc:
                    print(f"record_call() recorded the call, then: {exc}")
        finally:
            otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
