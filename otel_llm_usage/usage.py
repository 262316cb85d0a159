"""The token ledger: one normalised record of disjoint buckets per call, and addable totals.

`TokenUsage.input` and `.output` are inclusive totals, as in the semantic conventions: cache
reads and writes are part of `input`, reasoning is part of `output`. Every provider module turns
its own usage fields into this shape, so nothing downstream needs to know which provider said what.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, NamedTuple


def as_count(value: object) -> int:
    """A token count from whatever a provider sent: non-negative int, anything else is 0.

    Providers (and proxies in front of them) sometimes send floats, strings or nulls; a count
    that cannot be read is treated as absent rather than guessed.
    """
    if type(value) is int:
        return value if value > 0 else 0
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value if value > 0 else 0
    if isinstance(value, float) and math.isfinite(value) and value > 0 and value.is_integer():
        return int(value)
    return 0


class TokenUsage(NamedTuple):
    """Disjoint token buckets of one call. Invariants (checked by `valid`):

    cache_read + cache_write <= input; cache_write_1h <= cache_write; input_audio <= input;
    reasoning <= output; output_audio <= output; nothing negative.

    Immutable; a named tuple because one is built for every call, and that costs a third of a
    frozen dataclass.
    """

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_1h: int = 0
    reasoning: int = 0
    input_audio: int = 0
    output_audio: int = 0

    @classmethod
    def normalised(
        cls,
        *,
        input: int = 0,
        output: int = 0,
        cache_read: int = 0,
        cache_write: int = 0,
        cache_write_1h: int = 0,
        reasoning: int = 0,
        input_audio: int = 0,
        output_audio: int = 0,
    ) -> TokenUsage:
        """Build a ledger that satisfies the invariants even from inconsistent provider data.

        A subset larger than its total can only come from a malformed payload; the subset is cut
        to fit rather than inflating the billed total.
        """
        if (
            cache_read >= 0
            and cache_write >= 0
            and cache_read + cache_write <= input
            and 0 <= cache_write_1h <= cache_write
            and 0 <= reasoning <= output
            and 0 <= input_audio <= input
            and 0 <= output_audio <= output
        ):  # consistent already: the common case
            return cls(
                input, output, cache_read, cache_write, cache_write_1h, reasoning, input_audio, output_audio
            )
        input, output = max(input, 0), max(output, 0)
        cache_read = min(max(cache_read, 0), input)
        cache_write = min(max(cache_write, 0), input - cache_read)
        return cls(
            input=input,
            output=output,
            cache_read=cache_read,
            cache_write=cache_write,
            cache_write_1h=min(max(cache_write_1h, 0), cache_write),
            reasoning=min(max(reasoning, 0), output),
            input_audio=min(max(input_audio, 0), input),
            output_audio=min(max(output_audio, 0), output),
        )

    @property
    def total(self) -> int:
        return self.input + self.output

    @property
    def uncached_input(self) -> int:
        return self.input - self.cache_read - self.cache_write

    def valid(self) -> bool:
        return (
            min(self) >= 0
            and self.cache_read + self.cache_write <= self.input
            and self.cache_write_1h <= self.cache_write
            and self.input_audio <= self.input
            and self.reasoning <= self.output
            and self.output_audio <= self.output
        )


# Per-agent rows one run's or session's `Usage` keeps, and per-provider rows of the process's; later
# names are summed into `_other`. The names come from frameworks and users' code (`record_call()`),
# so a ledger must not grow with them.
MAX_AGENT_ROWS = 1000
MAX_PROVIDER_ROWS = 100
OTHER_ROW = "_other"

_TOTAL_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_requests",
    "errors",
)


@dataclass(slots=True)
class Usage:
    """Addable totals over many calls: a run, a session, an agent, the process.

    `by_model` breaks the same totals down by response model (request model when the response
    named none). `by_agent` breaks a run's or a session's totals down by the agent that made each
    call (calls of no agent are in no row; past `MAX_AGENT_ROWS` agents, later ones are summed into
    `_other`); the process keeps its agents in `usage_summary().by_agent` instead, and breaks its
    totals down by provider (`gen_ai.provider.name`) in `by_provider`. Thread-safe to update through
    `add_call`.
    """

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    errors: int = 0
    by_model: dict[str, Usage] = field(default_factory=dict)
    by_agent: dict[str, Usage] = field(default_factory=dict)
    by_provider: dict[str, Usage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_call(
        self,
        model: str,
        tokens: TokenUsage | None,
        cost_usd: float | None,
        error: bool,
        *,
        per_model: bool = True,
        agent: str | None = None,
        provider: str | None = None,
    ) -> None:
        with self._lock:
            self._add(tokens, cost_usd, error)
            if per_model:
                sub = self.by_model.get(model)
                if sub is None:
                    sub = self.by_model[model] = Usage()
                sub._add(tokens, cost_usd, error)
            if agent:
                row = self.by_agent.get(agent)
                if row is None:
                    row = _new_row(self.by_agent, agent, MAX_AGENT_ROWS)
                row._add(tokens, cost_usd, error)
            if provider:
                row = self.by_provider.get(provider)
                if row is None:
                    row = _new_row(self.by_provider, provider, MAX_PROVIDER_ROWS)
                row._add(tokens, cost_usd, error)

    def _add(self, tokens: TokenUsage | None, cost_usd: float | None, error: bool) -> None:
        self.requests += 1
        if tokens is not None:
            self.input_tokens += tokens.input
            self.output_tokens += tokens.output
            self.cache_read_tokens += tokens.cache_read
            self.cache_write_tokens += tokens.cache_write
            self.reasoning_tokens += tokens.reasoning
        if cost_usd is not None:
            self.cost_usd += cost_usd
        elif tokens is not None:
            self.unpriced_requests += 1
        if error:
            self.errors += 1

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        out = Usage(**{name: getattr(self, name) + getattr(other, name) for name in _TOTAL_FIELDS})
        for model in self.by_model.keys() | other.by_model.keys():
            out.by_model[model] = self.by_model.get(model, Usage()) + other.by_model.get(model, Usage())
        for agent in self.by_agent.keys() | other.by_agent.keys():
            out.by_agent[agent] = self.by_agent.get(agent, Usage()) + other.by_agent.get(agent, Usage())
        for name in self.by_provider.keys() | other.by_provider.keys():
            out.by_provider[name] = self.by_provider.get(name, Usage()) + other.by_provider.get(name, Usage())
        return out

    def snapshot(self) -> Usage:
        """A consistent copy, safe to read while other threads keep adding."""
        with self._lock:
            out = Usage(**{name: getattr(self, name) for name in _TOTAL_FIELDS})
            out.by_model = {m: u.snapshot() for m, u in self.by_model.items()}
            if self.by_agent:
                out.by_agent = {a: u.snapshot() for a, u in self.by_agent.items()}
            if self.by_provider:
                out.by_provider = {p: u.snapshot() for p, u in self.by_provider.items()}
            return out

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def average_cost_usd(self) -> float:
        priced = self.requests - self.unpriced_requests
        return self.cost_usd / priced if priced > 0 else 0.0

    @property
    def output_ratio(self) -> float:
        """Output tokens as a share of all tokens (0 when there were none)."""
        total = self.total_tokens
        return self.output_tokens / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _TOTAL_FIELDS}
        out["total_tokens"] = self.total_tokens
        out["average_cost_usd"] = self.average_cost_usd
        out["output_ratio"] = self.output_ratio
        if self.by_model:
            out["by_model"] = {m: u.to_dict() for m, u in sorted(self.by_model.items())}
        if self.by_agent:
            out["by_agent"] = {a: u.to_dict() for a, u in sorted(self.by_agent.items())}
        if self.by_provider:
            out["by_provider"] = {p: u.to_dict() for p, u in sorted(self.by_provider.items())}
        return out


def _new_row(rows: dict[str, Usage], name: str, cap: int) -> Usage:
    """The row for a name not seen yet (caller holds the lock): its own, or `_other` past `cap`."""
    key = name if len(rows) < cap else OTHER_ROW
    row = rows.get(key)
    if row is None:
        row = rows[key] = Usage()
    return row
