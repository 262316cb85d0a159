"""Cost in USD of a call's ledger, from `genai-prices`, resolved once per (provider, model).

`genai_prices.calc_price` does exact Decimal arithmetic over a registry of units and costs about
100 µs a call. Its price of a ledger is linear in the token counts (within one context-length
tier), so each model's price is compiled once into a few float coefficients per bucket, and each
call then costs a handful of multiplications. A test checks the result against `calc_price` over
every model in the table.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any, NamedTuple

from .usage import TokenUsage

log = logging.getLogger(__name__)

PRICES_FILE_ENV = "OTEL_LLM_USAGE_PRICES_FILE"

# gen_ai.provider.name -> genai-prices provider id. A provider absent here has no price table:
# its calls are unpriced unless the user gives a price.
GENAI_PRICES_PROVIDER = {
    "openai": "openai",
    "azure.ai.openai": "azure",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "mistral_ai": "mistral",
    "cohere": "cohere",
    "groq": "groq",
    "deepseek": "deepseek",
    "x_ai": "x-ai",
    "openrouter": "openrouter",
    "together": "together",
    "fireworks": "fireworks",
    "perplexity": "perplexity",
    "cerebras": "cerebras",
}

# The order of the ledger vector the compiled prices read; see `_ledger_vector`.
_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_5m_tokens",
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "output_reasoning_tokens",
)
_KEY_INDEX = {k: i for i, k in enumerate(_KEYS)}
_REFRESH_S = 3600.0  # dated price changes take effect within this long in a long-running process


def genai_usage_values(t: TokenUsage) -> dict[str, int]:
    """The ledger as genai-prices usage keys (its `input_tokens` includes cache, as ours does)."""
    values = dict(zip(_KEYS, _ledger_vector(t), strict=True))
    return {k: v for k, v in values.items() if v or k in ("input_tokens", "output_tokens")}


def _ledger_vector(t: TokenUsage) -> tuple[int, ...]:
    return (
        t.input,
        t.output,
        t.cache_read,
        t.cache_write,
        t.cache_write - t.cache_write_1h,
        t.cache_write_1h,
        t.input_audio,
        t.output_audio,
        t.reasoning,
    )


class Cost(NamedTuple):
    """One call's cost in USD, by ledger bucket. A named tuple: one is built for every call."""

    total_usd: float
    input_usd: float
    cache_read_usd: float
    cache_write_usd: float
    output_usd: float
    source: str  # "price_table" | "override" | "provider"
    model: str | None = None  # the price table's model id


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

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelPrice:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown price field(s) {sorted(unknown)}; expected some of {sorted(known)}")
        values: dict[str, Any] = {
            k: (int(v) if k == "context_window" else float(v)) for k, v in data.items() if v is not None
        }
        return cls(**values)


# Prices are compiled to integers: USD per unit times _SCALE. A cost is then an exact integer sum,
# and one int/int division gives the double nearest the exact decimal amount (0.00725, never
# 0.0072500000000000004), which is also what genai-prices' Decimal result converts to.
_SCALE = 10**24


def _scaled(price: Any, per: Any) -> int:
    with localcontext() as ctx:
        ctx.prec = 60
        return int((Decimal(str(price)) * _SCALE / Decimal(str(per))).to_integral_value())


# One unit of a compiled price: ledger coefficients, a scaled price (or tiers), a bucket.
@dataclass(frozen=True, slots=True)
class _Unit:
    coefs: tuple[tuple[int, int], ...]
    price: int
    tiers: tuple[tuple[int, int], ...]  # (start, scaled price), highest start first
    bucket: int  # 0 input, 1 cache_read, 2 cache_write, 3 output
    constant: int = 0  # count that does not depend on tokens (per-request charges)


