"""Every attribute name, metric name, unit and bucket list the package emits.

Dashboards, alert rules and the Collector configuration depend on these strings: change them here
and nowhere else. Names the OpenTelemetry semantic conventions define come from
``opentelemetry-semantic-conventions`` (0.63b0 or later: the first with every GenAI name below), under
the short names the rest of the package uses; the GenAI names follow the conventions v1.41.0
(``SCHEMA_URL``). Only this package's own ``llm_usage.*`` names, and the few the conventions do
not define yet, are spelled out here.
"""

from __future__ import annotations

from typing import Final

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv._incubating.attributes import session_attributes as _session
from opentelemetry.semconv._incubating.attributes import user_attributes as _user
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as _gen_ai_metrics
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import server_attributes as _server
from opentelemetry.semconv.schemas import Schemas

# The semantic conventions release the names and their meanings follow, on the tracer and meter.
SCHEMA_URL: Final = Schemas.V1_41_0.value

# --- span attributes: OpenTelemetry semantic conventions ---------------------------------------
OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
PROVIDER_NAME: Final = _gen_ai.GEN_AI_PROVIDER_NAME
REQUEST_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
REQUEST_STREAM: Final = _gen_ai.GEN_AI_REQUEST_STREAM
REQUEST_MAX_TOKENS: Final = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
REQUEST_TEMPERATURE: Final = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
RESPONSE_MODEL: Final = _gen_ai.GEN_AI_RESPONSE_MODEL
RESPONSE_ID: Final = _gen_ai.GEN_AI_RESPONSE_ID
RESPONSE_FINISH_REASONS: Final = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
RESPONSE_TIME_TO_FIRST_CHUNK: Final = _gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
USAGE_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
USAGE_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
USAGE_CACHE_READ_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
USAGE_REASONING_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS
CONVERSATION_ID: Final = _gen_ai.GEN_AI_CONVERSATION_ID
AGENT_NAME: Final = _gen_ai.GEN_AI_AGENT_NAME
AGENT_ID: Final = _gen_ai.GEN_AI_AGENT_ID
INPUT_MESSAGES: Final = _gen_ai.GEN_AI_INPUT_MESSAGES
OUTPUT_MESSAGES: Final = _gen_ai.GEN_AI_OUTPUT_MESSAGES
TOKEN_TYPE: Final = _gen_ai.GEN_AI_TOKEN_TYPE
SERVER_ADDRESS: Final = _server.SERVER_ADDRESS
SERVER_PORT: Final = _server.SERVER_PORT
ERROR_TYPE: Final = _error.ERROR_TYPE
SESSION_ID: Final = _session.SESSION_ID
USER_ID: Final = _user.USER_ID
# Not in the semantic conventions (checked up to 0.66b2, v1.44): the cost of one call in USD.
USAGE_COST: Final = "gen_ai.usage.cost"

# --- span attributes: this package ------------------------------------------------------------
COST_INPUT_USD: Final = "llm_usage.cost.input_usd"
COST_CACHE_READ_USD: Final = "llm_usage.cost.cache_read_usd"
COST_CACHE_WRITE_USD: Final = "llm_usage.cost.cache_write_usd"
COST_OUTPUT_USD: Final = "llm_usage.cost.output_usd"
COST_SOURCE: Final = "llm_usage.cost.source"
COST_PROVIDER_REPORTED_USD: Final = "llm_usage.cost.provider_reported_usd"
USAGE_SOURCE: Final = "llm_usage.usage.source"
USAGE_CACHE_CREATION_1H_INPUT_TOKENS: Final = "llm_usage.usage.cache_creation_1h.input_tokens"
USAGE_AUDIO_INPUT_TOKENS: Final = "llm_usage.usage.audio.input_tokens"
USAGE_AUDIO_OUTPUT_TOKENS: Final = "llm_usage.usage.audio.output_tokens"
STREAM_INCOMPLETE: Final = "llm_usage.stream.incomplete"
STREAM_CHUNKS: Final = "llm_usage.stream.chunks"
STREAM_USAGE_INJECTED: Final = "llm_usage.stream.usage_requested"
# The server refused `stream_options`: the request was sent again without it.
STREAM_USAGE_RETRIED: Final = "llm_usage.stream.usage_retried"
PRICE_MODEL: Final = "llm_usage.price.model"
CONTEXT_WINDOW: Final = "llm_usage.context.window"
CONTEXT_UTILIZATION: Final = "llm_usage.context.utilization"
# Marks spans this package recorded, so rollups never sum another instrumentation's spans.
LLM_CALL_MARK: Final = "llm_usage.call"

COST_SOURCE_PROVIDER: Final = "provider"
COST_SOURCE_PRICE_TABLE: Final = "price_table"
COST_SOURCE_OVERRIDE: Final = "override"
USAGE_SOURCE_PROVIDER: Final = "provider"
USAGE_SOURCE_MISSING: Final = "missing"

