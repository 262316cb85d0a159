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

# Weak references to every lock made by `lock()`; a reference removes itself when its lock dies.
# A plain set of refs costs a third of a WeakSet per lock, and a `Usage` ledger makes one.
_locks: set[weakref.ref[Any]] = set()
_callbacks: list[Callable[[], None]] = []


def lock() -> threading.Lock:
    """A plain `threading.Lock` (no cost when taken) that a forked child gets released."""
    new = threading.Lock()
    _locks.add(weakref.ref(new, _locks.discard))
    return new


def on_fork_in_child(fn: Callable[[], None]) -> None:
    """Run `fn` in every child forked from now on, before the child runs any code of its own."""
    _callbacks.append(fn)


def _reinit_in_child() -> None:
    for ref in list(_locks):
        held = ref()
        if held is not None:
            held._at_fork_reinit()  # what the standard library does for its own locks
    for fn in list(_callbacks):
        try:
            fn()
        except Exception:  # a child must start even if one module's reset fails
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_in_child)
