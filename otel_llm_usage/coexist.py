"""Other GenAI instrumentations of the same client libraries: who they are, how to tell they are
active, and the span of theirs a call of ours may enrich instead of opening its own.

Found three ways, so either order of instrumentation is seen: when this package patches a client
(the peer's `BaseInstrumentor` singleton says it is instrumented, or the client's methods carry a
wrapper from the peer's modules), and while a call starts (a peer's span is current: it wrapped
the client above us, e.g. `Completions.create` over our `SyncAPIClient.request`). The call-time
look costs nothing until a peer's module is imported (`watching`).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import wrapt
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from . import semconv as sc
from ._guard import report
from .version import INSTRUMENTATION_NAME

log = logging.getLogger("otel_llm_usage")

SPANS = "spans"  # both spans: ours is a CLIENT span of its own (the default)
ENRICH = "enrich"  # no span of ours: our usage and cost go on the peer's span
MODES = (SPANS, ENRICH)
ENV = "OTEL_LLM_USAGE_COEXIST"


class Peer(NamedTuple):
    name: str  # as the warning names it
    distribution: str  # what pip installs
    client: str  # the client library it instruments ("" for one that may be any)
    instrumentor: str  # "module:Class" of its BaseInstrumentor
    scopes: tuple[str, ...]  # module prefixes of its wrappers and its tracer's scope name


PEERS: tuple[Peer, ...] = (
    Peer(
        "the official OpenTelemetry OpenAI instrumentation",
        "opentelemetry-instrumentation-openai-v2",
        "openai",
        "opentelemetry.instrumentation.openai_v2:OpenAIInstrumentor",
        ("opentelemetry.instrumentation.openai_v2",),
    ),
    Peer(
        "OpenLLMetry's OpenAI instrumentation",
        "opentelemetry-instrumentation-openai",
        "openai",
        "opentelemetry.instrumentation.openai:OpenAIInstrumentor",
        ("opentelemetry.instrumentation.openai",),
    ),
    Peer(
        "OpenLLMetry's Anthropic instrumentation",
        "opentelemetry-instrumentation-anthropic",
        "anthropic",
        "opentelemetry.instrumentation.anthropic:AnthropicInstrumentor",
        ("opentelemetry.instrumentation.anthropic",),
    ),
    Peer(
        "OpenInference's OpenAI instrumentation",
        "openinference-instrumentation-openai",
        "openai",
        "openinference.instrumentation.openai:OpenAIInstrumentor",
        ("openinference.instrumentation.openai",),
    ),
    Peer(
        "OpenInference's Anthropic instrumentation",
        "openinference-instrumentation-anthropic",
        "anthropic",
        "openinference.instrumentation.anthropic:AnthropicInstrumentor",
        ("openinference.instrumentation.anthropic",),
    ),
    Peer(
        "OpenLIT's OpenAI instrumentation",
        "openlit",
        "openai",
        "openlit.instrumentation.openai:OpenAIInstrumentor",
        ("openlit.instrumentation.openai",),
    ),
    Peer(
        "OpenLIT's Anthropic instrumentation",
        "openlit",
        "anthropic",
        "openlit.instrumentation.anthropic:AnthropicInstrumentor",
        ("openlit.instrumentation.anthropic",),
    ),
    # The scope of spans made through opentelemetry-util-genai's handler when the instrumentation
    # does not name its own (openai-v2 under OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental).
    Peer(
        "an OpenTelemetry GenAI instrumentation (opentelemetry-util-genai)",
        "opentelemetry-util-genai",
        "",
        "",
        ("opentelemetry.util.genai",),
    ),
)

# The methods peers wrap, per client library: where a foreign wrapper shows a peer is active.
WATCHED: dict[str, tuple[tuple[str, str], ...]] = {
    "openai": (
        ("openai.resources.chat.completions", "Completions.create"),
        ("openai.resources.chat.completions", "AsyncCompletions.create"),
        ("openai.resources.embeddings", "Embeddings.create"),
        ("openai.resources.responses", "Responses.create"),
        ("openai", "OpenAI.request"),
        ("openai", "AsyncOpenAI.request"),
    ),
    "anthropic": (
        ("anthropic.resources.messages", "Messages.create"),
        ("anthropic.resources.messages", "AsyncMessages.create"),
        ("anthropic", "Anthropic.request"),
        ("anthropic", "AsyncAnthropic.request"),
    ),
}

_LLM_OPERATIONS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS, sc.OP_GENERATE_CONTENT})

# Set once a peer's module is imported: from then on each call looks at the current span.
watching = False
mode = SPANS  # of the active instrumentation, for warnings raised outside a call (span processor)
_hooked = False
_warned: set[tuple[str, str]] = set()
_seen_scopes: set[tuple[str, bool]] = set()  # (scope, inside) of peer spans met: warned about once
_by_scope: dict[str, Peer | None] = {}
_lock = threading.Lock()


def _in(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def peer_of_scope(scope: str) -> Peer | None:
    try:
        return _by_scope[scope]
    except KeyError:
        pass
    found = next((peer for peer in PEERS if _in(scope, peer.scopes)), None)
    if len(_by_scope) < 256:  # scope names are few; the bound only guards against a generated one
        _by_scope[scope] = found
    return found


def _instrumented(peer: Peer) -> bool:
    """Whether the peer's BaseInstrumentor singleton says it is instrumented (never imports it)."""
    module_name, _, class_name = peer.instrumentor.partition(":")
    cls = getattr(sys.modules.get(module_name), class_name, None)
    instance = getattr(cls, "_instance", None) if isinstance(cls, type) else None
    return instance is not None and getattr(instance, "_is_instrumented_by_opentelemetry", False) is True


