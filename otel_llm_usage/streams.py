"""The one family of stream and raw-response proxies, with one idempotent finaliser.

The span of a streamed call ends exactly once, on whichever exit comes first: exhaustion, an
error while iterating (cancellation included), `close()`/`aclose()`, leaving `with`/`async with`,
the HTTP response being closed by an SDK helper that wraps the stream, or garbage collection
(deferred when the cycle collector is at work: see `_finalise`). Per-chunk work is a counter, a
clock read and the provider's O(1) accumulator.

A raw response (`with_raw_response` of a stream, `with_streaming_response`) ends its call when it
is parsed (a stream then takes over), read, closed or collected.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol

from ._finalise import arm, finalise
from ._guard import report
from ._proxy import ObjectProxy
from .context import in_llm_call
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


def end(call: LLMCall, acc: Accumulator | None, exhausted: bool = False) -> None:
    """End a stream's call with what its chunks said so far (idempotent)."""
    if not call.done:
        if acc is None:
            call.finish(None, incomplete=True)
        else:
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
            end(self._self_call, self._self_acc)

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            end(self._self_call, self._self_acc)


class SyncStreamProxy(ObjectProxy):
    """`sends`: the stream is a generator whose first step sends the request (google-genai), so that
    step runs with the span current and inner clients silent, as `send` does for a plain call."""

    def __init__(self, wrapped: Any, call: LLMCall, acc: Accumulator, sends: bool = False) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_acc = acc
        self._self_sends = sends
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
            if self._self_sends:
                return self._self_first()
        while True:
            try:
                chunk = nxt()
            except StopIteration:
                end(call, acc, True)
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

    def _self_first(self) -> Any:
        call = self._self_call
        token = in_llm_call.set(True)
        call.activate()
        try:
            return self.__next__()
        finally:
            call.deactivate()
            in_llm_call.reset(token)

    def _self_end(self) -> None:
        """End the call without closing the stream (its owner closes it)."""
        end(self._self_call, self._self_acc)

    @property
    def response(self) -> Any:
        return _ResponseProxy(self.__wrapped__.response, self._self_call, self._self_acc)

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            end(self._self_call, self._self_acc)

    def __enter__(self) -> SyncStreamProxy:
        self.__wrapped__.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(*exc_info)
        finally:
            end(self._self_call, self._self_acc)

    def __del__(self) -> None:
        try:
            finalise(end, self._self_call, self._self_acc)
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

    def _self_end(self) -> None:
        """End the call without closing the stream (its owner closes it)."""
        end(self._self_call, self._self_acc)

    async def __anext__(self) -> Any:
        call, acc = self._self_call, self._self_acc
        while True:
            try:
                chunk = await self.__wrapped__.__anext__()
            except StopAsyncIteration:
                end(call, acc, True)
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
            end(self._self_call, self._self_acc)

    async def aclose(self) -> Any:
        try:
            return await self.__wrapped__.aclose()
        finally:
            end(self._self_call, self._self_acc)

    async def __aenter__(self) -> AsyncStreamProxy:
        await self.__wrapped__.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc_info)
        finally:
            end(self._self_call, self._self_acc)

    def __del__(self) -> None:
        try:
            finalise(end, self._self_call, self._self_acc)
        except Exception:
            pass


class RawResponseProxy(ObjectProxy):
    """A raw response whose body is read later: `wrap(parsed)` turns what `parse()` returns into
    what the caller gets (a stream proxy, or the object after ending the call from it); `finish(raw)`
    ends the call from the body if it was read, else as incomplete. Both are the provider's."""

    def __init__(
        self,
        wrapped: Any,
        site: str,
        wrap: Callable[[Any], Any],
        finish: Callable[[Any], None],
    ) -> None:
        super().__init__(wrapped)
        self._self_site = site
        self._self_wrap = wrap
        self._self_finish = finish
        self._self_parsed: Any = None
        arm()

    def _self_wrapped(self, parsed: Any) -> Any:
        if self._self_parsed is None:
            try:
                self._self_parsed = self._self_wrap(parsed)
            except Exception as exc:
                report(f"{self._self_site}.raw_parse", exc)
                self._self_parsed = parsed
        return self._self_parsed

    def _self_end(self) -> None:
        try:
            self._self_finish(self.__wrapped__)
        except Exception as exc:
            report(f"{self._self_site}.raw_end", exc)

    def _self_parsed_as(self, parsed: Any, typed: bool) -> Any:
        if typed:  # parsed into the caller's own type: the usage is read from the body instead
            self._self_end()
            return parsed
        return self._self_wrapped(parsed)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._self_parsed_as(self.__wrapped__.parse(*args, **kwargs), bool(args or kwargs))

    def read(self) -> Any:
        data = self.__wrapped__.read()
        self._self_end()
        return data

    def json(self) -> Any:
        data = self.__wrapped__.json()
        self._self_end()
        return data

    def text(self) -> Any:
        data = self.__wrapped__.text()
        self._self_end()
        return data

    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end()

    def __del__(self) -> None:
        try:
            finalise(self._self_end)
        except Exception:
            pass


class AsyncRawResponseProxy(RawResponseProxy):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self._self_parsed_as(await self.__wrapped__.parse(*args, **kwargs), bool(args or kwargs))

    async def read(self) -> Any:  # type: ignore[override]
        data = await self.__wrapped__.read()
        self._self_end()
        return data

    async def json(self) -> Any:  # type: ignore[override]
        data = await self.__wrapped__.json()
        self._self_end()
        return data

    async def text(self) -> Any:  # type: ignore[override]
        data = await self.__wrapped__.text()
        self._self_end()
        return data

    async def close(self) -> Any:  # type: ignore[override]
        try:
            return await self.__wrapped__.close()
        finally:
            self._self_end()