class _Compiled:
    __slots__ = ("base", "context_window", "expires", "flat", "model_id", "slow", "source", "units")

    def __init__(
        self,
        units: tuple[_Unit, ...],
        model_id: str,
        source: str,
        context_window: int | None,
        expires: float,
        slow: Any = None,
    ) -> None:
        self.units = units
        self.model_id = model_id
        self.source = source
        self.context_window = context_window
        self.expires = expires
        self.slow = slow  # (ModelInfo, Provider) when the price needs genai-prices' own arithmetic
        # Without tiers a price is one linear form: per-bucket constants plus (bucket, ledger
        # index, coefficient times price) terms, summed without looking at a unit again.
        self.base: list[int] | None = None
        self.flat: tuple[tuple[int, int, int], ...] = ()
        if not any(u.tiers for u in units):
            base = [0, 0, 0, 0]
            for u in units:
                base[u.bucket] += u.price * u.constant
            self.base = base
            self.flat = tuple((u.bucket, i, c * u.price) for u in units for i, c in u.coefs)

    def cost(self, t: TokenUsage) -> Cost | None:
        if self.slow is not None:
            try:
                return self._slow_cost(t)
            except ValueError:
                return None  # genai-prices needs a usage split this ledger does not have (audio cache reads)
        x = _ledger_vector(t)
        if self.base is not None:
            buckets = self.base.copy()
            for bucket, i, k in self.flat:
                buckets[bucket] += k * x[i]
        else:
            buckets = [0, 0, 0, 0]
            for u in self.units:
                count = u.constant
                for i, c in u.coefs:
                    count += c * x[i]
                price = u.price
                for start, tier_price in u.tiers:
                    if t.input > start:
                        price = tier_price
                        break
                buckets[u.bucket] += price * count
        b0, b1, b2, b3 = buckets
        s = _SCALE
        return Cost((b0 + b1 + b2 + b3) / s, b0 / s, b1 / s, b2 / s, b3 / s, self.source, self.model_id)

    def _slow_cost(self, t: TokenUsage) -> Cost:
        from genai_prices import Usage as GenaiUsage

        model, provider = self.slow
        calc = model.calc_price(GenaiUsage(**genai_usage_values(t)), provider)
        inp, out = float(calc.input_price), float(calc.output_price)
        return Cost(float(calc.total_price), inp, 0.0, 0.0, out, self.source, self.model_id)


def _bucket_of(dimensions: Mapping[str, str]) -> int:
    token_type = dimensions.get("token_type")
    if token_type == "cache_read":
        return 1
    if token_type == "cache_write":
        return 2
    if dimensions.get("direction") == "output":
        return 3
    return 0


def _compile_model_price(model_price: Any) -> tuple[_Unit, ...] | None:
    """Linear form of one genai-prices ModelPrice, or None when it prices a unit the ledger lacks.

    Mirrors genai-prices' decomposition: each priced unit is billed for its own count less the
    counts of the more specific priced units beneath it (cache reads are not billed as input).
    """
    from genai_prices.decompose import is_descendant_or_self
    from genai_prices.types import TieredPrices, _collect_resolved_model_prices
    from genai_prices.units import _get_registry

    registry = _get_registry()
    resolved = _collect_resolved_model_prices(model_price, registry)
    priced = sorted(resolved, key=lambda up: (-len(up[0].dimensions), up[0].usage_key))
    leaves: dict[str, dict[int, int]] = {}
    units: list[_Unit] = []
    for unit, price in priced:
        if unit.usage_key == "requests":
            base = price.base if isinstance(price, TieredPrices) else price
            units.append(_Unit((), _scaled(base, unit.per), (), 0, constant=1))
            continue
        if unit.usage_key in _KEY_INDEX:
            vec = {_KEY_INDEX[unit.usage_key]: 1}
        elif unit.dimensions.get("family") == "tokens":
            return None
        else:
            continue  # searches, pages, hours: never reported by an LLM call's token ledger
        for other, _ in priced:
            if other is not unit and other.usage_key in leaves and is_descendant_or_self(unit, other):
                for i, c in leaves[other.usage_key].items():
                    vec[i] = vec.get(i, 0) - c
        leaves[unit.usage_key] = vec
        coefs = tuple((i, c) for i, c in sorted(vec.items()) if c)
        if isinstance(price, TieredPrices):
            tiers = tuple(
                (tier.start, _scaled(tier.price, unit.per))
                for tier in sorted(price.tiers, key=lambda tr: -tr.start)
            )
            units.append(_Unit(coefs, _scaled(price.base, unit.per), tiers, _bucket_of(unit.dimensions)))
        else:
            units.append(_Unit(coefs, _scaled(price, unit.per), (), _bucket_of(unit.dimensions)))
    return tuple(units)


def _compile_override(name: str, p: ModelPrice, expires: float) -> _Compiled:
    inp = p.input
    cr = p.cache_read if p.cache_read is not None else inp
    cw = p.cache_write if p.cache_write is not None else inp
    cw1h = p.cache_write_1h if p.cache_write_1h is not None else cw
    ia = p.input_audio if p.input_audio is not None else inp
    oa = p.output_audio if p.output_audio is not None else p.output
    m = 1_000_000
    i = _KEY_INDEX
    units = (
        # text input = input - cache - audio; written in the same linear form as table prices
        _Unit(
            (
                (i["input_tokens"], 1),
                (i["cache_read_tokens"], -1),
                (i["cache_write_tokens"], -1),
                (i["input_audio_tokens"], -1),
            ),
            _scaled(inp, m),
            (),
            0,
        ),
        _Unit(((i["input_audio_tokens"], 1),), _scaled(ia, m), (), 0),
        _Unit(((i["cache_read_tokens"], 1),), _scaled(cr, m), (), 1),
        _Unit(((i["cache_write_5m_tokens"], 1),), _scaled(cw, m), (), 2),
        _Unit(((i["cache_write_1h_tokens"], 1),), _scaled(cw1h, m), (), 2),
        _Unit(((i["output_tokens"], 1), (i["output_audio_tokens"], -1)), _scaled(p.output, m), (), 3),
        _Unit(((i["output_audio_tokens"], 1),), _scaled(oa, m), (), 3),
    )
    return _Compiled(units, name, "override", p.context_window, expires)


