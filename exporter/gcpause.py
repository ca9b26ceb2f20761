"""Pause the cyclic garbage collector around bulk work that builds only acyclic data (decoding, parsing, mapping),
and hand the memory of a large decoded document back to the system afterwards.

Decoding a large Horizon answer allocates hundreds of thousands of containers; with the collector on, every 700
of them start a collection and the older generations are scanned again and again, over a heap that is mostly
the exporter's own long-lived snapshot. JSON and the parsed readings hold no reference cycles, so nothing is lost
by collecting after instead of during (bench/fleet.py: json.loads of an 8 MB /api/masters takes about half the
time). Reference counting still frees garbage at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Iterator
from contextlib import contextmanager

try:  # glibc only (Debian, the image); elsewhere a no-op
    _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
except (OSError, AttributeError):
    _malloc_trim = None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the collector for the block (no await inside), restoring its previous state."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def release_memory() -> None:
    """Return freed heap pages to the system (glibc `malloc_trim`): after a multi-megabyte document is decoded and
    dropped, the process's RSS otherwise stays at the decode's high-water mark."""
    if _malloc_trim is not None:
        _malloc_trim(0)
