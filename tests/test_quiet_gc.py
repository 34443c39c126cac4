"""Full garbage collections wait for a quiet moment (tui/quiet_gc.py): no key waits for one."""

from __future__ import annotations

import gc

from tui import quiet_gc
from tui.quiet_gc import QuietCollector


def test_full_collections_wait_for_no_key_and_come_at_last():
    now = [1000.0]
    c = QuietCollector(clock=lambda: now[0])
    before = gc.get_threshold()
    try:
        c.start()
        assert gc.get_threshold()[2] == quiet_gc.FULL_RARELY and gc.get_threshold()[:2] == before[:2]
        now[0] += quiet_gc.GC_EVERY - 1
        assert not c.tick()  # not yet time
        now[0] += 2
        c.note_input()
        assert not c.tick()  # a key just came
        now[0] += quiet_gc.GC_QUIET + 0.1
        assert c.tick() and c.collections == 1  # quiet now
        # keys keep coming: it waits, but not for ever
        while now[0] - c.collected_at < quiet_gc.GC_LATEST:
            now[0] += 0.5
            c.note_input()
            if now[0] - c.collected_at < quiet_gc.GC_LATEST:
                assert not c.tick()
        assert c.tick() and c.collections == 2
    finally:
        gc.set_threshold(*before)
