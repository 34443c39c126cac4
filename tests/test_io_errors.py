"""I/O errors during a job, injected with QEMU's blkdebug driver on a mirror target."""

from __future__ import annotations

import pytest

from tui.backend import ops
from tui.backend.lab import run
from tui.widgets import JobsPanel

from .uihelp import ConfirmDialog, job, main, press, running_app, same, start_lab, until


def blkdebug_target(lab, name: str, errno: int, size: int) -> tuple[str, str]:
    """An existing qcow2 target whose first data write fails with ``errno`` (once)."""
    target = lab.dir / name
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), str(size)])
    conf = lab.dir / f"{name}.blkdebug"
    conf.write_text(f'[inject-error]\nevent = "write_aio"\nerrno = "{errno}"\nonce = "on"\n')
    return str(target), f"blkdebug:{conf}:{target}"


@pytest.mark.parametrize("errno,action,io_status", [(5, "stop", "failed"), (28, "enospc", "nospace")])
async def test_target_io_error_shown_then_resumed_or_cancelled(lab, errno, action, io_status):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        hub = app.hub
        s = next(iter(hub.sessions))
        d = hub.drive(s, "drive0")
        target, spec = blkdebug_target(lab, f"t{errno}.qcow2", errno, d.active.virtual_size)
        plan = ops.plan_mirror(d, target, "qcow2", "full", 0, "mirror-drive0-1", mode="existing", on_target_error=action)
        plan.steps[0].arguments["target"] = spec  # the same file, behind the fault injector
        app.launch(plan)
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        await until(pilot, lambda: j.last_error_event is not None, what="BLOCK_JOB_ERROR")
        assert j.last_error_event["operation"] == "write" and j.last_error_event["action"] == "stop"
        await until(pilot, lambda: j.paused and j.io_status == io_status, what="paused on error")
        panel = main(app).query_one("#jobs", JobsPanel)
        await until(pilot, lambda: "I/O error on write" in panel.text_of(j) and io_status in panel.text_of(j))
        assert ("ENOSPC" if errno == 28 else "EIO") in panel.text_of(j)
        assert "-error" in panel.classes_of(j)
        assert any(e.kind == "error" and "I/O error during write" in e.text for e in hub.log)
        await press(pilot, "tab")
        if errno == 5:
            await press(pilot, "p")  # resume: the fault fired once, the copy goes on
            await until(pilot, lambda: j.ready, what="ready after resume")
            await press(pilot, "x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await press(pilot, "enter")
            await until(pilot, lambda: j.finished)
            assert j.outcome.startswith("cancelled after ready")
        else:
            await press(pilot, "x")  # out of space: give up, keep the source
            await until(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await press(pilot, "enter")
            await until(pilot, lambda: j.finished)
            assert j.outcome == "cancelled"
        await hub.refresh(s)
        assert hub.drive(s, "drive0").active.label == "D.qcow2"
    q.stop()
    same(lab, paths[-1], ref)  # the source is intact
    if errno == 5:
        same(lab, target, ref)  # and the copy completed after the resume
