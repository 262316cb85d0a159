"""`usage_summary()` results: plain, immutable data that prints as a table and converts to a dict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from .usage import Usage

# Rows shown per section by str(); to_dict() always has every row.
MAX_TABLE_ROWS = 20

# (field, column label); audio columns appear only when some row has audio tokens.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "requests"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_tokens", "cache_read"),
    ("cache_write_tokens", "cache_write"),
    ("reasoning_tokens", "reasoning"),
    ("audio_input_tokens", "audio_in"),
    ("audio_output_tokens", "audio_out"),
    ("cost_usd", "cost_usd"),
    ("average_cost_usd", "avg_cost_usd"),
    ("cost_per_1k_output_tokens", "usd/1k_out"),
    ("tokens_per_call", "tok/call"),
    ("output_ratio", "out/total"),
    ("unpriced_requests", "unpriced"),
    ("usage_missing_requests", "no_usage"),
    ("errors", "errors"),
)
_AUDIO = ("audio_input_tokens", "audio_output_tokens")


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one agent, model, session or the whole process: plain data.

    Counts: `requests` (every call), `errors` (failed calls), `unpriced_requests` (usage but no
    price), `usage_missing_requests` (ended without error and without usage), `priced_requests`
    (usage and a known cost). Per-call figures are over the calls that carried usage
    (`requests_with_usage` = priced + unpriced); `average_cost_usd` is `priced_cost_usd` per priced
    call and `cost_per_1k_output_tokens` the same cost per 1,000 output tokens of the priced calls.
    A model row lists the models its responses named in `response_models`; the `_other` row counts
    in `folded_models` the model names summed into it. docs/usage-summary.md has every field.
    """

    name: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_requests: int = 0
    errors: int = 0
    average_cost_usd: float = 0.0
    output_ratio: float = 0.0
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    usage_missing_requests: int = 0
    errors_without_usage: int = 0
    unpriced_output_tokens: int = 0
    cost_without_usage_usd: float = 0.0
    priced_requests: int = 0
    priced_cost_usd: float = 0.0
    priced_output_tokens: int = 0
    requests_with_usage: int = 0
    tokens_per_call: float = 0.0
    input_tokens_per_call: float = 0.0
    output_tokens_per_call: float = 0.0
    cost_per_1k_output_tokens: float = 0.0
    response_models: tuple[str, ...] = ()
    folded_models: int = 0

    @classmethod
    def of(cls, name: str, u: Usage) -> UsageRow:
        return cls(name, **{f: getattr(u, f) for f in _ROW_FIELDS if f != "name"})

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: getattr(self, f) for f in _ROW_FIELDS}
        out["response_models"] = list(self.response_models)
        out["total_tokens"] = self.total_tokens
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRow:
        """The row `to_dict()` wrote; keys it did not write are ignored."""
        values = {f: data[f] for f in _ROW_FIELDS if f in data}
        values["response_models"] = tuple(data.get("response_models", ()))
        return cls(**values)

    @property
    def label(self) -> str:
        """The name as the table shows it: with the response models or the folded count."""
        if self.folded_models:
            return f"{self.name} ({self.folded_models:,} models)"
        if self.response_models and self.response_models != (self.name,):
            return f"{self.name} ({', '.join(self.response_models)})"
        return self.name


_ROW_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(UsageRow))


def _rows(items: Iterable[tuple[str, Usage]]) -> tuple[UsageRow, ...]:
    rows = [UsageRow.of(name, u) for name, u in items]
    rows.sort(key=lambda r: (-r.cost_usd, -r.requests, r.name))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Process totals and breakdowns by agent, by model and by session (the sessions still held).

    Breakdowns are sorted by cost, highest first. Calls outside any named agent appear in no
    agent row; calls outside any session in no session row. `by_model` is keyed by the model the
    caller asked for, so a model's failed calls and its calls answered by a dated version are one
    row. `to_dict()` and `from_dict()` round-trip.
    """

    total: UsageRow
    by_agent: tuple[UsageRow, ...] = ()
    by_model: tuple[UsageRow, ...] = ()
    by_session: tuple[UsageRow, ...] = ()

    @classmethod
    def build(cls, total: Usage, agents: Mapping[str, Usage], sessions: Mapping[str, Usage]) -> UsageSummary:
        return cls(
            total=UsageRow.of("total", total),
            by_agent=_rows(agents.items()),
            by_model=_rows(total.by_model.items()),
            by_session=_rows(sessions.items()),
        )

    @classmethod
    def empty(cls) -> UsageSummary:
        return cls(total=UsageRow("total"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe): `total`, then each breakdown as {name: row}, in table order."""
        out: dict[str, Any] = {"total": self.total.to_dict()}
        for section in _SECTIONS:
            out[section] = {r.name: r.to_dict() for r in getattr(self, section)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageSummary:
        """The summary `to_dict()` wrote, equal to the original: save a summary, load it, compare."""
        total = UsageRow.from_dict(data["total"])
        sections = {
            section: tuple(UsageRow.from_dict({**row, "name": name}) for name, row in rows.items())
            for section in _SECTIONS
            if isinstance(rows := data.get(section, {}), Mapping)
        }
        return cls(total=total, **sections)

    def table(self, max_rows: int | None = MAX_TABLE_ROWS) -> str:
        """An aligned text table; each breakdown cut to `max_rows` rows (None: all)."""
        sections: list[tuple[str, tuple[UsageRow, ...]]] = [
            ("total", (self.total,)),
            ("by agent", self.by_agent),
            ("by model", self.by_model),
            ("by session", self.by_session),
        ]
        audio = self.total.audio_input_tokens or self.total.audio_output_tokens
        columns = [(key, label) for key, label in _COLUMNS if audio or key not in _AUDIO]
        lines: list[tuple[str, list[str]] | str] = []
        for title, rows in sections:
            lines.append(title)
            shown = rows if max_rows is None else rows[:max_rows]
            for row in shown:
                lines.append(("  " + row.label, [_cell(key, getattr(row, key)) for key, _ in columns]))
            if not rows:
                lines.append(("  (none)", [""] * len(columns)))
            elif len(shown) < len(rows):
                lines.append((f"  … {len(rows) - len(shown)} more", [""] * len(columns)))
        header = ("", [label for _, label in columns])
        table_rows = [header, *(line for line in lines if not isinstance(line, str))]
        name_width = max(len(name) for name, _ in table_rows)
        widths = [max(len(cells[i]) for _, cells in table_rows) for i in range(len(columns))]
        out: list[str] = []
        for line in [header, *lines]:
            if isinstance(line, str):
                out.append(line)
                continue
            name, cells = line
            text = name.ljust(name_width) + "".join(
                "  " + c.rjust(w) for c, w in zip(cells, widths, strict=True)
            )
            out.append(text.rstrip())
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


_SECTIONS: tuple[str, ...] = tuple(f.name for f in fields(UsageSummary) if f.name != "total")


def _cell(key: str, value: Any) -> str:
    if key == "output_ratio":
        return f"{value:.3f}"
    if key == "tokens_per_call":
        return f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:.6f}"
    return f"{value:,}"
