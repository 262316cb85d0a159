"""Which price table entry a (provider, model, host) is: the provider's table, the model's names.

A provider absent from `GENAI_PRICES_PROVIDER` has no table; a model name is looked up as given,
then by the last segment of its path where that segment is how the provider names the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# gen_ai.provider.name -> genai-prices provider id. A provider absent here has no price table:
# its calls are unpriced unless the user gives a price.
GENAI_PRICES_PROVIDER = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
}


# gen_ai.provider.name -> the hosts (and their subdomains) of the provider's own API. Only there is a
# routing prefix ("openai/gpt-oss-120b", "local/gpt-4o") stripped to find a price: on any other host
# (loopback, a private address, a gateway) the name is a self-hosted model's, and a cloud price
# would be wrong. Calls with no known host went to the client's default, the provider itself.
PROVIDER_HOSTS: dict[str, tuple[str, ...]] = {
    "openai": ("api.openai.com",),
    "azure.ai.openai": ("openai.azure.com", "cognitiveservices.azure.com", "services.ai.azure.com"),
    "anthropic": ("api.anthropic.com",),
    "gcp.gemini": ("generativelanguage.googleapis.com",),
    "gcp.vertex_ai": ("aiplatform.googleapis.com",),
    "gcp.gen_ai": ("generativelanguage.googleapis.com", "aiplatform.googleapis.com"),
    "aws.bedrock": ("amazonaws.com",),
    "mistral_ai": ("api.mistral.ai",),
    "cohere": ("api.cohere.com", "api.cohere.ai"),
    "groq": ("api.groq.com",),
    "deepseek": ("api.deepseek.com",),
    "x_ai": ("api.x.ai",),
    "openrouter": ("openrouter.ai",),
    "together": ("api.together.xyz", "api.together.ai"),
    "fireworks": ("api.fireworks.ai",),
    "perplexity": ("api.perplexity.ai",),
    "cerebras": ("api.cerebras.ai",),
}


def is_provider_host(provider: str, host: str | None) -> bool:
    """Whether a call to `host` went to `provider`'s own API (None: the client's default endpoint)."""
    if not host:
        return True
    h = host.lower().rstrip(".")
    return any(h == own or h.endswith("." + own) for own in PROVIDER_HOSTS.get(provider, ()))


def import_price_tables() -> None:
    """Import genai-prices now, in the thread that instruments, not at a call in any thread.

    A module being imported holds an import lock; a process forked at that moment leaves the lock
    held in the child for good, and the child's first unpriced-so-far model would wait on it.
    """
    import genai_prices.decompose
    import genai_prices.types
    import genai_prices.units  # noqa: F401
    from genai_prices.data_snapshot import get_snapshot

    get_snapshot()  # imports the table itself (genai_prices.data)


def find_model(provider_id: str, model: str, strip_routing: bool = True) -> tuple[Any, Any] | None:
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    for ref in model_refs(model, strip_routing):
        try:
            return snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError:
            continue
    return None


def model_refs(model: str, strip_routing: bool) -> Iterable[str]:
    """The model name, then its last path segment when that is how the provider names the model.

    An API resource path ("models/gemini-2.5-pro", "publishers/google/models/...", a Bedrock ARN)
    always names the model at its end. A routing prefix ("openai/gpt-4o") does only on the
    provider's own host (`strip_routing`).
    """
    yield model
    head, sep, tail = model.rpartition("/")
    if sep and tail and (strip_routing or head == "models" or head.startswith(_RESOURCE_PATHS)):
        yield tail


# Paths that are a cloud API's resource name of a model, never a user's routing prefix.
_RESOURCE_PATHS = ("publishers/", "projects/", "arn:")
