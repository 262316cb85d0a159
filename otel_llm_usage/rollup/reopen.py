"""Writing attributes on an SDK span after it ended (from a processor's `_on_ending`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def write_after_end(span: Any, attrs: Mapping[str, Any]) -> bool:
    """Add attributes to an SDK span between its end and its export (`_on_ending`).

    The SDK freezes a span's attributes before it calls `_on_ending`; this reopens them for the
    one write. It relies on SDK internals and does nothing when they are not there.
    """
    bounded = getattr(span, "_attributes", None)
    lock = getattr(span, "_lock", None)
    if (
        bounded is None
        or lock is None
        or not hasattr(bounded, "_immutable")
        or not hasattr(bounded, "_set_items")
    ):
        return False
    with lock:
        frozen = bounded._immutable
        bounded._immutable = False
        try:
            bounded._set_items(attrs)
        finally:
            bounded._immutable = frozen
    return True
