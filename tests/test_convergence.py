"""Convergence: a writer that outpaces a throttled mirror is flagged, and the fixes work."""

from __future__ import annotations

import threading
import time

import pytest

from tui.backend import jobs as jobs_module
from tui.backend import ops
from tui.widgets import JobsPanel

from .uihelp import MiB, job, main, press, running_app, same, start_lab, until


class Writer(threading.Thread):
    """Plays a busy guest: 512 KiB writes through NBD, applied to the reference too."""

    def __init__(self, lab, q, ref) -> None:
        super().__init__(daemon=True)
        self.lab, self.q, self.ref = lab, q, ref
        self.stop = threading.Event()
        self.count = 0

    def run(self) -> None:
        while not self.stop.is_set():
            off = (self.count * 7 % 120) * 512 * 1024
            pattern = self.count % 200 + 20
            self.q.write(off, 512 * 1024, pattern)
            self.lab.fill(self.ref, off, 512 * 1024, pattern)
            self.count += 1


@pytest.fixture
def short_window(monkeypatch):
    monkeypatch.setattr(jobs_module, "CONVERGENCE_WINDOW", 2.0)


async def test_not_converging_flagged_then_lifted(lab, short_window):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        hub = app.hub
        s = next(iter(hub.sessions))
        d = hub.drive(s, "drive0")
        app.launch(ops.plan_mirror(d, str(lab.dir / "t.qcow2"), "qcow2", "full", "256K", "mirror-drive0-1"))
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        writer = Writer(lab, q, ref)
        writer.start()
        try:
            await until(pilot, lambda: (c := j.convergence()) is not None and not c.converging, timeout=30,
                        what="not converging")
            conv = j.convergence()
            assert "speed limit 256.0 KiB/s holds the copy back" in conv.reason
            card = main(app).query_one("#jobs", JobsPanel).cards[j.key]
            await until(pilot, lambda: "not converging" in str(card.render()) and card.has_class("-stuck"))
            await press(pilot, "tab")
            await press(pilot, "w")  # QEMU 7.2 cannot switch a running mirror: it says so
            await until(pilot, lambda: any("write-blocking" in str(n.message) for n in app._notifications))
            await press(pilot, "u")  # lift the limit: the copy outruns the writer
            await until(pilot, lambda: j.speed == 0, what="limit lifted")
            await until(pilot, lambda: j.ready, timeout=60, what="ready once unthrottled")
        finally:
            writer.stop.set()
            writer.join()
        assert writer.count > 5
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
    q.stop()
    same(lab, paths[-1], ref)
    same(lab, lab.dir / "t.qcow2", ref)


async def test_write_blocking_chosen_at_start_converges_under_writes(lab, short_window):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "m")
        dlg = await until(pilot, lambda: getattr(app.screen, "values", None) and app.screen)
        dlg.query_one("#field-copy_mode").value = "write-blocking"
        await pilot.pause(0.05)
        assert '"copy-mode": "write-blocking"' in str(dlg.query_one("#qmp").render())
        dlg.query_one("#field-target").focus()
        writer = Writer(lab, q, ref)
        writer.start()
        try:
            await press(pilot, "enter")
            j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
            await until(pilot, lambda: j.ready, timeout=60, what="ready under writes")
            time.sleep(0.3)
        finally:
            writer.stop.set()
            writer.join()
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
        target = j.target
    q.stop()
    same(lab, paths[-1], ref)
    same(lab, target, ref)
