"""Pause Python's cyclic garbage collector around allocation-heavy bookkeeping.

Tracing and grouping allocate many small objects (records, refs, index lists)
that all stay alive; the cyclic collector would rescan them again and again.
Pausing it is safe because none of them form cycles that need collecting, and
it makes grouping ~20x faster on a ResNet-50.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