class Pricer:
    """Resolves (provider, model) to a compiled price once, then prices ledgers cheaply.

    Thread-safe: the cache is a dict replaced entry by entry; a race resolves the same model twice.
    """

    def __init__(self, overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None) -> None:
        self._exact: dict[str, ModelPrice] = {}
        self._globs: list[tuple[str, ModelPrice]] = []
        for pattern, price in _load_overrides(overrides).items():
            if any(ch in pattern for ch in "*?["):
                self._globs.append((pattern, price))
            else:
                self._exact[pattern] = price
        self._cache: dict[tuple[str, str], _Compiled | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def resolve(self, provider: str, model: str) -> _Compiled | None:
        key = (provider, model)
        if key in self._cache:
            compiled = self._cache[key]
            if compiled is None or compiled.expires >= time.monotonic():
                return compiled
        compiled = self._resolve(provider, model)
        self._cache[key] = compiled
        return compiled

    def cost(self, provider: str, model: str | None, tokens: TokenUsage) -> Cost | None:
        if not model:
            return None
        compiled = self.resolve(provider, model)
        if compiled is None:
            return None
        return compiled.cost(tokens)

    def knows(self, provider: str, model: str) -> bool:
        """Whether the model has a price (an override or a table entry), without warning if not."""
        if self._override(model) is not None:
            return True
        provider_id = GENAI_PRICES_PROVIDER.get(provider)
        return provider_id is not None and _find_model(provider_id, model) is not None

    def context_window(self, provider: str, model: str | None) -> int | None:
        compiled = self.resolve(provider, model) if model else None
        return compiled.context_window if compiled is not None else None

    def _resolve(self, provider: str, model: str) -> _Compiled | None:
        expires = time.monotonic() + _REFRESH_S
        override = self._override(model)
        if override is not None:
            return _compile_override(model, override, expires)
        provider_id = GENAI_PRICES_PROVIDER.get(provider)
        found = _find_model(provider_id, model) if provider_id else None
        if found is None:
            self._warn_unpriced(provider, model)
            return None
        prov, info = found
        model_price = info.get_prices(datetime.now(tz=UTC))
        units = _compile_model_price(model_price)
        if units is None:
            return _Compiled((), info.id, "price_table", info.context_window, expires, slow=(info, prov))
        return _Compiled(units, info.id, "price_table", info.context_window, expires)

    def _override(self, model: str) -> ModelPrice | None:
        price = self._exact.get(model)
        if price is not None:
            return price
        for pattern, p in self._globs:
            if fnmatch.fnmatchcase(model, pattern):
                return p
        return None

    def _warn_unpriced(self, provider: str, model: str) -> None:
        with self._lock:
            if (provider, model) in self._warned:
                return
            self._warned.add((provider, model))
        log.warning(
            "otel-llm-usage: no price for model %r of provider %r; its calls are counted in "
            "llm_usage.requests.unpriced and carry no cost (give one with instrument(prices=...) or %s)",
            model,
            provider,
            PRICES_FILE_ENV,
        )


def _find_model(provider_id: str, model: str) -> tuple[Any, Any] | None:
    from genai_prices.data_snapshot import get_snapshot

    snapshot = get_snapshot()
    for ref in _model_refs(model):
        try:
            return snapshot.find_provider_model(ref, None, provider_id, None)
        except LookupError:
            continue
    return None


def _model_refs(model: str) -> Iterable[str]:
    """The model name, then without a routing prefix ("models/gemini-2.5-pro", "openai/gpt-4o")."""
    yield model
    if "/" in model:
        yield model.rsplit("/", 1)[1]


def _load_overrides(overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None) -> dict[str, ModelPrice]:
    out: dict[str, ModelPrice] = {}
    path = os.environ.get(PRICES_FILE_ENV)
    if path:
        try:
            data = json.loads(Path(path).read_text())
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object of model name or glob -> prices")
            out = {name: ModelPrice.from_mapping(value) for name, value in data.items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:  # a file must not stop the app
            log.warning("otel-llm-usage: %s=%r ignored: %s", PRICES_FILE_ENV, path, exc)
            out = {}
    for name, value in (overrides or {}).items():
        out[name] = value if isinstance(value, ModelPrice) else ModelPrice.from_mapping(value)
    return out
