"""Loopback HTTP/1.1 server shared by the provider wire-format emulators.

A provider emulator subclasses :class:`EmulatorServer` and implements :meth:`EmulatorServer.handle`,
answering through the :class:`Exchange` it receives. The base class owns the socket, the serving
thread, request recording and the plumbing for JSON bodies and chunked event streams.

:meth:`EmulatorServer.transport` hands the same handler code to an HTTP client without a socket,
for runs of many calls where loopback HTTP would dominate the cost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType, TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

__all__ = ["EmulatorServer", "Exchange", "InProcessTransport", "RecordedRequest", "ReplyQueue", "iter_pieces"]

_T = TypeVar("_T")

# Bounds how long stop() waits for handler threads that are mid-write to a slow client.
_STOP_JOIN_TIMEOUT_S = 2.0
# serve_forever() only notices shutdown() between polls, so this bounds stop() latency.
_POLL_INTERVAL_S = 0.05


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes = b""


def compact_json(payload: object) -> str:
    """JSON as the providers send it: no spaces, non-ASCII kept."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def raw_count(value: object) -> int:
    """A token count from a scripted raw usage: a non-negative int, anything else counts 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


class ReplyQueue(Generic[_T]):
    """Thread-safe FIFO of scripted replies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: deque[_T] = deque()

    def push(self, *items: _T) -> None:
        with self._lock:
            self._items.extend(items)

    def pop(self) -> _T | None:
        with self._lock:
            return self._items.popleft() if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class Exchange:
    """The response side of one request, handed to :meth:`EmulatorServer.handle`.

    Every write method returns ``False`` once the client has gone away; callers stop producing
    output at that point instead of raising, so an aborted client never kills a server thread.
    """

    def __init__(self, handler: _Handler, request: RecordedRequest, stopping: threading.Event) -> None:
        self._handler = handler
        self._stopping = stopping
        self.request = request
        self.started = False
        self.alive = True
        self._stream_open = False

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; returns ``False`` early when the server is stopping."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def _start(self, status: int, headers: Mapping[str, str]) -> bool:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        handler = self._handler
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
        except OSError:
            return self._lost()
        return True

    def _write(self, data: bytes) -> bool:
        if not self.alive:
            return False
        try:
            self._handler.wfile.write(data)
        except OSError:
            return self._lost()
        return True

    def _lost(self) -> bool:
        self.alive = False
        self._handler.close_connection = True
        return False

    def send_bytes(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        all_headers.update(headers or {})
        return self._start(status, all_headers) and self._write(body)

    def send_json(
        self,
        status: int,
        payload: object,
        headers: Mapping[str, str] | None = None,
        *,
        indent: int | None = 2,
    ) -> bool:
        body = json.dumps(payload, indent=indent, ensure_ascii=False).encode("utf-8")
        return self.send_bytes(status, body, "application/json", headers)

    def start_stream(
        self,
        status: int = 200,
        content_type: str = "text/event-stream; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> bool:
        """Start a chunked response, so a stream cut short is distinguishable from a finished one."""
        all_headers = {
            "Content-Type": content_type,
            "Transfer-Encoding": "chunked",
            "Cache-Control": "no-cache",
        }
        all_headers.update(headers or {})
        self._stream_open = True
        return self._start(status, all_headers)

    def write_chunk(self, data: bytes) -> bool:
        if not data:
            # An empty frame would read as the end of the body.
            return self.alive
        return self._write(b"%x\r\n%s\r\n" % (len(data), data))

    def write_sse(self, data: str, event: str | None = None) -> bool:
        frame = f"event: {event}\ndata: {data}\n\n" if event is not None else f"data: {data}\n\n"
        return self.write_chunk(frame.encode("utf-8"))

    def end_stream(self) -> bool:
        if not self._stream_open:
            return self.alive
        self._stream_open = False
        return self._write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Drop the connection mid-response, without the terminating chunk."""
        self._handler.close_connection = True
        self.alive = False
        self._stream_open = False
        with contextlib.suppress(OSError):
            self._handler.connection.shutdown(socket.SHUT_WR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; with Nagle on, the body waits for the
        # client's delayed ACK and every response gains ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._register(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.owner._unregister(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    break
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._read_body()
        except (OSError, ValueError):
            self.close_connection = True
            return
        request = _recorded_request(self.command, self.path, self.headers.items(), body)
        owner._serve(Exchange(self, request, owner._stopping))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def do_HEAD(self) -> None:
        self._read_body()
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _recorded_request(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
) -> RecordedRequest:
    split = urlsplit(target)
    parsed: Any = None
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
    return RecordedRequest(
        method=method,
        path=split.path,
        query=dict(parse_qsl(split.query, keep_blank_values=True)),
        headers={name.lower(): value for name, value in headers},
        json=parsed,
        body=body,
    )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Many client threads connect at once in concurrency tests; the default backlog of 5 resets some.
    request_queue_size = 256
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: EmulatorServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that vanish mid-request are routine in fault tests; anything else is a real bug.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class EmulatorServer:
    """Threaded HTTP/1.1 server on a loopback port, served from a daemon thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Subclasses implement
    :meth:`handle`.
    """

    # How many of the latest requests `requests` keeps (None: all). Long runs bound it.
    keep_requests: int | None = None

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque()
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, exchange: Exchange) -> None:
        exchange.send_json(404, {"error": {"message": f"no route for {exchange.request.path}"}})

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        httpd = self._httpd
        if httpd is None:
            raise RuntimeError("emulator is not running; call start() first")
        return int(httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _HTTPServer((self._host, self._requested_port), self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=f"{type(self).__name__}:{httpd.server_address[1]}",
            daemon=True,
        )
        self._httpd = httpd
        self._thread = thread
        thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        # Idle keep-alive connections park their handler thread in a blocking read; shutting the
        # sockets down wakes those threads so they exit instead of outliving the server.
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_JOIN_TIMEOUT_S
        for worker in [*threads, *([thread] if thread is not None else [])]:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, exchange: Exchange) -> None:
        """Record the exchange's request and answer it, whichever way it arrived."""
        self._record(exchange.request)
        try:
            self.handle(exchange)
        except Exception:
            # A bug in an emulator must surface in the test output, not as a hung client.
            traceback.print_exc(file=sys.stderr)
            if not exchange.started:
                exchange.send_json(500, {"error": {"message": "emulator failure", "type": "server_error"}})
            else:
                exchange.abort()
            return
        if not exchange.started:
            exchange.send_bytes(204, b"", "text/plain")
        else:
            # A handler that forgot to finish its stream would leave the client waiting forever.
            exchange.end_stream()

    def transport(self, httpx_module: ModuleType) -> InProcessTransport:
        """An in-process transport for an ``httpx.Client`` (or ``httpx2.Client``) of this emulator.

        ``httpx_module`` is the HTTP library the SDK sends through (``httpx`` or ``httpx2``); see
        :class:`InProcessTransport`. The server need not be started.
        """
        return InProcessTransport(self, httpx_module)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            requests = self._requests
            requests.append(request)
            keep = self.keep_requests
            while keep is not None and len(requests) > keep:
                requests.popleft()

    def _register(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.add(conn)
            self._threads.add(threading.current_thread())

    def _unregister(self, conn: socket.socket) -> None:
        with self._lock:
            self._connections.discard(conn)
            self._threads.discard(threading.current_thread())


class _BufferedExchange(Exchange):
    """An exchange kept in memory: the status, the headers and the body in the pieces written."""

    def __init__(self, request: RecordedRequest, stopping: threading.Event) -> None:
        self._stopping = stopping
        self.request = request
        self.started = False
        self.alive = True
        self._stream_open = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.pieces: list[bytes] = []
        self.cut = False

    def _start(self, status: int, headers: Mapping[str, str]) -> bool:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        self.status = status
        self.headers = list(headers.items())
        return True

    def _write(self, data: bytes) -> bool:
        if self.alive:
            self.pieces.append(data)
        return self.alive

    def _lost(self) -> bool:
        self.alive = False
        return False

    def write_chunk(self, data: bytes) -> bool:
        # Chunked framing belongs to the socket: an HTTP client hands on the chunk's bytes alone.
        return self._write(data) if data else self.alive

    def end_stream(self) -> bool:
        self._stream_open = False
        return self.alive

    def abort(self) -> None:
        self.alive = False
        self.cut = True
        self._stream_open = False


class InProcessTransport:
    """An ``httpx`` / ``httpx2`` transport answering through an emulator's handler, without a socket.

    Each request goes to the same handler code as over HTTP, in the calling thread, so the SDK parses
    the emulator's exact bytes (event streams included, one piece per event) at a fraction of the
    cost of loopback HTTP. A response the emulator cut short raises the library's
    ``RemoteProtocolError`` once its last byte is read, as a dropped connection does. The response is
    complete before the client reads any of it: ``delay_s`` blocks the caller, and a reply that waits
    for the client (``gate``) needs the loopback server. Closing the transport ends pending waits.
    """

    def __init__(self, server: EmulatorServer, httpx_module: ModuleType) -> None:
        self._server = server
        self._httpx = httpx_module
        self._closed = threading.Event()

    def _serve(self, request: Any, body: bytes) -> _BufferedExchange:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        target = request.url.raw_path.decode("ascii")
        exchange = _BufferedExchange(_recorded_request(request.method, target, headers, body), self._closed)
        self._server._serve(exchange)
        if not exchange.started:
            raise self._httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return exchange

    def _cut(self) -> Exception:
        message = "peer closed connection without sending complete message body (incomplete chunked read)"
        error: Exception = self._httpx.RemoteProtocolError(message)
        return error

    def _pieces(self, exchange: _BufferedExchange) -> Iterator[bytes]:
        yield from exchange.pieces
        if exchange.cut:
            raise self._cut()

    async def _apieces(self, exchange: _BufferedExchange) -> AsyncIterator[bytes]:
        for piece in exchange.pieces:
            yield piece
        if exchange.cut:
            raise self._cut()

    def handle_request(self, request: Any) -> Any:
        exchange = self._serve(request, request.read())
        pieces = exchange.pieces
        content = self._pieces(exchange) if exchange.cut or len(pieces) > 1 else b"".join(pieces)
        return self._httpx.Response(exchange.status, headers=exchange.headers, content=content)

    async def handle_async_request(self, request: Any) -> Any:
        exchange = self._serve(request, await request.aread())
        pieces = exchange.pieces
        content = self._apieces(exchange) if exchange.cut or len(pieces) > 1 else b"".join(pieces)
        return self._httpx.Response(exchange.status, headers=exchange.headers, content=content)

    def close(self) -> None:
        self._closed.set()

    async def aclose(self) -> None:
        self._closed.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


def iter_pieces(text: str, count: int) -> Iterable[str]:
    """Split ``text`` into exactly ``count`` contiguous pieces (some empty when text is short)."""
    count = max(1, count)
    size = len(text)
    return (text[i * size // count : (i + 1) * size // count] for i in range(count))


_ReplyT = TypeVar("_ReplyT")
_ServedT = TypeVar("_ServedT")


class ScriptedEmulator(EmulatorServer, Generic[_ReplyT, _ServedT]):
    """An emulator answering from a queue of scripted replies and keeping totals of what it served."""

    def __init__(self, new_totals: Callable[[], _ServedT], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._replies: ReplyQueue[_ReplyT] = ReplyQueue()
        self._served_lock = threading.Lock()
        self._new_totals = new_totals
        self._served = new_totals()

    @property
    def served(self) -> _ServedT:
        """A consistent snapshot of the totals."""
        with self._served_lock:
            return dataclasses.replace(self._served)  # type: ignore[type-var]

    @property
    def pending(self) -> int:
        """Scripted replies not consumed yet."""
        return len(self._replies)

    def push(self, *replies: _ReplyT) -> None:
        self._replies.push(*replies)

    def reset(self) -> None:
        super().reset()
        self._replies.clear()
        with self._served_lock:
            self._served = self._new_totals()

    def _count_usage(self, tally: Any, sign: int) -> None:
        """Add (sign 1) or take back (sign -1) the usage a reply carries in the served totals."""
        raise NotImplementedError

    def _send_counted(self, tally: Any, send: Callable[[], bool]) -> bool:
        """Send usage-bearing bytes, counting them first: a client may read ``served`` as soon as it
        has the bytes, so counting afterwards would race with it. A failed write is uncounted."""
        if tally is not None:
            self._count_usage(tally, 1)
        sent = send()
        if not sent and tally is not None:
            self._count_usage(tally, -1)
        return sent
