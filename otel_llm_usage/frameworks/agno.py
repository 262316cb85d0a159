"""Agno: every `Agent.run` / `Agent.arun` (and `Team.run` / `Team.arun`) is a run.

The run span is `invoke_agent {agent or team name}` and carries Agno's run id
(`llm_usage.run.id`, the `run_id` of the `RunOutput`); its session is Agno's `session_id` and its
user Agno's `user_id`. Both ids are settled before Agno starts, exactly as Agno settles them: a
`run_id` is passed in when the caller gave none, and an agent without a session id gets one that
sticks to it, as Agno does on a first run. A team's member runs are runs of their own, nested in
the team's run and counted in both.

Streamed runs (`stream=True`, or the agent's `stream` default) return an iterator that does the
work while it is consumed; the run ends when it is exhausted, fails, is closed or is dropped.
`arun(background=True)` returns before the run is done and finishes it in a task of Agno's: such
a run gets no run span, but its calls still join the session.

Memory and learning updates run in background: with `arun()` in asyncio tasks, which inherit the
run's context, and with `run()` in Agno's own thread pool, which does not. For the latter, the
context of the run that starts them (`start_memory_future`, `start_learning_future`) is kept
beside the run's messages and the work in the pool (`make_memories`, `process_learnings`) runs
in it, so those model calls count in the run (Agno waits for them before the run ends) and its
session.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from .. import runs
from .._guard import report
from ..config import Options
from ..recorder import Recorder
from . import AsyncRunStream, DetachedRun, RunEntry, SyncRunStream, in_run, in_run_async, is_id

LIBRARY = "agno"
ERROR_OTHER = "_OTHER"  # the semantic conventions' error.type when no better name is known
OWNERS = (("agno.agent", "Agent"), ("agno.team", "Team"))
# Module (reached as an attribute of its package) -> (the functions that submit background work in
# the caller's thread, the functions that do it in Agno's thread pool).
BACKGROUND = {
    ("agno.agent", "_managers"): (
        ("start_memory_future", "start_learning_future"),
        ("make_memories", "process_learnings"),
    ),
    ("agno.team", "_managers"): (
        ("_start_memory_future", "_start_learning_future"),
        ("_make_memories", "_process_learnings"),
    ),
}


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    out: dict[tuple[str, str], Callable[..., Any]] = {}
    for module_name, cls_name in OWNERS:
        try:
            owner = getattr(importlib.import_module(module_name), cls_name)
        except Exception:
            continue  # an Agno without teams, or not Agno at all
        if callable(owner.__dict__.get("run")):
            out[(module_name, f"{cls_name}.run")] = _run
        if callable(owner.__dict__.get("arun")):
            out[(module_name, f"{cls_name}.arun")] = _arun
    for (package, module), (starts, works) in BACKGROUND.items():
        try:
            managers = importlib.import_module(f"{package}.{module}")
        except Exception:
            continue
        if not all(callable(managers.__dict__.get(name)) for name in (*starts, *works)):
            continue  # another Agno: its background work is left as it is
        out.update({(package, f"{module}.{name}"): _submitting for name in starts})
        out.update({(package, f"{module}.{name}"): _in_submitters_context for name in works})
    return out


# id(the run's messages of background work submitted now) -> (a weak reference to them, the
# context the work was submitted in). Agno's messages compare by value, so they key by identity;
# the entry goes with the messages, whether or not the work ever ran.
# No lock: single dict operations are atomic, and `_forget` runs from the garbage collector, which
# may interrupt a thread holding any lock taken here.
_submitted: dict[int, tuple[weakref.ref[Any], contextvars.Context]] = {}


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    entry = _submitted.get(key)
    if entry is not None and entry[0] is ref:
        _submitted.pop(key, None)


def _messages_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[1] if len(args) > 1 else kwargs.get("run_messages")


def _submitting(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        messages = _messages_of(args, kwargs)
        if messages is not None:
            key = id(messages)
            ref = weakref.ref(messages, lambda r: _forget(key, r))
            _submitted[key] = (ref, contextvars.copy_context())
    except Exception as exc:  # messages that cannot be weakly referenced: the work runs as before
        report("agno.background", exc)
    return wrapped(*args, **kwargs)


def _in_submitters_context(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = None
    try:
        messages = _messages_of(args, kwargs)
        if messages is not None:
            entry = _submitted.get(id(messages))
            if entry is not None and entry[0]() is messages:
                ctx = entry[1]
    except Exception as exc:
        report("agno.background", exc)
    if ctx is None:
        return wrapped(*args, **kwargs)
    # A copy for each piece of work: memory and learning may run at once in two threads.
    return ctx.copy().run(wrapped, *args, **kwargs)


class _Plan:
    __slots__ = ("kwargs", "name", "run_id", "session_id", "user_id")

    def __init__(
        self, name: str, run_id: str, session_id: str | None, user_id: str | None, kwargs: dict[str, Any]
    ) -> None:
        self.name = name
        self.run_id = run_id
        self.session_id = session_id
        self.user_id = user_id
        self.kwargs = kwargs

    def run_entry(self) -> RunEntry:
        run = runs.run(self.name, agent=self.name, session_id=self.session_id)
        if self.user_id is not None and self.session_id is not None:
            return RunEntry(runs.session(self.session_id, user_id=self.user_id), run, run_id=self.run_id)
        return RunEntry(run, run_id=self.run_id)

    def session_entry(self) -> RunEntry | None:
        if self.session_id is None:
            return None
        return RunEntry(runs.session(self.session_id, user_id=self.user_id))


def _plan(instance: Any, kwargs: dict[str, Any]) -> _Plan | None:
    try:
        run_id = kwargs.get("run_id")
        if not is_id(run_id):
            run_id = str(uuid.uuid4())  # what Agno would draw itself; passed in so the span has it
            kwargs = {**kwargs, "run_id": run_id}
        given = kwargs.get("session_id")
        session_id: str | None
        if given is None:
            session_id = getattr(instance, "session_id", None) or None
            if session_id is None:
                # Agno gives an agent without one a new session id that sticks to it; doing it
                # first tells the run its session before Agno starts.
                session_id = str(uuid.uuid4())
                instance.session_id = session_id
        else:
            session_id = given
        user_id = kwargs.get("user_id") or getattr(instance, "user_id", None)
        name = getattr(instance, "name", None) or getattr(instance, "id", None)
        return _Plan(
            name if is_id(name) else type(instance).__name__.lower(),
            str(run_id),
            session_id if is_id(session_id) else None,
            user_id if is_id(user_id) else None,
            kwargs,
        )
    except Exception as exc:
        report("agno.plan", exc)
        return None


def _outcome(entry: RunEntry, item: Any) -> None:
    """Agno reports a failed run in its output (status ERROR) or as a run-error event, not by raising."""
    event = getattr(item, "event", None)
    if isinstance(event, str) and event.endswith("RunError"):
        entry.mark_failed(
            str(getattr(item, "error_type", None) or ERROR_OTHER), getattr(item, "content", None)
        )
        return
    status = getattr(item, "status", None)
    if getattr(status, "value", status) == "ERROR":
        content = getattr(item, "content", None)
        entry.mark_failed(ERROR_OTHER, content if isinstance(content, str) else None)


def _streams(instance: Any, kwargs: dict[str, Any]) -> bool:
    """Whether `run` returns an iterator: the call's `stream`, else the agent's default (Agno's rule)."""
    stream = kwargs.get("stream")
    if stream is None:
        stream = getattr(instance, "stream", None)
    return bool(stream)


def _run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    plan = _plan(instance, kwargs)
    if plan is None:
        return wrapped(*args, **kwargs)
    kwargs = plan.kwargs
    entry = plan.run_entry()
    if not _streams(instance, kwargs):
        return in_run(entry, wrapped, *args, observe=_outcome, **kwargs)
    detached = DetachedRun.start(entry)
    if detached is None:
        return wrapped(*args, **kwargs)
    try:
        result = detached.call(wrapped, *args, **kwargs)
    except BaseException as exc:
        detached.end(exc)
        raise
    if hasattr(result, "__next__"):
        return SyncRunStream(result, detached, _outcome)
    detached.end(None)
    return result


def _arun(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    plan = _plan(instance, kwargs)
    if plan is None:
        return wrapped(*args, **kwargs)
    kwargs = plan.kwargs
    # `arun` only builds the coroutine or async iterator; the run happens when it is awaited or
    # iterated, so that is where the run is entered.
    result = wrapped(*args, **kwargs)
    try:
        if hasattr(result, "__anext__"):
            detached = DetachedRun.start(plan.run_entry())
            return AsyncRunStream(result, detached, _outcome) if detached is not None else result
        if inspect.isawaitable(result):
            entry = plan.session_entry() if kwargs.get("background") else plan.run_entry()
            return in_run_async(entry, result, _outcome) if entry is not None else result
    except Exception as exc:
        report("agno.arun", exc)
    return result
