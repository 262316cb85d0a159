"""Fresh locks and per-process state in a forked child (gunicorn pre-fork, multiprocessing "fork").

`os.fork()` copies only the calling thread. A lock that another thread held at that moment stays
held in the child forever, and the child's first call that needs it hangs. Every lock of the
package is created by `lock()`, which remembers it (weakly) so the child can reinitialise them
all; modules with per-process state register a function with `on_fork_in_child`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

_locks: weakref.WeakSet[Any] = weakref.WeakSet()
_callbacks: list[Callable[[], None]] = []


def lock() -> threading.Lock:
    """A plain `threading.Lock` (no cost when taken) that a forked child gets released."""
    new = threading.Lock()
    _locks.add(new)
    return new


def on_fork_in_child(fn: Callable[[], None]) -> None:
    """Run `fn` in every child forked from now on, before the child runs any code of its own."""
    _callbacks.append(fn)


def _reinit_in_child() -> None:
    global _locks
    # The set itself may have been in the middle of an update in another thread: copy what it
    # holds and start a new one rather than trust its internal state.
    held = list(_locks.data)  # type: ignore[attr-defined]
    _locks = weakref.WeakSet()
    for ref in held:
        obj = ref()
        if obj is None:
            continue
        reinit = getattr(obj, "_at_fork_reinit", None)
        if reinit is not None:
            reinit()
        _locks.add(obj)
    for fn in list(_callbacks):
        try:
            fn()
        except Exception:  # a child must start even if one module's reset fails
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_in_child)
