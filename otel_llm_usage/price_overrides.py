"""Prices the user gives: in code (`instrument(prices=...)`, `set_prices()`) or in a JSON file.

From code, a bad price is a `ValueError` naming the model and the field; from the file
(`OTEL_LLM_USAGE_PRICES_FILE`), one warning and that entry is ignored. A negative, NaN or infinite
price is refused everywhere: it would drive the monotonic cost counter down or make it useless.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

PRICES_FILE_ENV = "OTEL_LLM_USAGE_PRICES_FILE"


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """A user's price for a model, in USD per million tokens.

    Cache reads and writes default to the input price, reasoning is billed as output.
    """

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None
    input_audio: float | None = None
    output_audio: float | None = None
    context_window: int | None = None

    def __post_init__(self) -> None:
        # A negative price drives the monotonic cost counter down; a NaN one turns every later
        # total of the model into NaN; an infinite one makes the counter unusable for good.
        for name in _PRICE_FIELDS:
            value = getattr(self, name)
            if value is None and name not in ("input", "output"):
                continue
            if not _is_price(value):
                raise ValueError(
                    f"{name} must be a finite number of USD per million tokens >= 0, not {value!r}"
                )
        window = self.context_window
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window <= 0):
            raise ValueError(f"context_window must be a positive integer, not {window!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelPrice:
        if not isinstance(data, Mapping):
            raise ValueError(f"expected a mapping of price fields, not {data!r}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown price field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        values: dict[str, Any] = {}
        for k, v in data.items():
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float | str | Decimal):
                raise ValueError(f"{k} must be a number, not {v!r}")
            try:
                values[k] = int(v) if k == "context_window" else float(v)
            except (ValueError, OverflowError):
                raise ValueError(f"{k} must be a number, not {v!r}") from None
        return cls(**values)


_PRICE_FIELDS = (
    "input",
    "output",
    "cache_read",
    "cache_write",
    "cache_write_1h",
    "input_audio",
    "output_audio",
)


def _is_price(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value >= 0
    except OverflowError:  # an int too large for a float
        return False


class Overrides(NamedTuple):
    exact: dict[str, ModelPrice]
    globs: tuple[tuple[str, ModelPrice], ...]

    @classmethod
    def of(cls, prices: Mapping[str, ModelPrice]) -> Overrides:
        exact = {k: v for k, v in prices.items() if not any(ch in k for ch in "*?[")}
        globs = tuple((k, v) for k, v in prices.items() if k not in exact)
        return cls(exact, globs)

    def find(self, model: str) -> ModelPrice | None:
        price = self.exact.get(model)
        if price is not None:
            return price
        for pattern, p in self.globs:
            if fnmatch.fnmatchcase(model, pattern):
                return p
        return None


def validate_prices(prices: object) -> dict[str, ModelPrice]:
    """Prices given in code, checked: ValueError naming the model and the field."""
    if not isinstance(prices, Mapping):
        raise ValueError(f"prices must be a mapping of model name or glob to prices, not {prices!r}")
    out: dict[str, ModelPrice] = {}
    for name, value in prices.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"prices: model names must be non-empty strings, not {name!r}")
        try:
            out[name] = value if isinstance(value, ModelPrice) else ModelPrice.from_mapping(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"prices[{name!r}]: {exc}") from None
    return out


def read_prices_file() -> dict[str, ModelPrice]:
    """The prices file's valid entries; one warning for the file or for each bad entry, never raising."""
    path = os.environ.get(PRICES_FILE_ENV)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        log.warning(
            "otel-llm-usage: %s=%r could not be read (%s); no prices from it", PRICES_FILE_ENV, path, exc
        )
        return {}
    if not isinstance(data, dict):
        log.warning(
            "otel-llm-usage: %s=%r: expected a JSON object of model name or glob -> prices; "
            "no prices from it",
            PRICES_FILE_ENV,
            path,
        )
        return {}
    out: dict[str, ModelPrice] = {}
    for name, value in data.items():
        try:
            out.update(validate_prices({name: value}))
        except ValueError as exc:
            log.warning("otel-llm-usage: %s=%r: %s; that entry is ignored", PRICES_FILE_ENV, path, exc)
    return out
