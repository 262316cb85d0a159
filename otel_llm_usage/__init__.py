"""otel-llm-usage: exact LLM token usage and cost as OpenTelemetry spans and metrics.

`instrument()` patches every installed LLM client library. Importing this package imports no
client library.
"""

from .budgets import Budget, BudgetExceeded
from .instrumentor import LLMUsageInstrumentor, instrument, uninstrument
from .manual import ManualCall, record_call
from .pricing import ModelPrice
from .usage import TokenUsage, Usage
from .version import __version__

__all__ = [
    "Budget",
    "BudgetExceeded",
    "LLMUsageInstrumentor",
    "ManualCall",
    "ModelPrice",
    "TokenUsage",
    "Usage",
    "__version__",
    "instrument",
    "record_call",
    "uninstrument",
]
