"""Calls that end without usage: why, what to do about it, and one warning per endpoint.

Such a call is billed by the provider but shows no tokens and no cost here. It is counted
(`llm_usage.requests.usage_missing`, the `usage_missing_requests` of every ledger) and, the first
time an endpoint does it, a warning names the host, the likely cause and the remedy.
"""

from __future__ import annotations

import logging

from . import _fork

log = logging.getLogger("otel_llm_usage")

# Hosts warned about; past this many, no further warnings (the counter still counts every call).
MAX_WARNED_HOSTS = 1000
UNKNOWN_HOST = "an endpoint of unknown address"


def cause_and_remedy(*, stream: bool, usage_requested: bool, incomplete: bool) -> str:
    """Why a call that did not fail carried no usage, and how to get it."""
    if stream and incomplete:
        return (
            "the stream was closed before its end, and the usage comes with the last chunk; "
            "read streams to the end (or close them only after the last chunk) to count their tokens"
        )
    if stream and usage_requested:
        return (
            "the server did not send usage although stream_options.include_usage was requested; "
            "the server or a proxy in front of it drops it: configure it to pass usage through"
        )
    if stream:
        return (
            "the server sent no usage with the stream; for an OpenAI-compatible server ask for it with "
            "stream_options={'include_usage': True} on the call, or OTEL_LLM_USAGE_STREAM_USAGE=always "
            "(instrument(stream_usage='always')); if it was asked for, the server or a proxy drops it"
        )
    return (
        "the response carried no usage (or, for `with record_call(...) as call:`, call.set_usage() "
        "was not called); check that the server (or a proxy in front of it) returns the usage field, "
        "or record the counts yourself with record_call()"
    )


class MissingUsageWarnings:
    """One warning per endpoint host, for the life of one `instrument()`."""

    __slots__ = ("_lock", "_warned")

    def __init__(self) -> None:
        self._warned: set[str] = set()
        self._lock = _fork.lock()

    def warn_once(
        self,
        host: str | None,
        provider: str,
        model: str | None,
        *,
        stream: bool,
        usage_requested: bool,
        incomplete: bool,
    ) -> None:
        """Warn about the first call of an endpoint that ended without usage."""
        where = host or UNKNOWN_HOST
        with self._lock:
            if where in self._warned or len(self._warned) >= MAX_WARNED_HOSTS:
                return
            self._warned.add(where)
        log.warning(
            "otel-llm-usage: a call to %s (provider %s%s) ended without usage, so its tokens and cost "
            "are not counted (llm_usage.requests.usage_missing counts such calls): %s",
            where,
            provider,
            f", model {model}" if model else "",
            cause_and_remedy(stream=stream, usage_requested=usage_requested, incomplete=incomplete),
        )
