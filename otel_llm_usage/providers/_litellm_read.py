"""litellm's pure extraction: provider names, the stream-usage policy, usage, cost and results.

litellm answers every provider in OpenAI's shape, so this builds on `_openai_read`; what it adds is
litellm's own: the cost it computed (`_hidden_params["response_cost"]`, or `usage.cost` in a
stream), the model the provider answered with, and Anthropic's cache fields as litellm passes
them on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import semconv as sc
from ..recorder import CallResult
from ..usage import TokenUsage, as_count
from . import _openai_read as openai_read
from ._fields import as_cost, get, get_str

# litellm provider -> gen_ai.provider.name. Other providers keep litellm's name.
PROVIDER_NAMES = {
    "openai": sc.PROVIDER_OPENAI,
    "text-completion-openai": sc.PROVIDER_OPENAI,
    "azure": sc.PROVIDER_AZURE_OPENAI,
    "azure_text": sc.PROVIDER_AZURE_OPENAI,
    "azure_ai": "azure.ai.inference",
    "anthropic": "anthropic",
    "anthropic_text": "anthropic",
    "bedrock": "aws.bedrock",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "codestral": "mistral_ai",
    "text-completion-codestral": "mistral_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "openrouter": "openrouter",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "cerebras": "cerebras",
    "watsonx": "ibm.watsonx.ai",
    "watsonx_text": "ibm.watsonx.ai",
}
# Bedrock model names may carry litellm's route ("bedrock/converse/<model id>").
BEDROCK_ROUTES = ("converse/", "invoke/")

# Providers for which litellm reads `stream_options` itself and never sends it to the server.
STREAM_USAGE_HANDLED_BY_LITELLM = frozenset({"anthropic"})
OFFICIAL_OPENAI_HOSTS = frozenset({"api.openai.com"})


def provider_name(litellm_provider: str) -> str:
    return PROVIDER_NAMES.get(litellm_provider, litellm_provider)


def wants_stream_usage(mode: str, litellm_provider: str, host: str | None) -> bool:
    """Whether to ask for the final usage chunk of a stream whose caller did not.

    "known" asks only where that cannot be rejected: providers whose `stream_options` litellm
    consumes itself, and OpenAI and Azure OpenAI at their own hosts (an OpenAI-compatible server
    behind a custom `api_base` may refuse unknown parameters).
    """
    if mode == "always":
        return True
    if mode != "known":
        return False
    if litellm_provider in STREAM_USAGE_HANDLED_BY_LITELLM:
        return True
    if litellm_provider == "openai":
        return host is None or host in OFFICIAL_OPENAI_HOSTS
    if litellm_provider == "azure":
        return host is not None and (
            host.endswith(".openai.azure.com") or host.endswith(".cognitiveservices.azure.com")
        )
    return False


# --- pure extraction -------------------------------------------------------------------------


def usage_from(usage: Any) -> TokenUsage | None:
    """Normalise litellm's OpenAI-shaped `Usage` into the ledger.

    litellm reports every provider in OpenAI's shape: `prompt_tokens` includes cached input and,
    for Anthropic, also cache writes (litellm adds Anthropic's `cache_read_input_tokens` and
    `cache_creation_input_tokens` to `input_tokens`), so cache reads and writes are subsets of it:
    `prompt_tokens_details.cached_tokens` and `.cache_creation_tokens` (or `.cache_write_tokens`),
    with the raw Anthropic fields as a fallback. The 1-hour share of cache writes is in
    `prompt_tokens_details.cache_creation_token_details.ephemeral_1h_input_tokens`.
    """
    base = openai_read.usage_from(usage)
    if base is None:
        return None
    details = get(usage, "prompt_tokens_details") or get(usage, "input_tokens_details")
    cache_read = base.cache_read or as_count(get(usage, "cache_read_input_tokens"))
    cache_write = base.cache_write or as_count(get(usage, "cache_creation_input_tokens"))
    one_hour = as_count(get(get(details, "cache_creation_token_details"), "ephemeral_1h_input_tokens"))
    if cache_read == base.cache_read and cache_write == base.cache_write and not one_hour:
        return base
    return TokenUsage.normalised(
        input=base.input,
        output=base.output,
        cache_read=cache_read,
        cache_write=cache_write,
        cache_write_1h=one_hour,
        reasoning=base.reasoning,
        input_audio=base.input_audio,
        output_audio=base.output_audio,
    )


def hidden_cost(obj: Any) -> float | None:
    """The cost litellm computed for a finished response (`_hidden_params["response_cost"]`)."""
    hidden = getattr(obj, "_hidden_params", None)
    return as_cost(hidden.get("response_cost")) if isinstance(hidden, dict) else None


def _response_model(response: Any) -> str | None:
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        model = hidden.get("provider_response_model")
        if isinstance(model, str) and model:
            return model
    return get_str(response, "model")


def result_from(response: Any, capture_content: bool = False) -> CallResult:
    """Read a non-streamed litellm response: `ModelResponse`, `EmbeddingResponse` or responses API."""
    result = openai_read.result_from(response, capture_content)
    usage_obj = get(response, "usage")
    result.usage = usage_from(usage_obj)
    result.response_model = _response_model(response)
    cost = hidden_cost(response)
    result.provider_cost = cost if cost is not None else as_cost(get(usage_obj, "cost"))
    return result


class ChunkAccumulator(openai_read.ChunkAccumulator):
    """litellm chat chunks: usage (with litellm's cost) arrives in a last chunk without choices.

    litellm's chunks have no `usage` attribute until then, so every read is a `getattr`.
    """

    __slots__ = ()
    read_usage = staticmethod(usage_from)

    def add(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = getattr(chunk, "model", None)
            self.id = getattr(chunk, "id", None)
        choices = getattr(chunk, "choices", None)
        if choices:
            choice = choices[0]
            reason = getattr(choice, "finish_reason", None)
            if reason:
                if self.reasons is None:
                    self.reasons = []
                self.reasons.append(reason)
            if self.text is not None:
                piece = getattr(getattr(choice, "delta", None), "content", None)
                if piece:
                    self.text.append(piece)
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = usage
            self.complete = True
            cost = as_cost(get(usage, "cost"))
            self.cost = cost if cost is not None else hidden_cost(chunk)
            return self.hide_usage_chunk and _carries_nothing(choices)
        return False


# What a chat chunk can carry for the caller besides usage.
_DELTA_FIELDS = (
    "content",
    "role",
    "tool_calls",
    "function_call",
    "reasoning_content",
    "thinking_blocks",
    "audio",
)


def _carries_nothing(choices: Any) -> bool:
    """Whether a usage chunk is only that: no choices, or (litellm < 1.110) one empty choice."""
    for choice in choices or ():
        if getattr(choice, "finish_reason", None) is not None:
            return False
        delta = getattr(choice, "delta", None)
        if any(getattr(delta, name, None) for name in _DELTA_FIELDS):
            return False
    return True


class ResponsesAccumulator(openai_read.ResponsesAccumulator):
    """Responses API events: the final `response.completed` carries usage and litellm's cost."""

    __slots__ = ()

    def result(self) -> CallResult:
        if self.final is not None:
            return result_from(self.final, self.capture)
        return super().result()


# --- requests ----------------------------------------------------------------------------------


def nonempty(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def call_arg(call_args: tuple[Any, ...], call_kwargs: Mapping[str, Any], name: str, position: int) -> Any:
    if name in call_kwargs:
        return call_kwargs[name]
    return call_args[position] if len(call_args) > position else None


def server_of(api_base: str | None) -> tuple[str | None, int | None]:
    if not api_base:
        return None, None
    try:
        parts = urlsplit(api_base)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None)
    except ValueError:
        return None, None
    return host or None, port if host else None
