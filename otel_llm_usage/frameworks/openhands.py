"""OpenHands SDK (`openhands-sdk`): every `Conversation.run()` / `arun()` is a run.

The hooks sit on `LocalConversation`, the class `Conversation(...)` returns for an agent run in
this process. The run span is `invoke_agent {agent name}`, the agent's `name` as OpenHands gives it
(its class name: `Agent`, `ACPAgent` or a subclass's own; `openhands` if there is none), and its
session is the conversation id, so the runs of one conversation add up to one session.
`ask_agent`, `generate_title` and `condense` call the model outside `run()`: they join the
conversation's session without a run span of their own. So does an `LLM` the user adds to
`conversation.llm_registry` and calls directly (`llm.completion(...)` outside any `session()`):
the conversation's registry is remembered when the conversation is made, and a call of an LLM in
it counts in that conversation's session, as OpenHands counts it in `get_combined_metrics()`.

Each model call carries the `usage_id` of the OpenHands `LLM` that made it as its agent name
(`gen_ai.agent.name`). OpenHands files its metrics under that key
(`conversation_stats.usage_to_metrics`), so `usage_summary().by_agent` shows the agent's LLM, a
condenser's and any other LLM of the conversation apart, as OpenHands does.

The model calls go through litellm and are recorded by the litellm provider's hooks; nothing here
records a call of its own. OpenHands keeps its own references to litellm's functions.
`completion` and `acompletion` are litellm's public functions, which pass through the dispatch
layer the litellm provider hooks, so they are recorded whatever the import order. `responses` and
`aresponses` come from `litellm.responses.main`: the Python implementations behind that layer,
which a call through OpenHands' reference never crosses. Those two references (globals of
`openhands.sdk.llm.llm`) are wrapped here with the litellm provider's hooks, so each such call is
one litellm span like any other. The wrapper is the outermost instrumented call, so nothing
underneath records the call again; it is not installed when the litellm provider is left out.

`RemoteConversation` (an agent server) calls the model in the server's process: instrument that
process.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import weakref
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from .. import runs
from .._guard import report
from ..config import Options
from ..context import current_attribution
from ..providers import litellm as litellm_provider
from ..recorder import Recorder
from . import RunEntry, in_run, in_run_async, is_id

# `openhands` is a namespace package (sdk, tools, agent_server), for which no post-import hook
# fires: the hook is on the SDK itself.
LIBRARY = "openhands.sdk"
DEFAULT_AGENT = "openhands"
CONVERSATION_MODULE = "openhands.sdk.conversation.impl.local_conversation"
CONVERSATION = "LocalConversation"
LLM_MODULE = "openhands.sdk.llm.llm"
LLM = "LLM"

INIT = "__init__"
RUNS = ("run", "arun")
# Conversation methods that call the model outside run(): they belong to the session only.
SESSION_ONLY = ("ask_agent", "generate_title", "condense")
LLM_CALLS = ("completion", "acompletion", "responses", "aresponses")
ASYNC_METHODS = frozenset({"arun", "acompletion", "aresponses"})
# OpenHands' references to litellm's Responses API functions, as globals of `LLM_MODULE`. The
# instrumentor patches `owner.attr` of a module: the owner here is that module, reached as an
# attribute of its package.
LLM_PACKAGE, LLM_SUBMODULE = LLM_MODULE.rsplit(".", 1)
# reference -> (litellm's public function of the same call, whether it is async)
LITELLM_REFERENCES = {"litellm_responses": ("responses", False), "litellm_aresponses": ("aresponses", True)}
# What the litellm provider's hooks read from litellm's dispatch object: the route.
_RESPONSES_DISPATCH = SimpleNamespace(route=SimpleNamespace(value=litellm_provider.RESPONSES))


def _owner(module_name: str, cls_name: str) -> Any:
    try:
        return getattr(importlib.import_module(module_name), cls_name)
    except Exception:
        return None


def build_wrappers(recorder: Recorder, options: Options) -> dict[tuple[str, str], Callable[..., Any]]:
    out: dict[tuple[str, str], Callable[..., Any]] = {}
    conversation = _owner(CONVERSATION_MODULE, CONVERSATION)
    if conversation is not None:
        if callable(conversation.__dict__.get(INIT)):
            out[(CONVERSATION_MODULE, f"{CONVERSATION}.{INIT}")] = _remember_registry
        for method in (*RUNS, *SESSION_ONLY):
            if not callable(conversation.__dict__.get(method)):
                continue  # an SDK version without it
            wrapper = (_arun if method in ASYNC_METHODS else _run) if method in RUNS else _in_session
            out[(CONVERSATION_MODULE, f"{CONVERSATION}.{method}")] = wrapper
    llm = _owner(LLM_MODULE, LLM)
    if llm is not None:
        for method in LLM_CALLS:
            if callable(llm.__dict__.get(method)):
                wrapper = _as_usage_async if method in ASYNC_METHODS else _as_usage
                out[(LLM_MODULE, f"{LLM}.{method}")] = wrapper
    if options.providers is None or "litellm" in options.providers:
        out.update(_litellm_reference_wrappers(recorder, options))
    return out


def _litellm_reference_wrappers(
    recorder: Recorder, options: Options
) -> dict[tuple[str, str], Callable[..., Any]]:
    """Wrappers for OpenHands' references to litellm functions that bypass litellm's dispatch layer."""
    try:
        module = importlib.import_module(LLM_MODULE)
        litellm: Any = importlib.import_module("litellm")
        if getattr(importlib.import_module(LLM_PACKAGE), LLM_SUBMODULE, None) is not module:
            return {}
    except Exception:
        return {}
    hooks = litellm_provider.LiteLLMHooks(recorder, options.stream_usage, options.endpoints)
    out: dict[tuple[str, str], Callable[..., Any]] = {}
    for name, (public, is_async) in LITELLM_REFERENCES.items():
        reference = module.__dict__.get(name)
        if not callable(reference) or reference is getattr(litellm, public, None):
            continue  # absent, or litellm's public function, which the litellm provider records
        out[(LLM_PACKAGE, f"{LLM_SUBMODULE}.{name}")] = _through_hooks(hooks, is_async)
    return out


def _through_hooks(hooks: litellm_provider.LiteLLMHooks, is_async: bool) -> Callable[..., Any]:
    """A wrapper giving a litellm function's call to the litellm provider's dispatch hooks."""

    def forward(wrapped: Any) -> Callable[[tuple[Any, ...], dict[str, Any]], Any]:
        return lambda call_args, call_kwargs: wrapped(*call_args, **call_kwargs)

    if is_async:

        def async_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            return hooks.async_call(forward(wrapped), _RESPONSES_DISPATCH, (args, kwargs), {})

        return async_call

    def sync_call(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return hooks.sync_call(forward(wrapped), _RESPONSES_DISPATCH, (args, kwargs), {})

    return sync_call


def session_id_of(conversation: Any) -> str | None:
    """The conversation id (a UUID) as a string, the session of every call the conversation makes."""
    try:
        cid = conversation.id
    except Exception:
        return None
    sid = str(cid) if cid is not None else None
    return sid if is_id(sid) else None


def agent_name(conversation: Any) -> str:
    name = getattr(getattr(conversation, "agent", None), "name", None)
    return name if is_id(name) else DEFAULT_AGENT


def _run_entry(conversation: Any) -> RunEntry | None:
    try:
        name = agent_name(conversation)
        return RunEntry(runs.run(name, agent=name, session_id=session_id_of(conversation)))
    except Exception as exc:
        report("openhands.run", exc)
        return None


def _run(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    entry = _run_entry(instance)
    if entry is None:
        return wrapped(*args, **kwargs)
    return in_run(entry, wrapped, *args, **kwargs)


async def _arun(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    entry = _run_entry(instance)
    if entry is None:
        return await wrapped(*args, **kwargs)
    return await in_run_async(entry, wrapped(*args, **kwargs))


def _in_session(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    sid = session_id_of(instance)
    if sid is None:
        return wrapped(*args, **kwargs)
    try:
        entry = RunEntry(runs.session(sid))
    except Exception as exc:
        report("openhands.session", exc)
        return wrapped(*args, **kwargs)
    return in_run(entry, wrapped, *args, **kwargs)


# The LLM registry of each live conversation -> its session id. Weak: a conversation dropped by the
# user takes its entry along.
_registries: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()


def _remember_registry(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = wrapped(*args, **kwargs)
    try:
        sid = session_id_of(instance)
        registry = getattr(instance, "llm_registry", None)
        if sid is not None and registry is not None:
            with _registries_lock:
                _registries[registry] = sid
    except Exception as exc:
        report("openhands.registry", exc)
    return result


def conversation_of(llm: Any, usage_id: str) -> str | None:
    """The session of the live conversation whose LLM registry holds `llm`, or None.

    Looked up only for calls outside any session: one dictionary read per live conversation.
    """
    with _registries_lock:
        registries = list(_registries.items())
    for registry, sid in registries:
        held = getattr(registry, "usage_to_llm", None)
        if held is not None and held.get(usage_id) is llm:
            return sid
    return None


def _enter_usage(llm: Any) -> Any:
    """Make the LLM's `usage_id` the agent of the calls started now (and, outside any session, its
    conversation's session); the token to undo it, or None."""
    try:
        usage_id = getattr(llm, "usage_id", None)
        if not is_id(usage_id):
            return None
        attribution = current_attribution.get()
        changes: dict[str, Any] = {}
        if attribution.agent != usage_id:
            changes["agent"] = usage_id
        if attribution.session_id is None:
            sid = conversation_of(llm, usage_id)
            if sid is not None:
                changes["session_id"] = sid
        if not changes:
            return None
        return current_attribution.set(dataclasses.replace(current_attribution.get_local(), **changes))
    except Exception as exc:
        report("openhands.usage_id", exc)
        return None


def _as_usage(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = _enter_usage(instance)
    try:
        return wrapped(*args, **kwargs)
    finally:
        if token is not None:
            current_attribution.reset(token)


async def _as_usage_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    token = _enter_usage(instance)
    try:
        return await wrapped(*args, **kwargs)
    finally:
        if token is not None:
            current_attribution.reset(token)
