"""`usage_summary()` results: plain, immutable data that prints as a table and converts to a dict."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .usage import Usage

# Rows shown per section by str(); to_dict() always has every row.
MAX_TABLE_ROWS = 20

_COLUMNS: tuple[tuple[str, str], ...] = (
    ("requests", "requests"),
    ("input_tokens", "input"),
    ("output_tokens", "output"),
    ("cache_read_tokens", "cache_read"),
    ("cache_write_tokens", "cache_write"),
    ("reasoning_tokens", "reasoning"),
    ("cost_usd", "cost_usd"),
    ("average_cost_usd", "avg_cost_usd"),
    ("output_ratio", "out/total"),
    ("unpriced_requests", "unpriced"),
    ("errors", "errors"),
)


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Totals of one agent, model, session or the whole process.

    `average_cost_usd` is the cost per priced call; `output_ratio` is output / (input + output)
    tokens, 0 when there were none.
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

    @classmethod
    def of(cls, name: str, u: Usage) -> UsageRow:
        return cls(
            name=name,
            requests=u.requests,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            reasoning_tokens=u.reasoning_tokens,
            cost_usd=u.cost_usd,
            unpriced_requests=u.unpriced_requests,
            errors=u.errors,
            average_cost_usd=u.average_cost_usd,
            output_ratio=u.output_ratio,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        out.update({key: getattr(self, key) for key, _ in _COLUMNS})
        out["total_tokens"] = self.total_tokens
        return out


def _rows(items: Iterable[tuple[str, Usage]]) -> tuple[UsageRow, ...]:
    rows = [UsageRow.of(name, u) for name, u in items]
    rows.sort(key=lambda r: (-r.cost_usd, -r.requests, r.name))
    return tuple(rows)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """Process totals and breakdowns by agent, by model, by session (the sessions still held), by
    tenant and by provider (`gen_ai.provider.name`).

    Breakdowns are sorted by cost, highest first. Calls outside any named agent appear in no
    agent row; calls outside any session in no session row; calls of no tenant in no tenant row.
    Agents, tenants and providers past their cap are summed into an `_other` row.
    """

    total: UsageRow
    by_agent: tuple[UsageRow, ...] = ()
    by_model: tuple[UsageRow, ...] = ()
    by_session: tuple[UsageRow, ...] = ()
    by_tenant: tuple[UsageRow, ...] = ()
    by_provider: tuple[UsageRow, ...] = ()

    @classmethod
    def build(
        cls,
        total: Usage,
        agents: Mapping[str, Usage],
        sessions: Mapping[str, Usage],
        tenants: Mapping[str, Usage] | None = None,
        providers: Mapping[str, Usage] | None = None,
    ) -> UsageSummary:
        return cls(
            total=UsageRow.of("total", total),
            by_agent=_rows(agents.items()),
            by_model=_rows(total.by_model.items()),
            by_session=_rows(sessions.items()),
            by_tenant=_rows((tenants or {}).items()),
            by_provider=_rows((providers or {}).items()),
        )

    @classmethod
    def empty(cls) -> UsageSummary:
        return cls(total=UsageRow("total"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total.to_dict(),
            "by_agent": {r.name: r.to_dict() for r in self.by_agent},
            "by_model": {r.name: r.to_dict() for r in self.by_model},
            "by_session": {r.name: r.to_dict() for r in self.by_session},
            "by_tenant": {r.name: r.to_dict() for r in self.by_tenant},
            "by_provider": {r.name: r.to_dict() for r in self.by_provider},
        }

    def table(self, max_rows: int | None = MAX_TABLE_ROWS) -> str:
        """An aligned text table; each breakdown cut to `max_rows` rows (None: all)."""
        sections: list[tuple[str, tuple[UsageRow, ...]]] = [
            ("total", (self.total,)),
            ("by agent", self.by_agent),
            ("by model", self.by_model),
            ("by session", self.by_session),
            ("by provider", self.by_provider),
        ]
        if self.by_tenant:  # an application without tenants gets no empty section
            sections.append(("by tenant", self.by_tenant))
        lines: list[tuple[str, list[str]] | str] = []
        for title, rows in sections:
            lines.append(title)
            shown = rows if max_rows is None else rows[:max_rows]
            for row in shown:
                lines.append(("  " + row.name, [_cell(key, getattr(row, key)) for key, _ in _COLUMNS]))
            if not rows:
                lines.append(("  (none)", [""] * len(_COLUMNS)))
            elif len(shown) < len(rows):
                lines.append((f"  … {len(rows) - len(shown)} more", [""] * len(_COLUMNS)))
        header = ("", [label for _, label in _COLUMNS])
        table_rows = [header, *(line for line in lines if not isinstance(line, str))]
        name_width = max(len(name) for name, _ in table_rows)
        widths = [max(len(cells[i]) for _, cells in table_rows) for i in range(len(_COLUMNS))]
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


def _cell(key: str, value: Any) -> str:
    if key == "output_ratio":
        return f"{value:.3f}"
    if isinstance(value, float):
        return f"{value:.6f}"
    return f"{value:,}"