def _wrappers(library: str) -> Iterator[str]:
    """The modules of the wrapt wrappers on the client's watched methods, outermost first."""
    for module_name, attr in WATCHED.get(library, ()):
        owner_name, method = attr.rsplit(".", 1)
        owner = getattr(sys.modules.get(module_name), owner_name, None)
        value = getattr(owner, "__dict__", {}).get(method)
        for _ in range(8):  # a chain of wrappers; bounded against a proxy that wraps itself
            wrapper = getattr(value, "_self_wrapper", None)
            if wrapper is None:
                break
            yield str(getattr(wrapper, "__module__", "") or "")
            value = getattr(value, "__wrapped__", None)


def active_peers(library: str) -> list[Peer]:
    """The peers instrumenting `library` now."""
    wrapped_by = set(_wrappers(library))
    return [
        peer
        for peer in PEERS
        if peer.client == library
        and (_instrumented(peer) or any(_in(module, peer.scopes) for module in wrapped_by))
    ]


def warn(peer: Peer, client: str, mode: str, *, inside: bool = False) -> None:
    """One line per (peer, client): the peer, what it means, the choices. `inside`: its span
    started inside a call of ours (it wraps the client beneath us), where enrich cannot apply."""
    with _lock:
        if (peer.name, client) in _warned or (not peer.client and any(c == client for _, c in _warned)):
            return
        _warned.add((peer.name, client))
    if mode == ENRICH and not inside:
        log.info(
            "otel-llm-usage: %s (%s) also instruments %s; coexist='enrich': its spans carry this "
            "package's usage and cost, and this package opens no span of its own for those calls",
            peer.name,
            peer.distribution,
            client,
        )
        return
    log.warning(
        "otel-llm-usage: %s (%s) also instruments %s, so each call gets two CLIENT spans (its and "
        "this package's; this package's metrics and totals still count each call once). %s",
        peer.name,
        peer.distribution,
        client,
        _INSIDE if inside else _CHOICES,
    )


_CHOICES = (
    f"Choices: coexist='enrich' ({ENV}=enrich) puts this package's usage and cost on its spans and "
    "opens none; or disable one of the two (OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=<entry point name> "
    "under opentelemetry-instrument); or keep both (coexist='spans', the default). See docs/coexistence.md"
)
_INSIDE = (
    "Its span starts inside this package's call (it wraps the client beneath this package's hook), "
    "so coexist='enrich' cannot put the numbers on it and both spans stay; disable one of the two "
    "to have one span. See docs/coexistence.md"
)


def check(library: str, mode: str) -> None:
    """Warn about the peers active for `library` now (when it is patched or instrument() runs)."""
    for peer in active_peers(library):
        warn(peer, library, mode)


