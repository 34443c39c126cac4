"""Convergence: a writer that outpaces a throttled mirror is flagged, and the fixes work."""

from __future__ import annotations

import threading

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


async def qemu_version(app, session: str) -> tuple[int, int]:
    v = (await app.hub.sessions[session].execute("query-version"))["qemu"]
    return v["major"], v["minor"]


async def block_job(app, session: str, job_id: str) -> dict:
    """QEMU's own record of a job (query-block-jobs), not chaintui's."""
    jobs = await app.hub.sessions[session].execute("query-block-jobs")
    [entry] = [j for j in jobs if j["device"] == job_id]
    return entry


async def test_not_converging_flagged_then_lifted(lab, short_window):
    # 1 MiB of data (256 KiB an image): QEMU copies it in one burst and its limit sleeps that off
    # (4 s) before it looks for dirty data; only then can it say the writer outpaces the copy
    paths = lab.make_chain(4, 64 * MiB, absolute=True, chunk=256 * 1024)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    async with running_app([str(q.qmp)]) as (app, pilot):
        hub = app.hub
        s = next(iter(hub.sessions))
        can_switch = await qemu_version(app, s) >= (8, 2)  # block-job-change came in QEMU 8.2
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
            panel = main(app).query_one("#jobs", JobsPanel)
            await until(pilot, lambda: "not converging" in panel.text_of(j) and "-stuck" in panel.classes_of(j))
            await press(pilot, "tab")
            await press(pilot, "w")
            if can_switch:  # QEMU 8.2+ switches the running mirror
                await until(pilot, lambda: any(m == "mirror-drive0-1: copy mode write-blocking"
                                               for m, _ in app.notices), what="switched")
                assert any("copy mode write-blocking (guest writes now wait for the target)" in e.text for e in hub.log)
                assert not any(severity == "error" for _, severity in app.notices)
            else:  # QEMU 7.2 has no block-job-change: chaintui says so, and the job goes on as it was
                await until(pilot, lambda: any("cannot switch a running mirror to write-blocking" in m
                                               for m, _ in app.notices), what="refusal")
                entry = await block_job(app, s, "mirror-drive0-1")
                assert (entry["type"], entry["status"], entry["speed"], entry["ready"]) == ("mirror", "running", 256 * 1024, False)
                assert "actively-synced" not in entry
                assert not any("copy mode write-blocking (guest" in e.text for e in hub.log)
            await press(pilot, "u")  # lift the limit: the copy outruns the writer
            await until(pilot, lambda: j.speed == 0, what="limit lifted")
            await until(pilot, lambda: j.ready, timeout=60, what="ready once unthrottled")
            if can_switch:  # in write-blocking mode a ready mirror is actively synced: every write reaches both
                entry = await block_job(app, s, "mirror-drive0-1")
                assert entry["ready"] and entry["actively-synced"] is True, entry
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
        s = next(iter(app.hub.sessions))
        reports_sync = await qemu_version(app, s) >= (8, 2)  # query-block-jobs has actively-synced since 8.2
        await press(pilot, "m")
        dlg = await until(pilot, lambda: getattr(app.screen, "values", None) and app.screen)
        dlg.query_one("#field-copy_mode").value = "write-blocking"
        await until(pilot, lambda: '"copy-mode": "write-blocking"' in str(dlg.query_one("#qmp").render()), what="QMP preview")
        dlg.query_one("#field-target").focus()
        writer = Writer(lab, q, ref)
        writer.start()
        try:
            await press(pilot, "enter")
            j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
            await until(pilot, lambda: j.ready, timeout=60, what="ready under writes")
            entry = await block_job(app, s, "mirror-drive0-1")
            if reports_sync:
                assert entry["actively-synced"] is True, entry
            else:
                assert "actively-synced" not in entry
            written = writer.count
            await until(pilot, lambda: writer.count >= written + 3, what="guest writes while ready")
        finally:
            writer.stop.set()
            writer.join()
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
        target = j.target
    q.stop()
    same(lab, paths[-1], ref)
    same(lab, target, ref)
