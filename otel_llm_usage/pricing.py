"""Cost in USD of a call's ledger, from `genai-prices`, resolved once per (provider, model).

`genai_prices.calc_price` does exact Decimal arithmetic over a registry of units and costs about
100 µs a call. Its price of a ledger is linear in the token counts (within one context-length
tier), so each model's price is compiled once into a few float coefficients per bucket, and each
call then costs a handful of multiplications. A test checks the result against `calc_price` over
every model in the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from typing import Any, NamedTuple

from . import _fork
from .price_names import GENAI_PRICES_PROVIDER, find_model, import_price_tables, is_provider_host
from .price_overrides import PRICES_FILE_ENV, ModelPrice, Overrides, read_prices_file, validate_prices
from .usage import TokenUsage

__all__ = [
    "GENAI_PRICES_PROVIDER",
    "PRICES_FILE_ENV",
    "Cost",
    "ModelPrice",
    "Pricer",
    "genai_usage_values",
    "validate_prices",
]

log = logging.getLogger(__name__)

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


# In-process tables keyed by model names from responses: bounded (DESIGN rule 6).
CACHE_LIMIT = 4096  # resolved (provider, model, host) prices kept; the oldest is dropped past it
WARN_LIMIT = 100  # unpriced models warned about one by one; past it, one summary line


class Pricer:
    """Resolves (provider, model, host) to a compiled price once, then prices ledgers cheaply.

    Overrides come in two layers: the prices file (`OTEL_LLM_USAGE_PRICES_FILE`, re-read by
    `reload_file`) and prices given in code (`instrument(prices=...)`, `set_overrides`); code wins
    for the same name. Thread-safe: a change swaps in new overrides and then a new, empty cache, and
    `resolve` reads the cache first, so a price compiled from the old overrides can only land in
    the old cache.
    """

    def __init__(self, overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None) -> None:
        import_price_tables()
        self._lock = _fork.lock()
        self._code = validate_prices(overrides or {})
        self._file = read_prices_file()
        self._overrides = Overrides.of({**self._file, **self._code})
        self._cache: dict[tuple[str, str, str | None], _Compiled | None] = {}
        self._warned: set[tuple[str, str]] = set()
        self.unpriced_folded = 0  # unpriced models past WARN_LIMIT, not warned about one by one

    def resolve(self, provider: str, model: str, server_address: str | None = None) -> _Compiled | None:
        cache = self._cache  # before the overrides: see the class docstring
        key = (provider, model, server_address)
        if key in cache:
            compiled = cache[key]
            if compiled is None or compiled.expires >= time.monotonic():
                return compiled
        compiled = self._resolve(provider, model, server_address)
        with self._lock:
            if key not in cache and len(cache) >= CACHE_LIMIT:
                del cache[next(iter(cache))]
            cache[key] = compiled
        return compiled

    def cost(
        self, provider: str, model: str | None, tokens: TokenUsage, server_address: str | None = None
    ) -> Cost | None:
        if not model:
            return None
        compiled = self.resolve(provider, model, server_address)
        if compiled is None:
            return None
        return compiled.cost(tokens)

    def knows(self, provider: str, model: str, server_address: str | None = None) -> bool:
        """Whether the model has a price (an override or a table entry), without warning if not."""
        if self._overrides.find(model) is not None:
            return True
        provider_id = GENAI_PRICES_PROVIDER.get(provider)
        strip = is_provider_host(provider, server_address)
        return provider_id is not None and find_model(provider_id, model, strip) is not None

    def set_overrides(self, prices: Mapping[str, ModelPrice | Mapping[str, Any]], *, replace: bool) -> None:
        """Add (or with `replace`, replace all) prices given in code; from the next call on."""
        checked = validate_prices(prices)  # raises before anything changes
        with self._lock:
            self._code = checked if replace else {**self._code, **checked}
            self._swap()

    def reload_file(self) -> None:
        """Read the prices file again (its entries only; prices given in code stay)."""
        prices = read_prices_file()
        with self._lock:
            self._file = prices
            self._swap()

    def _swap(self) -> None:
        self._overrides = Overrides.of({**self._file, **self._code})
        self._cache = {}

    def _resolve(self, provider: str, model: str, server_address: str | None) -> _Compiled | None:
        expires = time.monotonic() + _REFRESH_S
        override = self._overrides.find(model)
        if override is not None:
            return _compile_override(model, override, expires)
        provider_id = GENAI_PRICES_PROVIDER.get(provider)
        strip = is_provider_host(provider, server_address)
        found = find_model(provider_id, model, strip) if provider_id else None
        if found is None:
            self._warn_unpriced(provider, model)
            return None
        prov, info = found
        model_price = info.get_prices(datetime.now(tz=UTC))
        units = _compile_model_price(model_price)
        if units is None:
            return _Compiled((), info.id, "price_table", info.context_window, expires, slow=(info, prov))
        return _Compiled(units, info.id, "price_table", info.context_window, expires)

    def _warn_unpriced(self, provider: str, model: str) -> None:
        with self._lock:
            if (provider, model) in self._warned:
                return
            if len(self._warned) >= WARN_LIMIT:
                self.unpriced_folded += 1
                first_folded = self.unpriced_folded == 1
            else:
                self._warned.add((provider, model))
                first_folded = None
        if first_folded is None:
            log.warning(
                "otel-llm-usage: no price for model %r of provider %r; its calls are counted in "
                "llm_usage.requests.unpriced and carry no cost (give one with instrument(prices=...), "
                "set_prices() or %s)",
                model,
                provider,
                PRICES_FILE_ENV,
            )
        elif first_folded:
            log.warning(
                "otel-llm-usage: more than %d models have no price; further ones are not logged one by "
                "one (their calls are still counted in llm_usage.requests.unpriced)",
                WARN_LIMIT,
            )
