"""Errors inside the instrumentation are caught here and logged once per site.

The host application must never see an exception of ours, and a broken hook must not flood the
log on every call, so each site logs its first failure with a traceback and then stays quiet.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("otel_llm_usage")

_logged: set[str] = set()
_lock = threading.Lock()


def report(site: str, exc: BaseException) -> None:
    with _lock:
        if site in _logged:
            return
        _logged.add(site)
    log.warning(
        "otel-llm-usage: internal error in %s (further errors here are not logged)", site, exc_info=exc
    )


def reported_sites() -> frozenset[str]:
    with _lock:
        return frozenset(_logged)
