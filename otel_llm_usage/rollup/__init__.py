"""Run and session rollups: the LLM calls beneath a run, a session's running totals, budgets.

- `run`: the `Run` ledger of one run and its latency maths
- `sessions`: the bounded store of session ledgers
- `budgets`: `Budget`, `BudgetExceeded` and the policy that applies them
- `metrics`: the run and session histograms
- `ledgers`: `Rollup`, the recorder's call listener that keeps every ledger
- `processor`: `RollupProcessor`, the spans of other instrumentations (foreign runs, local roots)
- `reopen`: writing a foreign run's totals on its span after it ended

Ledgers are fed from call ends, never from export, so a dropping exporter cannot make them wrong.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from .budgets import Budget, BudgetExceeded
from .ledgers import Rollup
from .processor import RollupProcessor
from .run import Run

if TYPE_CHECKING:
    from ..config import Options
    from ..recorder import Recorder

__all__ = ["Budget", "BudgetExceeded", "Rollup", "RollupProcessor", "Run", "install", "uninstall"]

# One processor per SDK tracer provider, reused by every `instrument()`: the SDK cannot remove a
# span processor, so after `uninstrument()` it stays on the provider, inert, until the next one.
_processors: weakref.WeakKeyDictionary[object, RollupProcessor] = weakref.WeakKeyDictionary()
_fed_by: weakref.WeakKeyDictionary[Rollup, RollupProcessor] = weakref.WeakKeyDictionary()


def install(
    recorder: Recorder,
    options: Options,
    tracer_provider: trace.TracerProvider | None,
    meter_provider: metrics.MeterProvider | None,
) -> Rollup:
    """Create the rollup, listen to the recorder and feed it the spans of the SDK tracer provider
    (given, else global), if there is one.

    Without an SDK provider every call is still counted (the recorder tells the rollup), but runs
    of other instrumentations are not seen.
    """
    rollup = Rollup(options, meter_provider)
    provider = tracer_provider if tracer_provider is not None else trace.get_tracer_provider()
    add = getattr(provider, "add_span_processor", None)
    if callable(add):
        try:
            proc = _processors.get(provider)
        except TypeError:  # a provider that cannot be weakly referenced
            proc = None
        if proc is None:
            proc = RollupProcessor(rollup)
            add(proc)
            try:
                _processors[provider] = proc
            except TypeError:
                pass
        else:
            proc.rollup = rollup
        _fed_by[rollup] = proc
        rollup.attached_to_provider = True
    recorder.add_listener(rollup)
    return rollup


def uninstall(recorder: Recorder, rollup: Rollup) -> None:
    """Stop listening, make the provider's processor inert, record the sessions still held."""
    recorder.remove_listener(rollup)
    proc = _fed_by.pop(rollup, None)
    if proc is not None and proc.rollup is rollup:
        proc.rollup = None
    rollup.stop()
