"""`record_call()`: record a call that no patched library made (a gateway, a batch result file).

The call becomes the same CLIENT span, with the same metrics and rollups, as an instrumented one.
Input is validated strictly: this is the user's own call, so a clear `ValueError` beats a silent
fix, and nothing is recorded from bad input.
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Any, overload

from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from . import active
from . import semconv as sc
from .instrumentor import active_instrumentor
from .recorder import CallRequest, CallResult, LLMCall, Recorder
from .usage import MAX_TOKEN_COUNT, TokenUsage

# Attributes the recorder derives from record_call()'s own arguments, or that feed the metrics and
# the rollups: a user's value would contradict what is counted.
RESERVED_PREFIXES = ("llm_usage.", "gen_ai.usage.")
RESERVED_ATTRIBUTES = frozenset(
    {
        sc.OPERATION_NAME,
        sc.PROVIDER_NAME,
        sc.REQUEST_MODEL,
        sc.REQUEST_STREAM,
        sc.RESPONSE_MODEL,
        sc.RESPONSE_TIME_TO_FIRST_CHUNK,
        sc.ERROR_TYPE,
        sc.AGENT_NAME,
        sc.CONVERSATION_ID,
        sc.SESSION_ID,
        sc.USER_ID,
    }
)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    if value > MAX_TOKEN_COUNT:
        raise ValueError(f"{name} must be at most {MAX_TOKEN_COUNT} (one call's tokens), not {value!r}")
    return value


def _non_negative(value: object) -> float | None:
    """The value as a finite float >= 0, or None (an int too large for a float is not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds(name: str, value: object) -> float | None:
    if value is None:
        return None
    seconds = _non_negative(value)
    if seconds is None:
        raise ValueError(f"{name} must be a finite, non-negative number of seconds, not {value!r}")
    if seconds > time.time():
        raise ValueError(f"{name} ({value!r}) reaches back before 1970; give the call's duration in seconds")
    return seconds


def _attributes(attributes: object) -> dict[str, Any]:
    if attributes is None:
        return {}
    if not isinstance(attributes, dict):
        raise ValueError(f"attributes must be a dict of attribute name to value, not {attributes!r}")
    for key in attributes:
        if not isinstance(key, str) or not key:
            raise ValueError(f"attributes: names must be non-empty strings, not {key!r}")
        if key in RESERVED_ATTRIBUTES or key.startswith(RESERVED_PREFIXES):
            raise ValueError(
                f"attributes: {key!r} is set by the package from record_call()'s own arguments "
                f"(reserved: {', '.join(RESERVED_PREFIXES)}* and {sorted(RESERVED_ATTRIBUTES)})"
            )
        values = attributes[key] if isinstance(attributes[key], list | tuple) else (attributes[key],)
        for value in values:
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise ValueError(f"attributes: {key!r} = {value!r} does not fit OTLP's 64-bit integers")
    return dict(attributes)


def ledger(
    input_tokens: object,
    output_tokens: object,
    cache_read_tokens: object = 0,
    cache_write_tokens: object = 0,
    reasoning_tokens: object = 0,
) -> TokenUsage:
    """A ledger from semantic-convention counts (input includes cache), or ValueError naming the bad one."""
    inp = _count("input_tokens", input_tokens)
    out = _count("output_tokens", output_tokens)
    cr = _count("cache_read_tokens", cache_read_tokens)
    cw = _count("cache_write_tokens", cache_write_tokens)
    rs = _count("reasoning_tokens", reasoning_tokens)
    if cr + cw > inp:
        raise ValueError(
            f"cache_read_tokens + cache_write_tokens ({cr} + {cw}) exceed input_tokens ({inp}); "
            "input_tokens is the total input including cache"
        )
    if rs > out:
        raise ValueError(f"reasoning_tokens ({rs}) exceed output_tokens ({out}); output includes reasoning")
    return TokenUsage(input=inp, output=out, cache_read=cr, cache_write=cw, reasoning=rs)


def _recorder() -> Recorder:
    inst = active_instrumentor()
    if inst is None or inst.recorder is None:
        raise RuntimeError("record_call() needs otel_llm_usage.instrument() to have been called")
    return inst.recorder


def _request(
    model: object, provider: object, operation: str, attributes: dict[str, Any] | None
) -> CallRequest:
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"model must be a non-empty string, not {model!r}")
    if not isinstance(provider, str) or not provider.strip():
        raise ValueError(f"provider must be a non-empty string, not {provider!r}")
    if not isinstance(operation, str) or not operation:
        raise ValueError(f"operation must be a non-empty string, not {operation!r}")
    attrs = _attributes(attributes)
    return CallRequest(operation=operation, provider=provider, model=model, attributes=attrs)


