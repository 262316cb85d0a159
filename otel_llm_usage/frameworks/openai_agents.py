"""OpenAI Agents SDK (`openai-agents`): every `Runner.run`, `run_sync` and `run_streamed` is a run.

The hooks sit on `AgentRunner.run` and `AgentRunner.run_streamed`, which the `Runner` class methods
call through the default runner. `run_sync` drives `AgentRunner.run` on an event loop, so it is a
run through that path; it is not patched itself, which would nest a second run span in each.

The run span is `invoke_agent {starting agent's name}`. Agents reached by handoff run inside it,
and each model call names the agent that made it (`gen_ai.agent.name`): the hooks on the SDK's
per-turn functions (`get_new_response`, `run_single_turn_streamed` in `agents.run_internal.run_loop`)
make the turn's agent the calls' agent, so after a handoff to "billing" the calls are billing's,
in the run of "triage". An agent used as a tool is a `Runner.run` of its own inside a tool call,
so it is an inner run nested in the outer one and its calls count in both, as the SDK also counts
them in the outer run's usage. The session is the run's `session` (its `session_id`), else its
`conversation_id`, else `RunConfig.group_id`; a run with none of them joins the enclosing
`session()`, if any.

A streamed run's model calls happen in a background task that `run_streamed` starts and the
caller's `stream_events()` drains; the run span ends when that task ends (completed, failed or
cancelled) or, if it never does, when the result is garbage-collected.

The SDK's own tracing (its trace processors) is left alone. It emits no OpenTelemetry spans, and
model calls are recorded only by the openai client hook, so each call is one span whether that
tracing is on or off.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from .. import runs
from .._guard import report
from ..config import Options
from ..recorder import Recorder
from . import DetachedRun, RunEntry, as_agent, in_run_async, is_id

LIBRARY = "agents"
MODULE = "agents.run"
TARGETS = (
    (MODULE, "AgentRunner.run"),
    (MODULE, "AgentRunner.run_streamed"),
)
# One model turn of the agent active now (the starting one, or the one a handoff reached). Module
# functions, called by their global names inside `run_loop`, so patching the module's attribute
# reaches every turn. Internal to the SDK: a release without them keeps the run spans, and calls
# after a handoff then carry the starting agent's name.
TURN_MODULE = "agents.run_internal"
TURNS = (
    (TURN_MODULE, "run_loop.get_new_response"),
    (TURN_MODULE, "run_loop.run_single_turn_streamed"),
)


def _available() -> bool:
    """Whether the installed `agents` package is the OpenAI Agents SDK with the methods patched here."""
    try:
        runner = importlib.import_module(MODULE).AgentRunner
    except Exception:
        return False
    return all(callable(runner.__dict__.get(attr.rsplit(".", 1)[1])) for _, attr in TARGETS)


def _turns_available() -> list[tuple[str, str]]:
    try:
        loop = importlib.import_module(f"{TURN_MODULE}.run_loop")
    except Exception:
        return []
    return [t for t in TURNS if callable(loop.__dict__.get(t[1].rsplit(".", 1)[1]))]


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    if not _available():
        return {}
    wrappers: dict[tuple[str, str], Callable[..., Any]] = {TARGETS[0]: _run, TARGETS[1]: _run_streamed}
    turns = _turns_available()
    if TURNS[0] in turns:
        wrappers[TURNS[0]] = _new_response
    if TURNS[1] in turns:
        wrappers[TURNS[1]] = _streamed_turn
    return wrappers


def session_id_of(kwargs: Mapping[str, Any], input: Any = None) -> str | None:
    """The conversation a run belongs to: its session, its conversation id, or its trace group id."""
    session = kwargs.get("session")
    sid = getattr(session, "session_id", None) if session is not None else None
    if is_id(sid):
        return str(sid)
    conversation = kwargs.get("conversation_id")
    if conversation is None and not isinstance(input, str | list):
        conversation = getattr(input, "_conversation_id", None)  # a resumed RunState keeps its own
    if is_id(conversation):
        return str(conversation)
    config = kwargs.get("run_config")
    group = config.get("group_id") if isinstance(config, Mapping) else getattr(config, "group_id", None)
    return str(group) if is_id(group) else None


def agent_name(agent: Any) -> str:
    name = getattr(agent, "name", None)
    return name if is_id(name) else "agent"


def turn_agent(bindings: Any) -> str | None:
    """The name of the agent a turn runs: `AgentBindings.public_agent` (the agent as the user made
    it), or an agent given directly."""
    agent = getattr(bindings, "public_agent", bindings)
    name = getattr(agent, "name", None)
    return name if is_id(name) else None


def _bindings(args: tuple[Any, ...], kwargs: dict[str, Any], position: int) -> Any:
    return args[position] if len(args) > position else kwargs.get("bindings")


async def _new_response(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        name = turn_agent(_bindings(args, kwargs, 0))
    except Exception as exc:
        report("openai_agents.turn", exc)
        name = None
    return await as_agent(name, wrapped(*args, **kwargs))


async def _streamed_turn(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        name = turn_agent(_bindings(args, kwargs, 1))
    except Exception as exc:
        report("openai_agents.turn", exc)
        name = None
    return await as_agent(name, wrapped(*args, **kwargs))


def _entry(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RunEntry | None:
    try:
        agent = args[0] if args else kwargs.get("starting_agent")
        input = args[1] if len(args) > 1 else kwargs.get("input")
        name = agent_name(agent)
        return RunEntry(runs.run(name, agent=name, session_id=session_id_of(kwargs, input)))
    except Exception as exc:
        report("openai_agents.run", exc)
        return None


async def _run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    entry = _entry(args, kwargs)
    if entry is None:
        return await wrapped(*args, **kwargs)
    return await in_run_async(entry, wrapped(*args, **kwargs))


def _run_streamed(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    entry = _entry(args, kwargs)
    detached = DetachedRun.start(entry) if entry is not None else None
    if detached is None:
        return wrapped(*args, **kwargs)
    # Called in the run's context: the background task it starts copies that context, so the
    # run is current for every model call of the stream, and the caller's context is untouched.
    try:
        result = detached.call(wrapped, *args, **kwargs)
    except BaseException as exc:
        detached.end(exc)
        raise
    try:
        _end_with_stream(result, detached)
    except Exception as exc:
        report("openai_agents.run_streamed", exc)
        detached.end(None)
    return result


def _end_with_stream(result: Any, detached: DetachedRun) -> None:
    task = getattr(result, "run_loop_task", None)
    if not isinstance(task, asyncio.Future):
        detached.end(None)
        return
    # A task the loop dropped unfinished runs no callback: the result's collection ends the run.
    weakref.finalize(result, detached.end, None)
    task.add_done_callback(functools.partial(_stream_done, detached))


def _stream_done(detached: DetachedRun, task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        detached.end(asyncio.CancelledError())
    else:
        detached.end(task.exception())
