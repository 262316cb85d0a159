"""A multi-tenant server: totals and a hard budget per tenant, per-agent costs inside one
conversation, and the totals started again with reset_usage().

Runs the openai SDK against the embedded OpenAI emulator (no API key needed).

    python -m examples.tenants_example
"""

from __future__ import annotations

import openai
from opentelemetry.sdk.trace import TracerProvider

import otel_llm_usage
from emulators import OpenAIEmulator, Reply
from otel_llm_usage import Budget, BudgetExceeded

MSGS: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "Hi"}]


def handle(client: openai.OpenAI, emu: OpenAIEmulator, tenant: str, conversation: str) -> str:
    """One request of one tenant's user: a planner and a condenser agent, each one LLM call."""
    with otel_llm_usage.session(conversation, tenant_id=tenant):
        try:
            for agent, prompt in (("planner", 1000), ("condenser", 400)):
                with otel_llm_usage.run(agent):
                    emu.push(Reply(prompt_tokens=prompt, completion_tokens=100))
                    client.chat.completions.create(model="gpt-4o", messages=MSGS)
        except BudgetExceeded as exc:  # raised before the request is sent
            return f"refused: tenant {exc.key} spent ${exc.spent_usd:.4f} of ${exc.limit_usd:.4f}"
    return "answered"


def main() -> None:
    otel_llm_usage.instrument(
        tracer_provider=TracerProvider(),
        budgets=[Budget(max_cost_usd=0.006, scope="tenant", action="raise")],  # every tenant its own
    )
    try:
        with OpenAIEmulator() as emu:
            client = openai.OpenAI(base_url=emu.base_url, api_key="sk-emulated", max_retries=0)
            for tenant, conversation in (("acme", "acme-1"), ("acme", "acme-2"), ("globex", "globex-1")):
                print(f"{tenant} {conversation}: {handle(client, emu, tenant, conversation)}")

            summary = otel_llm_usage.usage_summary()
            for row in summary.by_tenant:
                print(f"tenant {row.name}: requests={row.requests} cost=${row.cost_usd:.6f}")
            u = otel_llm_usage.session_usage("acme-1")
            assert u is not None
            per_agent = {agent: round(row.cost_usd, 6) for agent, row in sorted(u.by_agent.items())}
            print(f"conversation acme-1 by agent: {per_agent}")

            otel_llm_usage.reset_usage()
            print(f"after reset_usage(): requests={otel_llm_usage.usage_summary().total.requests}")
    finally:
        otel_llm_usage.uninstrument()


if __name__ == "__main__":
    main()