class ManualCall:
    """Times a call made inside `with record_call(model=..., provider=...) as call:`."""

    def __init__(self, req: CallRequest, agent: str | None, cost_usd: float | None) -> None:
        self._req = req
        self._agent = agent
        self._cost = cost_usd
        self._usage: TokenUsage | None = None
        self._response_model: str | None = None
        self._call: LLMCall | None = None
        self._agent_token: Any = None

    def set_usage(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
        response_model: str | None = None,
        cost_usd: float | None = None,
    ) -> None:
        self._usage = ledger(
            input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens
        )
        self._response_model = response_model
        if cost_usd is not None:
            self._cost = _cost(cost_usd)

    def __enter__(self) -> ManualCall:
        rec = _recorder()
        if not is_instrumentation_enabled():  # suppress_instrumentation(): time nothing, record nothing
            return self
        token = _enter_agent(self._agent)
        try:
            self._call = rec.start(self._req)
        except BaseException:
            _exit_agent(token)  # refused (a budget): __exit__ will not run, so leave nothing set
            raise
        self._agent_token = token
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            call = self._call
            if call is None:
                return
            result = CallResult(
                response_model=self._response_model, usage=self._usage, provider_cost=self._cost
            )
            if exc is not None:
                call.fail(exc, result)
            else:
                call.finish(result)
        finally:
            token, self._agent_token = self._agent_token, None
            _exit_agent(token)


def _cost(value: object) -> float:
    cost = _non_negative(value)
    if cost is None:
        raise ValueError(f"cost_usd must be a finite, non-negative number, not {value!r}")
    return cost


def _enter_agent(agent: str | None) -> Any:
    if agent is None:
        return None
    from dataclasses import replace

    from .context import current_attribution

    return current_attribution.set(replace(current_attribution.get(), agent=agent))


def _exit_agent(token: Any) -> None:
    if token is not None:
        from .context import current_attribution

        current_attribution.reset(token)


@overload
def record_call(
    *, model: str, provider: str, input_tokens: int, output_tokens: int, cache_read_tokens: int = ...,
    cache_write_tokens: int = ..., reasoning_tokens: int = ..., agent: str | None = ..., operation: str = ...,
    duration_s: float | None = ..., time_to_first_chunk_s: float | None = ..., cost_usd: float | None = ...,
    error_type: str | None = ..., attributes: dict[str, Any] | None = ..., response_model: str | None = ...,
) -> None: ...  # fmt: skip


@overload
def record_call(
    *, model: str, provider: str, agent: str | None = ..., operation: str = ...,
    cost_usd: float | None = ..., attributes: dict[str, Any] | None = ...,
) -> ManualCall: ...  # fmt: skip


def record_call(
    *,
    model: str,
    provider: str,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
    reasoning_tokens: int = 0,
    agent: str | None = None,
    operation: str = sc.OP_CHAT,
    duration_s: float | None = None,
    time_to_first_chunk_s: float | None = None,
    cost_usd: float | None = None,
    error_type: str | None = None,
    attributes: dict[str, Any] | None = None,
    response_model: str | None = None,
) -> ManualCall | None:
    """Record one LLM call made outside any patched library.

    With `input_tokens` and `output_tokens`, the call is recorded now (ending now, lasting
    `duration_s`). Without them, returns a context manager that times the block:
    `with record_call(model=..., provider=...) as call: ...; call.set_usage(...)`.
    `input_tokens` is the total input INCLUDING cache reads and writes, as in the semantic
    conventions; `output_tokens` includes reasoning.

    Recorded now, the call is counted first; then, if a `raise` budget of its run, session or the
    process is over its limit, `BudgetExceeded` is raised (the context-manager form is refused at
    entry instead, like a patched client's call).
    """
    req = _request(model, provider, operation, attributes)
    cost = _cost(cost_usd) if cost_usd is not None else None
    if input_tokens is None and output_tokens is None:
        for name, value in (("duration_s", duration_s), ("time_to_first_chunk_s", time_to_first_chunk_s)):
            if value is not None:
                raise ValueError(
                    f"{name} is measured by the context manager; give it only with the token counts"
                )
        return ManualCall(req, agent, cost)
    if input_tokens is None or output_tokens is None:
        raise ValueError("input_tokens and output_tokens must be given together")
    tokens = ledger(input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens)
    duration = _seconds("duration_s", duration_s) or 0.0
    ttfc = _seconds("time_to_first_chunk_s", time_to_first_chunk_s)
    if ttfc is not None and ttfc > duration:
        raise ValueError(f"time_to_first_chunk_s ({ttfc}) exceeds duration_s ({duration})")
    if error_type is not None and (not isinstance(error_type, str) or not error_type):
        raise ValueError(f"error_type must be a non-empty string, not {error_type!r}")
    rec = _recorder()
    if not is_instrumentation_enabled():  # inside suppress_instrumentation(): validated, not recorded
        return None
    req.stream = ttfc is not None
    token = _enter_agent(agent)
    refusal = None
    try:
        end_ns = time.time_ns()
        call = rec.start(req, start_time_ns=end_ns - int(duration * 1e9), check_budgets=False)
        call.end_time_ns = end_ns
        call.t0 = time.perf_counter() - duration
        if ttfc is not None:
            call.chunks = 1
            call.t_first = call.t_last = call.t0 + ttfc
        result = CallResult(response_model=response_model, usage=tokens, provider_cost=cost)
        if error_type is not None:
            call.fail(error_type, result)
        else:
            call.finish(result)
        rollup = active.current_rollup()
        refusal = rollup.refusal_now() if rollup is not None else None
    finally:
        _exit_agent(token)
    if refusal is not None:
        raise refusal  # the call is recorded: a tracker recording after each call is stopped here
    return None
