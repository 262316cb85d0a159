"""The one registry of providers and the one of frameworks, and the names users may give them.

One name per integration: the registry key is the module's name and the pip extra
(`pip install "otel-llm-usage[google-genai]"`: extras compare with `-` and `_` alike).
`gen_ai.provider.name` values are another matter: they follow the semantic conventions
(`mistral_ai`, `gcp.gemini`, ...) and are set by each module.

Each module names the client library it patches (`LIBRARY`) and builds its wrappers:
`build_wrappers(recorder, options) -> {(module, "Class.method"): wrapper}`. Nothing here imports
one: the instrumentor imports a module only when its library is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from . import _fork

log = logging.getLogger("otel_llm_usage")

# name -> module. Client libraries whose calls become LLM spans.
PROVIDERS: dict[str, str] = {
    "openai": "otel_llm_usage.providers.openai",
    "anthropic": "otel_llm_usage.providers.anthropic",
    "bedrock": "otel_llm_usage.providers.bedrock",
    "litellm": "otel_llm_usage.providers.litellm",
    "google_genai": "otel_llm_usage.providers.google_genai",
    "groq": "otel_llm_usage.providers.groq",
    "cohere": "otel_llm_usage.providers.cohere",
    "mistral": "otel_llm_usage.providers.mistral",
}

# name -> module. Agent frameworks: run and session spans around the calls the providers record.
FRAMEWORKS: dict[str, str] = {
    "openai_agents": "otel_llm_usage.frameworks.openai_agents",
    "agno": "otel_llm_usage.frameworks.agno",
    "openhands": "otel_llm_usage.frameworks.openhands",
}

# Spellings of earlier releases -> the name. They keep working, with one warning each.
ALIASES: dict[str, str] = {
    "mistralai": "mistral",
    "google": "google_genai",
    "google-genai": "google_genai",
    "openai-agents": "openai_agents",
}

_warned: set[str] = set()
_warned_lock = _fork.lock()


def _warn_once(key: str, message: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(message, *args)


def canonical(name: str, source: str) -> str:
    """The registered name for `name` (an alias is warned about once); unknown names come back as is."""
    target = ALIASES.get(name)
    if target is None:
        return name
    _warn_once(
        f"alias:{name}", "otel-llm-usage: %s names %r, a deprecated spelling of %r", source, name, target
    )
    return target


def split(
    names: Iterable[str], source: str, providers_expected: bool
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(providers, frameworks, unknown) among `names`, aliases resolved, in order, without duplicates.

    A framework given where providers are expected (as earlier releases allowed) is warned about.
    """
    providers: list[str] = []
    frameworks: list[str] = []
    unknown: list[str] = []
    for raw in names:
        name = canonical(raw, source)
        if name in PROVIDERS:
            bucket = providers
        elif name in FRAMEWORKS:
            bucket = frameworks
            if providers_expected:
                _warn_once(
                    f"framework:{name}",
                    "otel-llm-usage: %s names the framework %r, which is deprecated there: "
                    "use frameworks=[...] (OTEL_LLM_USAGE_FRAMEWORKS)",
                    source,
                    name,
                )
        else:
            bucket = unknown
        if name not in bucket:
            bucket.append(name)
    return tuple(providers), tuple(frameworks), tuple(unknown)


def choose(
    providers: Iterable[str] | None,
    frameworks: Iterable[str] | None,
    providers_source: str = "providers",
    frameworks_source: str = "frameworks",
) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The providers and frameworks to patch (None: every one of that kind), from the two options.

    `providers` given alone keeps its meaning of earlier releases, when it listed frameworks too:
    the frameworks patched are those it names (with a warning each), none if it names none.
    Raises ValueError naming the source for a name neither registry knows.
    """
    chosen_providers: tuple[str, ...] | None = None
    chosen_frameworks: tuple[str, ...] | None = None
    if providers is not None:
        chosen_providers, from_providers, unknown = split(providers, providers_source, True)
        if unknown:
            raise ValueError(
                f"{providers_source}: unknown provider(s) {list(unknown)}; known: {', '.join(PROVIDERS)}"
                f" (frameworks: {', '.join(FRAMEWORKS)})"
            )
        chosen_frameworks = from_providers
    if frameworks is not None:
        not_frameworks, chosen_frameworks, unknown = split(frameworks, frameworks_source, False)
        if unknown or not_frameworks:
            raise ValueError(
                f"{frameworks_source}: unknown framework(s) {[*not_frameworks, *unknown]}; "
                f"known: {', '.join(FRAMEWORKS)}"
            )
    return chosen_providers, chosen_frameworks


def selected(providers: tuple[str, ...] | None, frameworks: tuple[str, ...] | None) -> dict[str, str]:
    """name -> module of everything to patch: all of a kind when its option is None."""
    out = {name: PROVIDERS[name] for name in (tuple(PROVIDERS) if providers is None else providers)}
    out.update({name: FRAMEWORKS[name] for name in (tuple(FRAMEWORKS) if frameworks is None else frameworks)})
    return out
