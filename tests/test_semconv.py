"""Names from opentelemetry-semantic-conventions keep their values; telemetry carries the schema URL.

Dashboards, alert rules and stored data depend on these strings. They come from the semantic
conventions package, so an upgrade of that package that renames one must fail here, not in production.
"""

from __future__ import annotations

from typing import Any

import openai
from openai.types.chat import ChatCompletionMessageParam

import otel_llm_usage
from emulators import Reply
from otel_llm_usage import semconv as sc
from otel_llm_usage.version import INSTRUMENTATION_NAME as SCOPE_NAME
from tests.conftest import Telemetry

PINNED = {
    "OPERATION_NAME": "gen_ai.operation.name",
    "PROVIDER_NAME": "gen_ai.provider.name",
    "REQUEST_MODEL": "gen_ai.request.model",
    "REQUEST_STREAM": "gen_ai.request.stream",
    "REQUEST_MAX_TOKENS": "gen_ai.request.max_tokens",
    "REQUEST_TEMPERATURE": "gen_ai.request.temperature",
    "RESPONSE_MODEL": "gen_ai.response.model",
    "RESPONSE_ID": "gen_ai.response.id",
    "RESPONSE_FINISH_REASONS": "gen_ai.response.finish_reasons",
    "RESPONSE_TIME_TO_FIRST_CHUNK": "gen_ai.response.time_to_first_chunk",
    "USAGE_INPUT_TOKENS": "gen_ai.usage.input_tokens",
    "USAGE_OUTPUT_TOKENS": "gen_ai.usage.output_tokens",
    "USAGE_CACHE_READ_INPUT_TOKENS": "gen_ai.usage.cache_read.input_tokens",
    "USAGE_CACHE_CREATION_INPUT_TOKENS": "gen_ai.usage.cache_creation.input_tokens",
    "USAGE_REASONING_OUTPUT_TOKENS": "gen_ai.usage.reasoning.output_tokens",
    "USAGE_COST": "gen_ai.usage.cost",
    "CONVERSATION_ID": "gen_ai.conversation.id",
    "AGENT_NAME": "gen_ai.agent.name",
    "AGENT_ID": "gen_ai.agent.id",
    "INPUT_MESSAGES": "gen_ai.input.messages",
    "OUTPUT_MESSAGES": "gen_ai.output.messages",
    "TOKEN_TYPE": "gen_ai.token.type",
    "SERVER_ADDRESS": "server.address",
    "SERVER_PORT": "server.port",
    "ERROR_TYPE": "error.type",
    "SESSION_ID": "session.id",
    "USER_ID": "user.id",
    "OP_CHAT": "chat",
    "OP_TEXT_COMPLETION": "text_completion",
    "OP_EMBEDDINGS": "embeddings",
    "OP_GENERATE_CONTENT": "generate_content",
    "OP_INVOKE_AGENT": "invoke_agent",
    "PROVIDER_OPENAI": "openai",
    "PROVIDER_AZURE_OPENAI": "azure.ai.openai",
    "METRIC_TOKEN_USAGE": "gen_ai.client.token.usage",
    "METRIC_OPERATION_DURATION": "gen_ai.client.operation.duration",
    "METRIC_TIME_TO_FIRST_CHUNK": "gen_ai.client.operation.time_to_first_chunk",
    "METRIC_TIME_PER_OUTPUT_CHUNK": "gen_ai.client.operation.time_per_output_chunk",
    "SCHEMA_URL": "https://opentelemetry.io/schemas/1.41.0",
}
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


def test_every_name_from_the_semantic_conventions_keeps_its_value() -> None:
    actual = {name: getattr(sc, name) for name in PINNED}
    assert actual == PINNED
    for name in PINNED:
        assert type(getattr(sc, name)) is str, name  # enum members would compare equal yet encode apart


def test_every_gen_ai_name_the_package_uses_is_pinned() -> None:
    # A name added to semconv.py without a pin here would escape the check above.
    gen_ai = {
        name for name, value in vars(sc).items() if isinstance(value, str) and value.startswith("gen_ai.")
    }
    assert gen_ai <= PINNED.keys(), sorted(gen_ai - PINNED.keys())


def test_spans_and_metrics_carry_the_schema_url_on_their_scope(
    telemetry: Telemetry, openai_emulator: Any
) -> None:
    client = openai.OpenAI(base_url=openai_emulator.base_url, api_key="sk-test", max_retries=0)
    openai_emulator.push(Reply(prompt_tokens=7, completion_tokens=3))
    with otel_llm_usage.run("planner"):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    ours = [
        s for s in telemetry.spans() if s.instrumentation_scope and s.instrumentation_scope.name == SCOPE_NAME
    ]
    assert {s.name for s in ours} >= {"chat gpt-4o", "invoke_agent planner"}, [s.name for s in ours]
    assert {s.instrumentation_scope.schema_url for s in ours if s.instrumentation_scope} == {sc.SCHEMA_URL}

    data = telemetry.reader.get_metrics_data()
    assert data is not None
    scopes = [sm for rm in data.resource_metrics for sm in rm.scope_metrics if sm.scope.name == SCOPE_NAME]
    assert {sm.scope.schema_url for sm in scopes} == {sc.SCHEMA_URL}
    metric_names = {m.name for sm in scopes for m in sm.metrics}
    assert {sc.METRIC_TOKEN_USAGE, sc.METRIC_RUN_COST} <= metric_names, metric_names
