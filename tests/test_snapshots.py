"""Pictures of every screen (pytest-textual-snapshot), on real QEMU chains.

What moves is frozen so the pictures are stable: the lab lives in a fixed
directory, nodes have readable names, the log clock is fixed, and the job
cards get fixed progress after the real jobs have started (polling stops).
Update with `make snapshots` and look at the SVGs before committing them.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import deque
from pathlib import Path

import pytest

from tui.app import ChainApp
from tui.backend import ops
from tui.backend.hub import Hub
from tui.backend.lab import Lab
from tui.messages import JobsUpdated

from .uihelp import FIXED_CLOCK, MiB, graph, main, until

ROOT = Path("/tmp/chaintui-snapshots")


@pytest.fixture
def fixed_lab(request):
    root = ROOT / request.node.name.replace("[", "-").replace("]", "")
    shutil.rmtree(root, ignore_errors=True)
    with Lab(root=root) as lab:
        yield lab
    shutil.rmtree(root, ignore_errors=True)


def make_app(lab: Lab, n: int = 4, drives: int = 1) -> ChainApp:
    tops = []
    for i in range(drives):
        paths = lab.make_chain(n, 64 * MiB, prefix="" if i == 0 else f"vm{i}-", absolute=True, data=n < 20)
        tops.append(paths[-1])
    q = lab.start(tops, named_nodes=True)
    return ChainApp([str(q.qmp)], hub=Hub(poll_interval=0.05), clock=FIXED_CLOCK)


async def ready(pilot) -> None:
    await until(pilot, lambda: graph(pilot.app).drive is not None, what="drive")
    await pilot.app.hub.settle(next(iter(pilot.app.hub.sessions)))
    await pilot.pause(0.1)


def pressing(*keys: str, wait: float = 0.2):
    """A run_before that waits for the chain, then presses ``keys``."""

    async def before(pilot) -> None:
        await ready(pilot)
        await pilot.press(*keys)
        await pilot.pause(wait)

    return before


def freeze(job, offset: int, length: int, rate: float, history: list[float], status: str | None = None) -> None:
    job.offset, job.length = offset, length
    if status is not None:  # QEMU's unrequested paused/running blips must not show in a picture
        job.status, job.paused, job.ready = status, False, status == "ready"
    job.samples = deque([(0.0, offset - int(rate)), (1.0, offset)], maxlen=64)
    job.rate_history = deque(history, maxlen=40)
    job.version += 1


async def with_jobs(pilot) -> None:
    """Three real jobs: a throttled stream, a ready mirror, a completed stream."""
    await ready(pilot)
    app: ChainApp = pilot.app
    hub = app.hub
    s = next(iter(hub.sessions))
    await until(pilot, lambda: len(hub.drives[s]) == 2, what="two drives")
    d0, d1 = hub.drive(s, "drive0"), hub.drive(s, "drive1")
    [done] = await hub.run_plan(ops.plan_stream(d1, "vm1-B", 0, "stream-drive1-1"))
    await hub.wait_job(s, done.id, lambda j: j.finished)
    await hub.settle(s)
    hub.poll_interval = 3600  # from here on the pictures' numbers are set by hand
    [stream] = await hub.run_plan(ops.plan_stream(d0, "B", "64K", "stream-drive0-1"))
    d1 = hub.drive(s, "drive1")
    [mirror] = await hub.run_plan(
        ops.plan_mirror(d1, str(Path(d1.active.filename).with_name("vm1-D-mirror.qcow2")), "qcow2", "full", 0, "mirror-drive1-1")
    )
    await hub.wait_job(s, mirror.id, lambda j: j.ready)
    await hub.wait_job(s, stream.id, lambda j: j.status == "running")
    await hub.settle(s)
    await pilot.pause(0.3)
    freeze(stream, 24 * MiB, 64 * MiB, 2 * MiB, [1, 2, 3, 2, 4, 5, 4, 6, 7, 6, 8, 7], "running")
    freeze(mirror, 64 * MiB, 64 * MiB, 0, [8, 7, 8, 6, 5, 3, 1, 0], "ready")
    freeze(done, 64 * MiB, 64 * MiB, 0, [])
    main(app).post_message(JobsUpdated())
    main(app).query_one("#log").clear()
    for entry in [e for e in hub.log if e.kind == "action"][:4]:
        main(app).query_one("#log").add(entry)
    await pilot.pause(0.2)


def test_main_screen_with_jobs(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab, drives=2), terminal_size=(130, 40), run_before=with_jobs)


def test_main_screen_80x24(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(80, 24), run_before=ready)


def test_chain_of_200_images(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab, n=200), terminal_size=(100, 34), run_before=pressing("up", "up", wait=0))


def test_chain_of_200_images_home(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab, n=200), terminal_size=(100, 34), run_before=pressing("home", "down", wait=0))


def test_merge_dialog(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 40), run_before=pressing("up", "up", "s"))


def test_commit_dialog(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 40), run_before=pressing("home", "c"))


def test_mirror_dialog_raw(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        await pilot.press("m")
        await pilot.pause(0.2)
        dlg = pilot.app.screen
        dlg.query_one("#field-format").value = "raw"
        dlg.query_one("#field-target").value = str(fixed_lab.dir / "D.raw")
        await pilot.pause(0.2)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 44), run_before=before)


def test_mirror_dialog_invalid_target(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        (fixed_lab.dir / "taken.qcow2").write_bytes(b"x")
        await pilot.press("m")
        await pilot.pause(0.2)
        dlg = pilot.app.screen
        dlg.query_one("#field-target").value = str(fixed_lab.dir / "taken.qcow2")
        await until(pilot, lambda: "already exists" in str(dlg.query_one("#error-target").render()), what="refusal")
        await pilot.pause(0.2)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 44), run_before=before)


def test_copy_dialog(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 44), run_before=pressing("y"))


def test_snapshot_dialog(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 36), run_before=pressing("n"))


def test_cancel_confirmation(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        hub = pilot.app.hub
        s = next(iter(hub.sessions))
        hub.poll_interval = 3600
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive0"), None, "64K", "stream-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.status == "running")
        freeze(job, 8 * MiB, 64 * MiB, 64 * 1024, [1, 1, 1], "running")
        main(pilot.app).post_message(JobsUpdated())
        await pilot.pause(0.2)
        await pilot.press("x")
        await pilot.pause(0.2)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 36), run_before=before)


def test_help_screen(snap_compare, fixed_lab):
    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 44), run_before=pressing("question_mark", wait=0.3))


def test_qemu_error_notification(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        app = pilot.app
        drive = graph(app).drive
        plan = ops.plan_stream(drive, "B", 0, "stream-drive0-1")
        plan.steps[0].arguments["base-node"] = "gone"  # QEMU, not chaintui, refuses this one
        app.launch(plan)
        await until(pilot, lambda: app._notifications, what="notification")
        main(app).query_one("#log").clear()
        await pilot.pause(0.3)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 32), run_before=before)


def test_job_traffic_screen(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        hub = pilot.app.hub
        s = next(iter(hub.sessions))
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive0"), "B", 0, "stream-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.finished)
        await pilot.pause(0.2)
        for e in hub.log:  # QEMU's event timestamps: fixed for the picture
            if isinstance(e.data, dict) and "timestamp" in e.data:
                e.data = dict(e.data, timestamp={"seconds": 1795800000, "microseconds": 0})
        await pilot.press("t")
        await pilot.pause(0.3)

    assert snap_compare(make_app(fixed_lab), terminal_size=(120, 30), run_before=before)


def test_not_converging_card(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        hub = pilot.app.hub
        s = next(iter(hub.sessions))
        hub.poll_interval = 3600
        d = hub.drive(s, "drive0")
        target = str(Path(d.active.filename).with_name("D-mirror.qcow2"))
        [job] = await hub.run_plan(ops.plan_mirror(d, target, "qcow2", "full", "256K", "mirror-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.status == "running")
        await pilot.pause(0.2)
        freeze(job, 48 * MiB, 64 * MiB, 256 * 1024, [4, 4, 4, 4, 4, 4], "running")
        job.remaining_samples = deque(
            [(float(t), 40 * MiB + t * 256 * 1024, 56 * MiB + t * 768 * 1024) for t in range(12)], maxlen=400
        )
        job.version += 1
        import tui.backend.jobs as jm

        jm.CONVERGENCE_WINDOW, old = 10.0, jm.CONVERGENCE_WINDOW
        main(pilot.app).post_message(JobsUpdated())
        main(pilot.app).query_one("#log").clear()
        await pilot.pause(0.3)

    assert snap_compare(make_app(fixed_lab), terminal_size=(150, 34), run_before=before)


def test_mirror_dialog_completion(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        (fixed_lab.dir / "disks").mkdir()
        (fixed_lab.dir / "dist").mkdir()
        await pilot.press("m")
        await pilot.pause(0.2)
        field = pilot.app.screen.query_one("#field-target")
        field.value = f"{fixed_lab.dir}/d"
        field.cursor_position = len(field.value)
        await pilot.press("tab")
        await pilot.pause(0.2)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 46), run_before=before)


def test_target_picker(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        (fixed_lab.dir / "archive").mkdir()
        await pilot.press("m")
        await pilot.pause(0.2)
        await pilot.press("ctrl+o")
        await pilot.pause(0.5)

    assert snap_compare(make_app(fixed_lab), terminal_size=(100, 30), run_before=before)


def test_mirror_dialog_existing_image_refused(snap_compare, fixed_lab):
    async def before(pilot):
        await ready(pilot)
        small = fixed_lab.dir / "small.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(small), str(32 * MiB)], check=True)
        await pilot.press("m")
        await pilot.pause(0.2)
        dlg = pilot.app.screen
        dlg.query_one("#field-mode").value = "existing"
        await pilot.pause(0.1)
        dlg.query_one("#field-target").value = str(small)
        await until(pilot, lambda: "32.0 MiB" in str(dlg.query_one("#error-target").render()), what="refusal")
        await pilot.pause(0.2)

    assert snap_compare(make_app(fixed_lab), terminal_size=(110, 46), run_before=before)


def test_mirror_dialog_tight_space(snap_compare, fixed_lab):
    mnt = fixed_lab.dir / "small-fs"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mnt)], check=True)
    try:
        paths = fixed_lab.make_chain(2, 64 * MiB, absolute=True, chunk=int(4.5 * MiB))
        q = fixed_lab.start(paths[-1], named_nodes=True)
        app = ChainApp([str(q.qmp)], hub=Hub(poll_interval=0.05), clock=FIXED_CLOCK)

        async def before(pilot):
            await ready(pilot)
            await pilot.press("m")
            await pilot.pause(0.2)
            dlg = pilot.app.screen
            dlg.query_one("#field-target").value = str(mnt / "B-mirror.qcow2")
            await until(pilot, lambda: "Tight on space" in str(dlg.query_one("#preview").render()), what="warning")
            await pilot.pause(0.2)

        assert snap_compare(app, terminal_size=(110, 46), run_before=before)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
