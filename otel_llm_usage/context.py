"""What the current call belongs to: the session, the run (agent) and extra attributes.

Plain contextvars, so the values follow asyncio tasks and `contextvars.copy_context()` into
threads, and leaving a `with` block restores the previous state. A session id that arrived in
W3C baggage (an upstream service's `session()`) is used when no local `session()` is active.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import baggage

from .semconv import SESSION_ID

if TYPE_CHECKING:
    from .rollup import Run


@dataclass(frozen=True, slots=True)
class Scope:
    """The session and run of the calls started now; immutable so a snapshot is free."""

    session_id: str | None = None
    user_id: str | None = None
    agent: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    run: Run | None = None


EMPTY_SCOPE = Scope()


class ScopeVar:
    """The current `Scope`. `get` falls back to the baggage's `session.id` when no session is set.

    Reading the baggage costs a context lookup, done only when the local scope has no session.
    """

    __slots__ = ("_var",)

    def __init__(self, name: str) -> None:
        self._var: ContextVar[Scope] = ContextVar(name, default=EMPTY_SCOPE)

    def get(self) -> Scope:
        scope = self._var.get()
        if scope.session_id is None:
            sid = baggage.get_baggage(SESSION_ID)
            if isinstance(sid, str) and sid:
                return Scope(sid, scope.user_id, scope.agent, scope.attributes, scope.run)
        return scope

    def get_local(self) -> Scope:
        """The scope set in this process only, without the baggage fallback."""
        return self._var.get()

    def set(self, scope: Scope) -> Token[Scope]:
        return self._var.set(scope)

    def reset(self, token: Token[Scope]) -> None:
        self._var.reset(token)


current_scope = ScopeVar("otel_llm_usage_scope")

# Set while an instrumented call is in progress: a client called by another instrumented client
# (litellm -> openai) records nothing, so each call is counted once, by the outermost library.
in_llm_call: ContextVar[bool] = ContextVar("otel_llm_usage_in_call", default=False)
