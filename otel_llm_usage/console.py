"""Console mode: one compact line per LLM call on stderr, and the usage summary table at exit.

For development: `instrument(console=True)` or `OTEL_LLM_USAGE_CONSOLE=1`. Lines go through the
`otel_llm_usage.console` logger, so an application can route or silence them; a stderr handler is
added only when that logger has none. When console mode is off no listener exists, so the call
path pays nothing for it.
"""

from __future__ import annotations

import atexit
import logging
import sys
from typing import TYPE_CHECKING, Any, TextIO

from . import _fork, active
from . import semconv as sc
from ._guard import report
from .rollup.run import RUN

if TYPE_CHECKING:
    from .listener import EndedCall
    from .recorder import CallRequest
    from .usage import TokenUsage

LOGGER_NAME = "otel_llm_usage.console"
log = logging.getLogger(LOGGER_NAME)


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to the `sys.stderr` of the moment, as `logging.lastResort` does: a stream replaced
    after instrument() (a test runner's capture, a redirect) still gets the lines."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def usd(value: float) -> str:
    """A cost with the digits that matter: $0.0000072, $0.0125, $1.50."""
    if value == 0:
        return "$0"
    if abs(value) >= 1:
        return f"${value:.2f}"
    return "$" + f"{value:.8f}".rstrip("0").rstrip(".")


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def tokens_text(usage: TokenUsage) -> str:
    return f"in {usage.input} (cached {usage.cache_read}) · out {usage.output} (reasoning {usage.reasoning})"


def line(call: EndedCall, run_name: str | None) -> str:
    """The console line of one call (pure: the test of the format needs no call)."""
    attrs = call.attributes
    parts = [f"{attrs.get(sc.PROVIDER_NAME, '?')} {attrs.get(sc.OPERATION_NAME, 'call')} {call.model}"]
    if call.usage is None:
        parts.append("no usage")
    else:
        parts.append(tokens_text(call.usage))
        parts.append(usd(call.cost_usd) if call.cost_usd is not None else "unpriced")
    latency = seconds(max(0, call.end_ns - call.start_ns) / 1e9)
    if attrs.get(sc.REQUEST_STREAM) and call.first_output_ns is not None:
        latency += f" (first chunk {seconds(max(0, call.first_output_ns - call.start_ns) / 1e9)})"
    parts.append(latency)
    where = []
    if run_name is not None:
        where.append(f"run {run_name}")
    if call.agent:
        where.append(f"agent {call.agent}")
    if call.session_id:
        where.append(f"session {call.session_id}")
    if where:
        parts.append(", ".join(where))
    if call.error:
        parts.append("error")
    return "otel-llm-usage: " + " | ".join(parts)


class ConsoleListener:
    """The recorder's call listener of console mode."""

    def call_starting(self, req: CallRequest, attributes: dict[str, Any], check_budgets: bool) -> object:
        rollup = active.current_rollup()
        run = rollup.current_run() if rollup is not None else None
        return run.name if run is not None and run.kind == RUN else None

    def call_ended(self, call: EndedCall, state: object) -> None:
        log.info("%s", line(call, state if isinstance(state, str) else None))


_lock = _fork.lock()
_at_exit_registered = False
_enabled = False


def enable() -> ConsoleListener:
    """Set up the logger (once) and the summary at exit (once); return a listener to add."""
    global _at_exit_registered, _enabled
    with _lock:
        _enabled = True
        if not log.handlers:
            log.addHandler(_StderrHandler())
            log.propagate = False  # the root logger's handlers would print every line again
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)
        if not _at_exit_registered:
            atexit.register(print_summary)
            _at_exit_registered = True
    return ConsoleListener()


def disable() -> None:
    """No summary at exit unless console mode is enabled again."""
    global _enabled
    _enabled = False


def print_summary() -> None:
    """The usage summary table, once, when console mode is on and a call was made."""
    global _enabled
    if not _enabled:
        return
    _enabled = False
    try:
        rollup = active.current_rollup()
        if rollup is None:
            return
        summary = rollup.summary()
        if summary.total.requests:
            log.info("otel-llm-usage: usage of this process\n%s", summary.table())
    except Exception as exc:
        report("console.print_summary", exc)
