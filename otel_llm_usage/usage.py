"""Addable totals over many calls (`Usage`): a run, a session, an agent, the process.

The per-call ledger they add up, `TokenUsage`, lives in `tokens` and is importable from here too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _fork
from .tokens import MAX_TOKEN_COUNT as MAX_TOKEN_COUNT
from .tokens import TokenUsage as TokenUsage
from .tokens import as_count as as_count

# Per-model rows one `Usage` keeps before further models are summed into the `_other` row. Model
# names come from callers and from responses, so without a cap a stream of distinct names would
# grow every ledger without end.
MAX_MODELS = 1000
OVERFLOW_ROW = "_other"
# Response models listed per row; a request model resolving to more than this is a misconfiguration.
MAX_RESPONSE_MODELS = 16

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
    "audio_input_tokens",
    "audio_output_tokens",
    "usage_missing_requests",
    "errors_without_usage",
    "unpriced_output_tokens",
    "cost_without_usage_usd",
    "folded_models",
)
_DERIVED = (
    "total_tokens",
    "average_cost_usd",
    "output_ratio",
    "requests_with_usage",
    "priced_requests",
    "priced_cost_usd",
    "priced_output_tokens",
    "tokens_per_call",
    "input_tokens_per_call",
    "output_tokens_per_call",
    "cost_per_1k_output_tokens",
)


@dataclass(slots=True)
class Usage:
    """Addable totals over many calls: a run, a session, an agent, the process.

    A call is *priced* when it carried usage and its cost is known, *unpriced* when it carried
    usage but its model has no price, *usage missing* when it ended without an error and without
    usage. Failed calls count in `errors` (those without usage also in `errors_without_usage`;
    those with partial usage as priced or unpriced). `cost_usd` is every known cost,
    `priced_cost_usd` that of the priced calls (they differ by `cost_without_usage_usd`, costs
    reported for calls without usage). Audio tokens are part of `input_tokens` / `output_tokens`,
    as cache reads and reasoning are.

    `by_model` breaks the same totals down by the model the caller asked for (the response model
    when the request named none), each row listing in `response_models` the models the responses
    named. At most `MAX_MODELS` rows; later models are summed into the `_other` row, whose
    `folded_models` counts the distinct names folded in. Thread-safe to update through `add_call`.
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
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    usage_missing_requests: int = 0
    errors_without_usage: int = 0
    unpriced_output_tokens: int = 0
    cost_without_usage_usd: float = 0.0
    response_models: tuple[str, ...] = ()
    folded_models: int = 0
    _folded: set[str] | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=_fork.lock, repr=False, compare=False)

    def add_call(
        self,
        model: str,
        tokens: TokenUsage | None,
        cost_usd: float | None,
        error: bool,
        *,
        per_model: bool = True,
        response_model: str | None = None,
    ) -> None:
        """Add one finished call. `model` is the model the caller asked for; `response_model` the
        one the response named, listed in the model's row."""
        with self._lock:
            self._add(tokens, cost_usd, error)
            sub: Usage | None = None
            if per_model:
                sub = self.by_model.get(model)
                if sub is None:
                    sub = self._model_row(model)
                sub._add(tokens, cost_usd, error)
                if response_model is not None and response_model not in sub.response_models:
                    sub._list_response_model(response_model)
            # Checked once here rather than in each _add: most calls carry no audio.
            if tokens is not None and (tokens.input_audio or tokens.output_audio):
                self.audio_input_tokens += tokens.input_audio
                self.audio_output_tokens += tokens.output_audio
                if sub is not None:
                    sub.audio_input_tokens += tokens.input_audio
                    sub.audio_output_tokens += tokens.output_audio

    def _list_response_model(self, name: str) -> None:
        if len(self.response_models) < MAX_RESPONSE_MODELS and not self.folded_models:
            self.response_models = (*self.response_models, name)

    def _model_row(self, model: str) -> Usage:
        """The row for a model not seen yet (caller holds the lock): its own, or `_other` past the cap."""
        rows = self.by_model
        if len(rows) < MAX_MODELS:
            sub = rows[model] = Usage()
            return sub
        other = rows.get(OVERFLOW_ROW)
        if other is None:
            other = rows[OVERFLOW_ROW] = Usage()
        other._fold(model)
        return other

    def _fold(self, name: str) -> None:
        # Distinct names are remembered up to the cap, so `folded_models` is exact up to
        # MAX_MODELS folded names and a lower bound beyond.
        folded = self._folded
        if folded is None:
            folded = self._folded = set()
        if name not in folded and len(folded) < MAX_MODELS:
            folded.add(name)
            self.folded_models += 1

    def _add(self, tokens: TokenUsage | None, cost_usd: float | None, error: bool) -> None:
        # The common call (usage and a price) touches no more fields than before the per-call
        # figures existed: they are derived from counts kept in the rarer branches. Audio tokens
        # are added by add_call.
        self.requests += 1
        if tokens is not None:
            self.input_tokens += tokens.input
            self.output_tokens += tokens.output
            self.cache_read_tokens += tokens.cache_read
            self.cache_write_tokens += tokens.cache_write
            self.reasoning_tokens += tokens.reasoning
            if cost_usd is not None:
                self.cost_usd += cost_usd
            else:
                self.unpriced_requests += 1
                self.unpriced_output_tokens += tokens.output
        else:
            if cost_usd is not None:
                self.cost_usd += cost_usd
                self.cost_without_usage_usd += cost_usd
            if error:
                self.errors_without_usage += 1
            else:
                self.usage_missing_requests += 1
        if error:
            self.errors += 1

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        out = Usage(**{name: getattr(self, name) + getattr(other, name) for name in _TOTAL_FIELDS})
        out.response_models = _merge_names(self.response_models, other.response_models)
        rows: dict[str, Usage] = {}
        for model in (*self.by_model, *other.by_model):
            if model not in rows:
                mine, theirs = self.by_model.get(model), other.by_model.get(model)
                if mine is not None and theirs is not None:
                    rows[model] = mine + theirs
                else:
                    rows[model] = (mine if mine is not None else theirs or Usage()).snapshot()
        out.by_model = _capped(rows)
        return out

    def snapshot(self) -> Usage:
        """A consistent copy, safe to read while other threads keep adding."""
        with self._lock:
            out = Usage(**{name: getattr(self, name) for name in _TOTAL_FIELDS})
            out.response_models = self.response_models
            out.by_model = {m: u.snapshot() for m, u in self.by_model.items()}
            return out

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def requests_with_usage(self) -> int:
        """Calls that carried usage: the priced and the unpriced ones."""
        return self.requests - self.usage_missing_requests - self.errors_without_usage

    @property
    def priced_requests(self) -> int:
        """Calls that carried usage and had a known cost."""
        return self.requests_with_usage - self.unpriced_requests

    @property
    def priced_cost_usd(self) -> float:
        """The cost of the priced calls: `cost_usd` less costs reported for calls without usage."""
        return self.cost_usd - self.cost_without_usage_usd if self.cost_without_usage_usd else self.cost_usd

    @property
    def priced_output_tokens(self) -> int:
        return self.output_tokens - self.unpriced_output_tokens

    @property
    def average_cost_usd(self) -> float:
        """Cost per priced call (one that carried usage and had a price); 0 when there was none."""
        return self.priced_cost_usd / self.priced_requests if self.priced_requests else 0.0

    @property
    def output_ratio(self) -> float:
        """Output tokens as a share of all tokens (0 when there were none)."""
        total = self.total_tokens
        return self.output_tokens / total if total else 0.0

    @property
    def tokens_per_call(self) -> float:
        """Input plus output tokens per call that carried usage."""
        n = self.requests_with_usage
        return self.total_tokens / n if n else 0.0

    @property
    def input_tokens_per_call(self) -> float:
        n = self.requests_with_usage
        return self.input_tokens / n if n else 0.0

    @property
    def output_tokens_per_call(self) -> float:
        n = self.requests_with_usage
        return self.output_tokens / n if n else 0.0

    @property
    def cost_per_1k_output_tokens(self) -> float:
        """USD per 1,000 output tokens of the priced calls; 0 when they had no output."""
        out = self.priced_output_tokens
        return self.priced_cost_usd * 1000 / out if out else 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _TOTAL_FIELDS}
        out.update({name: getattr(self, name) for name in _DERIVED})
        if self.response_models:
            out["response_models"] = list(self.response_models)
        if self.by_model:
            out["by_model"] = {m: u.to_dict() for m, u in sorted(self.by_model.items())}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """The totals `to_dict()` wrote (derived figures are recomputed, not read)."""
        out = cls(**{name: data[name] for name in _TOTAL_FIELDS if name in data})
        out.response_models = tuple(data.get("response_models", ()))
        out.by_model = {m: cls.from_dict(u) for m, u in data.get("by_model", {}).items()}
        return out


def _merge_names(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return (*a, *(n for n in b if n not in a))[:MAX_RESPONSE_MODELS]


def _capped(rows: dict[str, Usage]) -> dict[str, Usage]:
    """`rows` with the models past `MAX_MODELS` summed into the `_other` row."""
    if len(rows) - (OVERFLOW_ROW in rows) <= MAX_MODELS:
        return rows
    kept: dict[str, Usage] = {}
    other = rows.get(OVERFLOW_ROW) or Usage()
    folded = other.folded_models
    for name, row in rows.items():
        if name == OVERFLOW_ROW:
            continue
        if len(kept) < MAX_MODELS:
            kept[name] = row
        else:
            other = other + row
            folded += 1
    other.folded_models = folded
    other.response_models = ()
    kept[OVERFLOW_ROW] = other
    return kept
