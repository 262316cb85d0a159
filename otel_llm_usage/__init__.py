"""otel-llm-usage: exact LLM token usage and cost as OpenTelemetry spans and metrics.

`instrument()` patches every installed LLM client library. Importing this package imports no
client library.
"""

from .budgets import Budget, BudgetExceeded
from .instrumentor import LLMUsageInstrumentor, instrument, uninstrument
from .manual import ManualCall, record_call
from .pricing import ModelPrice
from .repricing import reload_prices, set_prices
from .rollup import Run
from .rollup.calls import CallLog, CallRecord
from .runs import close_session, current_run, run, session, session_calls, session_usage, usage_summary
from .summary import UsageRow, UsageSummary
from .usage import TokenUsage, Usage
from .version import __version__

__all__ = [
    "Budget",
    "BudgetExceeded",
    "CallLog",
    "CallRecord",
    "LLMUsageInstrumentor",
    "ManualCall",
    "ModelPrice",
    "Run",
    "TokenUsage",
    "Usage",
    "UsageRow",
    "UsageSummary",
    "__version__",
    "close_session",
    "current_run",
    "instrument",
    "record_call",
    "reload_prices",
    "run",
    "session",
    "session_calls",
    "session_usage",
    "set_prices",
    "uninstrument",
    "usage_summary",
]
