"""Spending limits on a run, a session or the whole process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["run", "session", "process"]
Action = Literal["warn", "raise"]


@dataclass(frozen=True, slots=True)
class Budget:
    """A cost limit in USD. `agent` narrows a run budget to runs of that agent."""

    max_cost_usd: float
    scope: Scope = "run"
    action: Action = "warn"
    agent: str | None = None

    def __post_init__(self) -> None:
        if not self.max_cost_usd >= 0:
            raise ValueError("max_cost_usd must be a non-negative number")
        if self.scope not in ("run", "session", "process"):
            raise ValueError(f"scope must be 'run', 'session' or 'process', not {self.scope!r}")
        if self.action not in ("warn", "raise"):
            raise ValueError(f"action must be 'warn' or 'raise', not {self.action!r}")


class BudgetExceeded(RuntimeError):
    """Raised from an LLM call, before its request is sent, once its scope has spent its limit."""

    def __init__(self, scope: str, key: str | None, limit_usd: float, spent_usd: float) -> None:
        self.scope = scope
        self.key = key
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        where = f"{scope} {key!r}" if key else scope
        super().__init__(f"LLM budget exceeded for {where}: spent ${spent_usd:.6f} of ${limit_usd:.6f}")
