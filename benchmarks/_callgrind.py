"""Counting instructions under callgrind: repeatable figures on a machine shared with other jobs.

A worker run as `valgrind --tool=callgrind --dump-before=getsid [--instr-atstart=no] ...` calls
`start_instrumentation()` once its imports and warm-up are done, then brackets each block of calls
with `marker()`: callgrind writes one dump per marker, and `callgrind_totals` reads a dump's count.
"""

from __future__ import annotations

import gc
import os
import platform

# Only x86-64 can switch instrumentation on from inside the program; elsewhere it runs from the start.
VALGRIND_ARGS: tuple[str, ...] = (
    "--tool=callgrind",
    "--dump-before=getsid",
    *(("--instr-atstart=no",) if platform.machine() == "x86_64" else ()),
)


def marker() -> None:
    """callgrind runs with --dump-before=getsid: each call writes the counts since the last one."""
    os.getsid(0)


# Valgrind's client request on x86-64, as valgrind.h emits it: the argument block's address in rax,
# the magic rotate sequence, `xchg rbx, rbx`; the answer comes back in rdx (0 when not under valgrind).
CLIENT_REQUEST_X86_64 = bytes.fromhex("4889f8 31d2 48c1c703 48c1c70d 48c1c73d 48c1c733 4887db 4889d0 c3")
CALLGRIND_START_INSTRUMENTATION = 0x43540004  # VG_USERREQ_TOOL_BASE('C', 'T') + 4, callgrind.h


def start_instrumentation() -> None:
    """Has callgrind start instrumenting here: imports and warm-up ran at native-like speed
    (--instr-atstart=no). Only on x86-64; elsewhere the parent instruments from the start."""
    import ctypes
    import mmap

    if platform.machine() != "x86_64":
        return
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(CLIENT_REQUEST_X86_64)
    request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(
        ctypes.addressof(ctypes.c_char.from_buffer(page))
    )
    block = (ctypes.c_uint64 * 6)(CALLGRIND_START_INSTRUMENTATION, 0, 0, 0, 0, 0)
    request(ctypes.addressof(block))


def settle_heap() -> None:
    """Collect, then freeze what survives: a full collection's cost depends on the size of the heap
    (all the imported modules), and where one falls would otherwise decide the count of a block."""
    gc.collect()
    gc.freeze()


def callgrind_totals(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")
