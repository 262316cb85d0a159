"""What the current call belongs to: the session, the run (agent) and extra attributes.

Plain contextvars, so the values follow asyncio tasks and `contextvars.copy_context()` into
threads, and leaving a `with` block restores the previous state.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Scope:
    """The session and run of the calls started now; immutable so a snapshot is free."""

    session_id: str | None = None
    user_id: str | None = None
    agent: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


EMPTY_SCOPE = Scope()
current_scope: ContextVar[Scope] = ContextVar("otel_llm_usage_scope", default=EMPTY_SCOPE)

# Set while an instrumented call is in progress: a client called by another instrumented client
# (litellm -> openai) records nothing, so each call is counted once, by the outermost library.
in_llm_call: ContextVar[bool] = ContextVar("otel_llm_usage_in_call", default=False)
