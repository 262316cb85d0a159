"""Parsers for option values, shared by keyword arguments and environment variables.

Each parser takes the raw value (a string from the environment, or whatever the caller passed) and
returns the option's value, or raises `ValueError` whose message lists the valid values. The caller
decides what a failure means: from code a `ValueError` naming the argument, from the environment
one warning naming the variable and then the default.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import _fork

log = logging.getLogger("otel_llm_usage")

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

_warned: set[tuple[str, str]] = set()
_warned_lock = _fork.lock()


def warn_once(source: str, value: str, message: str) -> None:
    """Log one warning per (source, value): a process that instruments twice is not told twice."""
    with _warned_lock:
        if (source, value) in _warned:
            return
        _warned.add((source, value))
    log.warning("otel-llm-usage: %s", message)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError("expected a boolean: true/false, 1/0, yes/no or on/off")


def parse_int(value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer >= {minimum}") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer >= {minimum}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ValueError(f"expected an integer {bound}")
    return value


def parse_positive_float(value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("expected a number of seconds > 0 (e.g. 0.5 or 1800)") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number of seconds > 0 (e.g. 0.5 or 1800)")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("expected a number of seconds > 0 (e.g. 0.5 or 1800)")
    return float(value)


def parse_choice(choices: Sequence[str]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        word = value.strip().lower() if isinstance(value, str) else value
        if word not in choices:
            raise ValueError("expected one of " + ", ".join(repr(c) for c in choices))
        return str(word)

    return parse


def parse_names(value: Any) -> tuple[str, ...]:
    """A comma-separated string or a sequence of strings."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("expected a list of names (comma-separated in the environment)")


def parse_endpoints(value: Any) -> dict[str, str]:
    """host=provider pairs: a mapping, or `host=provider,host=provider` in the environment."""
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            host, sep, provider = item.partition("=")
            if not sep or not host.strip() or not provider.strip():
                raise ValueError("expected host=provider pairs separated by commas")
            pairs[host.strip()] = provider.strip()
        return pairs
    if isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        return dict(value)
    raise ValueError("expected a mapping of host -> provider name")


def load_json(value: str) -> Any:
    """Inline JSON, or `@/path/file.json` for a file's contents."""
    text = value.strip()
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def import_object(value: Any) -> Any:
    """`package.module:attribute` -> that object; a callable passes through."""
    if callable(value):
        return value
    if not isinstance(value, str) or ":" not in value:
        raise ValueError("expected a callable, or 'package.module:function' in the environment")
    module_name, _, attr = value.strip().partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import it ({exc})") from None
    if not callable(target):
        raise ValueError("it names something that is not callable")
    return target


def env(name: str) -> str | None:
    """The variable's value; unset and blank are the same (a blank value means the default)."""
    value = os.environ.get(name)
    return value if value is not None and value.strip() else None