def bypasses(owner: type, method: str, original: Any, ours: Any) -> list[tuple[str, str]]:
    """(subclass, wrapper module) of each wrapper on a subclass's own `method` that holds
    `original`, the method as it was before this package patched `owner`: calls through that
    subclass skip our hook. (OpenInference wraps `OpenAI.request`: done before `instrument()`, it
    captured the unpatched `SyncAPIClient.request`.)"""
    found: list[tuple[str, str]] = []
    todo: list[type] = list(owner.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        value = cls.__dict__.get(method)
        module = str(getattr(getattr(value, "_self_wrapper", None), "__module__", "") or "")
        for _ in range(8):  # down the chain of wrappers to what it finally calls
            if value is ours or value is None:
                break
            if value is original:
                found.append((cls.__qualname__, module))
                break
            value = getattr(value, "__wrapped__", None)
    return found


def warn_bypass(owner: type, method: str, original: Any, ours: Any) -> None:
    for cls, module in bypasses(owner, method, original, ours):
        with _lock:
            if (cls, method) in _warned:
                continue
            _warned.add((cls, method))
        log.warning(
            "otel-llm-usage: %s.%s was wrapped (by %s) before this package patched %s.%s, so calls "
            "of %s clients are not recorded. Call otel_llm_usage.instrument() before instrumenting "
            "with that package. See docs/coexistence.md",
            cls,
            method,
            module or "another package",
            owner.__qualname__,
            method,
            cls,
        )


def _peer_imported(_module: Any) -> None:
    global watching
    watching = True


def watch(coexist: str) -> None:
    """Look at each call's current span from the moment any peer's module is imported."""
    global watching, mode, _hooked
    mode = coexist
    for peer in PEERS:
        top = peer.scopes[0]
        if top in sys.modules:
            watching = True
        elif not _hooked:
            wrapt.register_post_import_hook(_peer_imported, top)
    _hooked = True


def _scope_name(span: Any) -> str:
    scope = getattr(span, "instrumentation_scope", None)
    return str(getattr(scope, "name", "") or "")


def foreign_llm_span(span: Any, attributes: Any) -> Peer | None:
    """The peer whose LLM span this is, or None (ours, or not an LLM call's span). A span of an
    unknown instrumentation counts when it is a CLIENT span of a GenAI operation."""
    scope = _scope_name(span)
    if scope == INSTRUMENTATION_NAME:
        return None
    peer = peer_of_scope(scope)
    if peer is not None:
        return peer
    if (
        getattr(span, "kind", None) is SpanKind.CLIENT
        and attributes.get(sc.OPERATION_NAME) in _LLM_OPERATIONS
    ):
        return Peer(f"another instrumentation ({scope or 'unnamed'})", scope or "?", "", "", (scope,))
    return None


def current_peer_span(provider: str, mode: str, start_attributes: dict[str, Any]) -> Any:
    """Called as a call starts while `watching`: warns about a peer's span that is current. When
    `mode` is enrich and no call of ours enriched it yet, returns it, with our start attributes
    added where it has none of its own (what it set stays); else None."""
    try:
        return _peer_span(provider, mode, start_attributes)
    except Exception as exc:  # the call goes on with a span of its own
        report("coexist.current_peer_span", exc)
        return None


def _peer_span(provider: str, mode: str, start_attributes: dict[str, Any]) -> Any:
    span = trace.get_current_span()
    if not span.is_recording():
        return None
    attributes = getattr(span, "attributes", None) or {}
    peer = foreign_llm_span(span, attributes)  # None for our own span (a nested call's parent)
    if peer is None:
        return None
    _first_sight(span, peer, provider, mode)
    if mode != ENRICH or attributes.get(sc.LLM_CALL_MARK) is True:
        return None  # one span carries one call's numbers: a second call under it gets its own
    span.set_attributes({k: v for k, v in start_attributes.items() if k not in attributes})
    return span


def _first_sight(span: Any, peer: Peer, provider: str, mode: str, inside: bool = False) -> None:
    """Warn about the peer whose span met a call of ours, the first time its scope does. A span of
    the shared GenAI util's scope names no instrumentation: the instrumentors active now are named
    instead."""
    seen = (_scope_name(span), inside)
    if seen in _seen_scopes:
        return
    _seen_scopes.add(seen)
    if not peer.client:
        named = [(p, library) for library in WATCHED for p in active_peers(library)]
        for known, library in named:
            warn(known, library, mode, inside=inside)
        if named:
            return
    warn(peer, peer.client or provider, mode, inside=inside)


def started_inside(span: Any, peer: Peer, provider: str) -> None:
    """A peer's LLM span started inside a call of ours (seen by the rollup's span processor)."""
    _first_sight(span, peer, provider, mode, inside=True)


def reset_warnings() -> None:
    """Forget which peers were warned about (tests)."""
    with _lock:
        _warned.clear()
        _seen_scopes.clear()
