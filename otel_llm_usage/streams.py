"""Stream proxies: the caller's stream, unchanged, with one idempotent finaliser.

The span of a streamed call ends exactly once, on whichever exit comes first: exhaustion, an
error while iterating (cancellation included), `close()`/`aclose()`, leaving `with`/`async with`,
the HTTP response being closed by an SDK helper that wraps the stream, or garbage collection.
Per-chunk work is a counter, a clock read and the provider's O(1) accumulator.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Protocol

from ._finalise import arm, finalise
from ._guard import report
from ._proxy import ObjectProxy
from .recorder import CallResult, LLMCall


class Accumulator(Protocol):
    """Reads a provider's chunks as they pass. `add` returns True to hide a chunk from the caller."""

    complete: bool

    def add(self, chunk: Any) -> bool: ...

    def result(self) -> CallResult: ...


def _result(acc: Accumulator) -> CallResult | None:
    try:
        return acc.result()
    except Exception as exc:
        report("stream.result", exc)
        return None


def _end(call: LLMCall, acc: Accumulator, exhausted: bool) -> None:
    if not call.done:
        call.finish(_result(acc), incomplete=not (exhausted or acc.complete))


class _ResponseProxy(ObjectProxy):
    """The HTTP response of a stream: closing it (as SDK helpers do) ends the call."""

    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_acc = acc

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            _end(self._self_call, self._self_acc, False)

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            _end(self._self_call, self._self_acc, False)


class SyncStreamProxy(ObjectProxy):
    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_acc = acc
        arm()
        self._self_next: Any = None

    def __iter__(self) -> SyncStreamProxy:
        return self

    # Runs once per chunk: bound methods are looked up once and the call's counters updated inline.
    def __next__(self) -> Any:
        call, acc = self._self_call, self._self_acc
        nxt = self._self_next
        if nxt is None:
            nxt = self._self_next = self.__wrapped__.__next__
        while True:
            try:
                chunk = nxt()
            except StopIteration:
                _end(call, acc, True)
                raise
            except BaseException as exc:
                call.fail(exc, _result(acc))
                raise
            try:
                hidden = acc.add(chunk)
            except Exception as exc:
                report("stream.chunk", exc)
                hidden = False
            if not hidden:
                now = perf_counter()
                if not call.chunks:
                    call.t_first = now
                call.t_last = now
                call.chunks += 1
                return chunk

    @property
    def response(self) -> Any:
        return _ResponseProxy(self.__wrapped__.response, self._self_call, self._self_acc)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            _end(self._self_call, self._self_acc, False)

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            _end(self._self_call, self._self_acc, False)

    def __del__(self) -> None:
        try:
            finalise(_end, self._self_call, self._self_acc, False)
        except Exception:
            pass


class AsyncStreamProxy(ObjectProxy):
    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_acc = acc
        arm()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        call, acc = self._self_call, self._self_acc
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                _end(call, acc, True)
                raise
            except BaseException as exc:
                call.fail(exc, _result(acc))
                raise
            try:
                hidden = acc.add(chunk)
            except Exception as exc:
                report("stream.chunk", exc)
                hidden = False
            if not hidden:
                now = perf_counter()
                if not call.chunks:
                    call.t_first = now
                call.t_last = now
                call.chunks += 1
                return chunk

    @property
    def response(self) -> Any:
        return _ResponseProxy(self.__wrapped__.response, self._self_call, self._self_acc)

    async def close(self) -> Any:
        try:
            return await self.__wrapped__.close()
        finally:
            _end(self._self_call, self._self_acc, False)

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            _end(self._self_call, self._self_acc, False)

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            _end(self._self_call, self._self_acc, False)

    def __del__(self) -> None:
        try:
            finalise(_end, self._self_call, self._self_acc, False)
        except Exception:
            pass
