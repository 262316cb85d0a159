"""`ObjectProxy`, the base of every proxy the package hands back, on wrapt 1.14+ and 2.x alike.

wrapt 2 makes `ObjectProxy` generic for type checkers, and subscripting it at run time fails on
wrapt 1 (which current OpenHands and older `opentelemetry-instrumentation` releases pin): the
subscripted form exists for mypy only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import wrapt

if TYPE_CHECKING:
    ObjectProxy = wrapt.ObjectProxy[Any]
else:
    ObjectProxy = wrapt.ObjectProxy

__all__ = ["ObjectProxy"]
