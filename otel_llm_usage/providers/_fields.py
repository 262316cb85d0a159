"""Reading fields from SDK objects and plain JSON alike (pydantic models, dicts, extras)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from .. import semconv as sc

# (class, name) -> whether the class (or a base) defines `name` itself, e.g. as a property. Bounded
# in practice by the SDK classes and the few field names read; capped anyway.
_CLASS_ATTRS: dict[tuple[type, str], bool] = {}
_CLASS_ATTRS_MAX = 4096


def _class_defines(cls: type, name: str) -> bool:
    key = (cls, name)
    found = _CLASS_ATTRS.get(key)
    if found is None:
        found = any(name in vars(c) for c in cls.__mro__)
        if len(_CLASS_ATTRS) < _CLASS_ATTRS_MAX:
            _CLASS_ATTRS[key] = found
    return found


def get(obj: Any, name: str) -> Any:
    """`obj.name` or `obj["name"]`, falling back to a pydantic model's extra fields; None if absent.

    Fields are read from the instance dict: asking a pydantic model for a field it lacks raises
    (and formats) an AttributeError inside `getattr`, which costs more than the rest of this.
    """
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    fields = getattr(obj, "__dict__", None)
    if fields is None:
        value = getattr(obj, name, None)
    else:
        value = fields.get(name)
        if value is None and name not in fields and _class_defines(type(obj), name):
            value = getattr(obj, name, None)
    if value is not None:
        return value
    extra = getattr(obj, "__pydantic_extra__", None)
    return extra.get(name) if isinstance(extra, dict) else None


_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})


def fields(obj: Any) -> Mapping[str, Any]:
    """All of an object's fields as one mapping, for reading several of them cheaply.

    A dict is itself; a pydantic model gives its instance dict, merged with its extra fields when
    it has any; anything else a read-only view through `get`.
    """
    if obj is None:
        return _NO_FIELDS
    if isinstance(obj, dict):
        return obj
    own = getattr(obj, "__dict__", None)
    if own is None:
        return _Fields(obj)
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**extra, **own} if extra else own


class _Fields(Mapping[str, Any]):
    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, name: str) -> Any:
        value = get(self._obj, name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def get_str(obj: Any, name: str) -> str | None:
    value = get(obj, name)
    return value if isinstance(value, str) and value else None


def as_cost(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    cost = float(value)
    return cost if cost >= 0 and cost == cost and cost != float("inf") else None


def json_body(http_response: Any) -> dict[str, Any] | None:
    """The JSON object body of an HTTP response read in full already, else None: it never reads one."""
    if not getattr(http_response, "is_closed", False):
        return None
    try:
        data = json.loads(http_response.content)
    except (ValueError, TypeError, AttributeError, RuntimeError):
        return None
    return data if isinstance(data, dict) else None


def sampling_attributes(max_tokens: object, temperature: object) -> dict[str, Any] | None:
    """`gen_ai.request.max_tokens` and `.temperature` from a request's values, where well typed."""
    attrs: dict[str, Any] = {}
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[sc.REQUEST_MAX_TOKENS] = max_tokens
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        attrs[sc.REQUEST_TEMPERATURE] = float(temperature)
    return attrs or None


def jsonable(value: Any, by_alias: bool = False) -> Any:
    """A request argument as plain JSON values, for content capture: SDK models are dumped."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", by_alias=by_alias, exclude_none=True)
    if isinstance(value, list | tuple):
        return [jsonable(v, by_alias) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v, by_alias) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