# --- run and session rollup attributes ---------------------------------------------------------
RUN_PREFIX: Final = "llm_usage.run."
RUN_REQUESTS: Final = "llm_usage.run.requests"
RUN_INPUT_TOKENS: Final = "llm_usage.run.input_tokens"
RUN_OUTPUT_TOKENS: Final = "llm_usage.run.output_tokens"
RUN_CACHE_READ_TOKENS: Final = "llm_usage.run.cache_read_tokens"
RUN_CACHE_WRITE_TOKENS: Final = "llm_usage.run.cache_write_tokens"
RUN_REASONING_TOKENS: Final = "llm_usage.run.reasoning_tokens"
RUN_COST_USD: Final = "llm_usage.run.cost_usd"
RUN_UNPRICED_REQUESTS: Final = "llm_usage.run.unpriced_requests"
RUN_ERRORS: Final = "llm_usage.run.errors"
RUN_USAGE_MISSING_REQUESTS: Final = "llm_usage.run.usage_missing_requests"
RUN_AUDIO_INPUT_TOKENS: Final = "llm_usage.run.audio_input_tokens"
RUN_AUDIO_OUTPUT_TOKENS: Final = "llm_usage.run.audio_output_tokens"
RUN_ID: Final = "llm_usage.run.id"
RUN_TIME_TO_FIRST_TOKEN: Final = "llm_usage.run.time_to_first_token"
RUN_LLM_DURATION: Final = "llm_usage.run.llm_duration"
RUN_MAX_CONTEXT_UTILIZATION: Final = "llm_usage.run.max_context_utilization"
SESSION_REQUESTS: Final = "llm_usage.session.requests"
SESSION_RUNS: Final = "llm_usage.session.runs"
SESSION_COST_USD: Final = "llm_usage.session.cost_usd"
SESSION_INPUT_TOKENS: Final = "llm_usage.session.input_tokens"
SESSION_OUTPUT_TOKENS: Final = "llm_usage.session.output_tokens"
SESSION_USAGE_MISSING_REQUESTS: Final = "llm_usage.session.usage_missing_requests"
SESSION_AUDIO_INPUT_TOKENS: Final = "llm_usage.session.audio_input_tokens"
SESSION_AUDIO_OUTPUT_TOKENS: Final = "llm_usage.session.audio_output_tokens"

# --- budgets ------------------------------------------------------------------------------------
BUDGET_EXCEEDED_EVENT: Final = "llm_usage.budget.exceeded"
BUDGET_SCOPE: Final = "llm_usage.budget.scope"
BUDGET_KEY: Final = "llm_usage.budget.key"
BUDGET_LIMIT_USD: Final = "llm_usage.budget.limit_usd"
BUDGET_SPENT_USD: Final = "llm_usage.budget.spent_usd"
BUDGET_ACTION: Final = "llm_usage.budget.action"
METRIC_BUDGET_SPENT: Final = "llm_usage.budget.spent"
METRIC_BUDGET_LIMIT: Final = "llm_usage.budget.limit"
BUDGET_TENANT_ID: Final = "tenant.id"  # the label of a budget that names a tenant

# --- operation and provider values ------------------------------------------------------------
OP_CHAT: Final = _gen_ai.GenAiOperationNameValues.CHAT.value
OP_TEXT_COMPLETION: Final = _gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value
OP_EMBEDDINGS: Final = _gen_ai.GenAiOperationNameValues.EMBEDDINGS.value
OP_GENERATE_CONTENT: Final = _gen_ai.GenAiOperationNameValues.GENERATE_CONTENT.value
OP_INVOKE_AGENT: Final = _gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value

PROVIDER_OPENAI: Final = _gen_ai.GenAiProviderNameValues.OPENAI.value
PROVIDER_AZURE_OPENAI: Final = _gen_ai.GenAiProviderNameValues.AZURE_AI_OPENAI.value

# --- metrics ----------------------------------------------------------------------------------
METRIC_TOKEN_USAGE: Final = _gen_ai_metrics.GEN_AI_CLIENT_TOKEN_USAGE
METRIC_OPERATION_DURATION: Final = _gen_ai_metrics.GEN_AI_CLIENT_OPERATION_DURATION
METRIC_TIME_TO_FIRST_CHUNK: Final = _gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_TO_FIRST_CHUNK
METRIC_TIME_PER_OUTPUT_CHUNK: Final = _gen_ai_metrics.GEN_AI_CLIENT_OPERATION_TIME_PER_OUTPUT_CHUNK
METRIC_TOKENS: Final = "llm_usage.tokens"
METRIC_COST: Final = "llm_usage.cost"
METRIC_UNPRICED: Final = "llm_usage.requests.unpriced"
METRIC_USAGE_MISSING: Final = "llm_usage.requests.usage_missing"
METRIC_RUN_COST: Final = "llm_usage.run.cost"
METRIC_RUN_TOKENS: Final = "llm_usage.run.tokens"
METRIC_RUN_REQUESTS: Final = "llm_usage.run.requests"
METRIC_RUN_DURATION: Final = "llm_usage.run.duration"
METRIC_SESSION_COST: Final = "llm_usage.session.cost"
METRIC_SESSION_TOKENS: Final = "llm_usage.session.tokens"
METRIC_SESSION_REQUESTS: Final = "llm_usage.session.requests"
METRIC_SESSION_RUNS: Final = "llm_usage.session.runs"
METRIC_LATE_SPANS: Final = "llm_usage.rollup.late_calls"
METRIC_CONTEXT_UTILIZATION: Final = "llm_usage.context.utilization"
METRIC_RUN_TIME_TO_FIRST_TOKEN: Final = "llm_usage.run.time_to_first_token"

LLM_TOKEN_TYPE: Final = "llm_usage.token.type"

UNIT_TOKEN: Final = "{token}"
UNIT_SECONDS: Final = "s"
UNIT_USD: Final = "USD"
UNIT_REQUEST: Final = "{request}"
UNIT_RUN: Final = "{run}"
UNIT_CALL: Final = "{call}"

# Bucket boundaries are explicit: the SDK's defaults (0, 5, 10, ...) say nothing about seconds or dollars.
TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
TIME_TO_FIRST_CHUNK_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
)  # fmt: skip
TIME_PER_CHUNK_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
COST_BUCKETS: Final = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 50.0, 100.0,
)  # fmt: skip
RUN_DURATION_BUCKETS: Final = (
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
UTILIZATION_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
COUNT_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
