"""Python's full garbage collections, moved to moments when nobody types.

A full pass over the objects a Textual app makes took 20-60 ms on a 2-core machine; when it
came on its own, a key typed meanwhile waited that long (benchmarks/typing_bench.py found
every keystroke over 30 ms was one).  Young collections still run as Python decides; the full
ones run here: when GC_EVERY seconds have passed and no key came for GC_QUIET seconds, or
after GC_LATEST seconds whatever happens.
"""

from __future__ import annotations

import gc
import time

GC_EVERY = 30.0  # seconds between full collections
GC_QUIET = 1.0  # seconds without a key before one runs
GC_LATEST = 120.0  # seconds: one runs even while keys keep coming
CHECK_EVERY = 5.0  # seconds between looks (the app's timer)
FULL_RARELY = 1_000_000  # gen-2 threshold: Python's own full collections as good as never


class QuietCollector:
    def __init__(self, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self.clock = clock
        self.input_at = float("-inf")
        self.collected_at = clock()
        self.collections = 0

    def start(self) -> None:
        """Take full collections over from Python (young ones stay automatic)."""
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_RARELY)

    def note_input(self) -> None:
        self.input_at = self.clock()

    def tick(self) -> bool:
        """Collect now if it is time and quiet (True when it did)."""
        now = self.clock()
        since = now - self.collected_at
        if since < GC_EVERY or (now - self.input_at < GC_QUIET and since < GC_LATEST):
            return False
        gc.collect()
        self.collected_at = self.clock()
        self.collections += 1
        return True
