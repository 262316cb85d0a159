"""What a second `instrument()` changes: the options that differ, and how the change is logged.

The log line names each changed option and its new value, summarised so that it carries no
secret and stays one line: prices and budgets by what they cover, callables by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .config import Options

# Options the wrappers read when they are built: a change re-patches the client libraries.
PATCHING = frozenset(
    {"providers", "frameworks", "stream_usage", "endpoints", "anthropic_native_spans", "capture_content"}
)
# Fields of `Options` that follow from others or record where a value came from.
_NOT_OPTIONS = frozenset({"from_env", "content_on_spans", "content_events"})
_MAX_TEXT = 200


def changed_options(old: Options, new: Options) -> list[str]:
    """The names of the options whose values differ, in the order `Options` declares them."""
    return [
        f.name
        for f in fields(Options)
        if f.name not in _NOT_OPTIONS and getattr(old, f.name) != getattr(new, f.name)
    ]


def describe(name: str, value: Any) -> str:
    if value is None:
        return "default"
    if name == "prices" and isinstance(value, Mapping):
        text = f"{len(value)} override(s): " + ", ".join(map(str, value))
    elif name == "budgets":
        text = "[" + ", ".join(_budget(b) for b in value) + "]"
    elif callable(value):
        text = getattr(value, "__qualname__", None) or type(value).__qualname__
    elif name == "endpoints" and isinstance(value, Mapping):
        text = ", ".join(f"{host}={provider}" for host, provider in value.items()) or "none"
    else:
        text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"


def _budget(budget: Any) -> str:
    agent = getattr(budget, "agent", None)
    who = f" agent={agent}" if agent else ""
    return f"{budget.scope}{who} ${budget.max_cost_usd:g} {budget.action}"
