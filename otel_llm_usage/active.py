"""The one record of the active instrumentation: what `instrument()` set up, until `uninstrument()`.

The user-facing functions (`run()`, `session()`, `record_call()`, `usage_summary()`) read it; only
the instrumentor writes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .recorder import Recorder
    from .rollup.ledgers import Rollup


@dataclass(frozen=True, slots=True)
class Installation:
    recorder: Recorder
    rollup: Rollup | None  # None when rollups are off


_current: Installation | None = None


def current() -> Installation | None:
    return _current


def current_rollup() -> Rollup | None:
    inst = _current
    return inst.rollup if inst is not None else None


def install(installation: Installation | None) -> None:
    global _current
    _current = installation
