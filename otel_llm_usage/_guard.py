"""Errors inside the instrumentation are caught here and logged once per site.

The host application must never see an exception of ours, and a broken hook must not flood the
log on every call, so each site logs its first failure with a traceback and then stays quiet.
Bad values from the wire or the environment get one warning per kind (`warn_once`) for the same
reason.
"""

from __future__ import annotations

import logging

from . import _fork

log = logging.getLogger("otel_llm_usage")

_logged: set[str] = set()
_lock = _fork.lock()


def _first(site: str) -> bool:
    with _lock:
        if site in _logged:
            return False
        _logged.add(site)
        return True


def report(site: str, exc: BaseException) -> None:
    if _first(site):
        log.warning(
            "otel-llm-usage: internal error in %s (further errors here are not logged)", site, exc_info=exc
        )


def warn_once(site: str, message: str, *args: object) -> None:
    """Log `message` the first time `site` (a fixed name, never a value from outside) warns."""
    if _first(site):
        log.warning(message, *args)


def reported_sites() -> frozenset[str]:
    with _lock:
        return frozenset(_logged)
