"""Ending calls and runs from `__del__` without ever blocking.

Ending a call takes the package's locks (the usage ledger, the session store, the pricer). The
cycle collector can run a finaliser at any allocation, including one made while this same thread
holds one of those locks: taking it again from `__del__` would wait forever. So a finaliser that
runs while the collector is at work only queues its work (`deque.append` takes no lock) and wakes
a daemon thread through a pipe (`os.write` takes none either); the queue is also drained when the
next call starts and at exit.

A finaliser run because the last reference was dropped (`del stream`, a frame returning) runs in
the code that dropped it: the caller's, never ours while it holds a lock (no locked region of the
package holds a stream), so that work is done at once and the span ends when the stream is dropped.
Any doubt errs towards deferring, which is always safe: the collector flag is process-wide, so a
thread that frees a stream while another collects defers too.
"""

from __future__ import annotations

import atexit
import gc
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ._guard import report

pending: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
_collecting = False


class _Drainer:
    """The daemon thread of this process and the pipe that wakes it."""

    def __init__(self) -> None:
        self.started = False
        self.wake_fd = -1

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)  # a full pipe means a wake-up is pending already
        threading.Thread(target=_serve, args=(read_fd,), name="otel-llm-usage-finaliser", daemon=True).start()
        self.wake_fd = write_fd
        self.started = True


_drainer = _Drainer()


def _on_gc(phase: str, info: dict[str, int]) -> None:
    global _collecting
    _collecting = phase == "start"


def arm() -> None:
    """Make deferred work possible in this process: called when a proxy is made, never from `__del__`."""
    if not _drainer.started:
        try:
            _drainer.start()
        except Exception as exc:  # no thread or pipe: the queue is still drained by the next call
            _drainer.started = True
            report("finaliser.start", exc)


def finalise(fn: Callable[..., Any], *args: Any) -> None:
    """From `__del__`: `fn(*args)` now if that cannot block, else queued for the drainer."""
    if not _collecting:
        fn(*args)
        return
    pending.append((fn, args))
    fd = _drainer.wake_fd
    if fd >= 0:
        try:
            os.write(fd, b"\0")
        except OSError:
            pass


def drain() -> None:
    """Run the queued work (each item once, whoever drains it). Cheap when the queue is empty."""
    while pending:
        try:
            fn, args = pending.popleft()
        except IndexError:  # another thread took the last one
            return
        try:
            fn(*args)
        except Exception as exc:
            report("finaliser.run", exc)


def _serve(read_fd: int) -> None:
    while True:
        try:
            os.read(read_fd, 512)
        except OSError:
            return
        drain()


def _after_fork_in_child() -> None:
    # The parent's queued calls are the parent's to end; the drainer thread did not survive the fork.
    global _drainer
    pending.clear()
    _drainer = _Drainer()


gc.callbacks.append(_on_gc)
os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(drain)
