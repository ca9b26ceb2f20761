"""Pause the cyclic garbage collector around bulk work that builds only acyclic data (decoding, parsing, mapping).

Decoding a large Horizon answer allocates hundreds of thousands of containers; with the collector on, every 700
of them start a collection and the older generations are scanned again and again, over a heap that is mostly
the exporter's own long-lived snapshot. JSON and the parsed readings hold no reference cycles, so nothing is lost
by collecting after instead of during (bench/fleet.py: json.loads of an 8 MB /api/masters takes about half the
time). Reference counting still frees garbage at once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
