"""Reading fields from SDK objects and plain JSON alike (pydantic models, dicts, extras)."""

from __future__ import annotations

from typing import Any


def get(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None)
        if isinstance(extra, dict):
            return extra.get(name)
    return value


def get_str(obj: Any, name: str) -> str | None:
    value = get(obj, name)
    return value if isinstance(value, str) and value else None


def as_cost(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    cost = float(value)
    return cost if cost >= 0 and cost == cost and cost != float("inf") else None
