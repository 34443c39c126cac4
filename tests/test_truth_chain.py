"""What the screen says must be true (issue 10): drive names, stale chains, backing paths,
leftover nodes, on the VMs operators run (q35, ``-device virtio-blk-pci,id=virtio-diskN``)."""

from __future__ import annotations

import subprocess
import sys

from tui.widgets import DrivesPanel

from .conftest import MiB, chain_of, connect, same, wait_for
from .fixtures_vm import drive_vm, libvirt_vm, start_vm  # noqa: F401 - fixtures
from .uihelp import graph, main, running_app, until


# -- defect 1: drive names ------------------------------------------------------
async def test_libvirt_vm_drives_are_named_by_device_id(hub, libvirt_vm):
    s = await connect(hub, libvirt_vm.q, drives=2)
    names = [d.name for d in hub.drives[s.name]]
    assert names == ["virtio-disk0", "virtio-disk1"]
    assert await chain_of(hub, s.name, "virtio-disk0") == ["d0-A.qcow2", "d0-B.qcow2", "d0-C.qcow2", "d0-D.qcow2"]
    assert hub.drive(s.name, "virtio-disk1").device == "libvirt-5-format"  # jobs address the root node


async def test_drive_vm_named_by_device_id_jobs_by_drive_id(hub, drive_vm):
    s = await connect(hub, drive_vm.q, drives=2)
    d0 = hub.drive(s.name, "virtio-disk0")
    assert (d0.device, d0.has_device) == ("drive0", True)
    assert [d.name for d in hub.drives[s.name]] == ["virtio-disk0", "virtio-disk1"]


async def test_two_libvirt_vms_in_one_ui(lab):
    a = start_vm(lab, "libvirt")
    b = start_vm(lab, "q35")
    async with running_app([a.qmp, b.qmp]) as (app, pilot):
        await until(pilot, lambda: len(app.hub.all_drives()) == 4, what="four drives")
        panel = main(app).query_one("#drives", DrivesPanel)
        ids = [o.id for o in panel._options if o.id]
        assert len(ids) == len(set(ids))
        assert sum(1 for i in ids if i.endswith("virtio-disk0")) == 2
        assert graph(app).drive.name == "virtio-disk0"


async def test_a_root_no_device_uses_is_not_counted_as_one_of_the_vms_drives(lab, libvirt_vm):
    """A chain opened in the VM before chaintui came (here by another tool's blockdev-add) and used
    by no device: the title says '2 drives (+1 detached)', not 3, and its chain box says so."""
    from qemu.qmp import QMPClient

    extra = lab.make_chain(2, 16 * MiB, prefix="x-", subdir="extra", absolute=True)
    other = QMPClient("other-tool")
    await other.connect(str(libvirt_vm.q.spare))
    await other.execute("blockdev-add", {"driver": "qcow2", "node-name": "extra-format",
                                         "file": {"driver": "file", "filename": str(extra[-1])}})
    await other.disconnect()
    async with running_app([libvirt_vm.qmp]) as (app, pilot):
        await until(pilot, lambda: len(app.hub.all_drives()) == 3, what="two disks and the extra root")
        await until(pilot, lambda: "1 QEMU · 2 drives (+1 detached) · 0 jobs" in main(app).sub_title,
                    what="the title without the extra root")
        assert graph(app).drive.name == "virtio-disk0"  # the VM's disks first: the loose root is last
        main(app).query_one("#drives", DrivesPanel).focus()
        await pilot.press("end")
        await until(pilot, lambda: graph(app).drive.name == "extra-format", what="the loose root picked")
        box = main(app).query_one("#chain-box")
        await until(pilot, lambda: "detached: no device uses it" in str(box.border_title), what="the chain box says so")
    libvirt_vm.q.stop()
    same(lab, libvirt_vm.disks[0][-1], libvirt_vm.refs[0])


def test_chains_cli_prints_device_ids(libvirt_vm):
    out = subprocess.run([sys.executable, "-m", "tui", "chains", libvirt_vm.qmp], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("virtio-disk0: [d0-A.qcow2]")
    assert lines[1] == "virtio-disk1: [d1-A.qcow2] -> [d1-B.qcow2]"
    assert "virtio-backend" not in out.stdout


# -- defect 4: a chain changed by another tool ------------------------------------
async def other_client(q, *commands):
    """Play "another tool": a second QMP monitor of the same QEMU."""
    from qemu.qmp import QMPClient

    c = QMPClient("other-tool")
    await c.connect(str(q.spare))
    try:
        return [await c.execute(cmd, args) for cmd, args in commands]
    finally:
        await c.disconnect()


async def test_snapshots_by_another_tool_appear_without_a_key(lab, libvirt_vm):
    vm = libvirt_vm
    d = vm.disks[0][-1].parent
    async with running_app([vm.qmp]) as (app, pilot):
        assert [i.label for i in graph(app).drive.images][-1] == "d0-D.qcow2"
        await pilot.press("m")  # the mirror dialog is open while the other tool works
        dlg = await until(pilot, lambda: type(app.screen).__name__ == "PlanDialog" and app.screen, what="dialog")
        assert "[d0-D.qcow2]" in str(dlg.query_one("#preview").render())
        await other_client(
            vm.q,
            ("blockdev-snapshot-sync", {"node-name": "libvirt-1-format", "snapshot-file": str(d / "E.qcow2"),
                                        "snapshot-node-name": "snap-e", "format": "qcow2"}),
            ("blockdev-snapshot-sync", {"node-name": "snap-e", "snapshot-file": str(d / "F.qcow2"),
                                        "snapshot-node-name": "snap-f", "format": "qcow2"}),
        )
        loop = __import__("asyncio").get_running_loop()
        t0 = loop.time()
        # no key pressed: the watch notices the new structure on its own
        await until(pilot, lambda: [i.label for i in graph(app).drive.images][-2:] == ["E.qcow2", "F.qcow2"],
                    timeout=4, what="the two snapshots on screen")
        seen_after = loop.time() - t0
        # the dialog re-checks in a worker (off the UI loop): wait for its new preview
        preview = await until(pilot, lambda: (p := str(dlg.query_one("#preview").render())) and "F.qcow2" in p and p,
                              what="the dialog re-checked against the new chain")
        assert "chain changed while this dialog was open: 4 images up to d0-D.qcow2 before, 6 up to F.qcow2 now" in (
            preview.replace("\n", " "))
        assert "[d0-D.qcow2] -> [E.qcow2] -> [F.qcow2]" in preview  # Before is the chain as it is now
        assert seen_after < 4
        await pilot.press("escape")
    vm.q.stop()
    same(lab, d / "F.qcow2", vm.refs[0])


async def test_hub_notices_a_snapshot_on_qsd_without_an_event(lab, hub):
    paths = lab.make_chain(3, 16 * MiB)
    q = lab.start(paths[-1])
    s = await connect(hub, q)
    checks = hub.structure_checks
    await wait_for(lambda: hub.structure_checks > checks, what="a structure check with nothing changed")
    assert [i.label for i in hub.drive(s.name, "drive0").images] == ["A.qcow2", "B.qcow2", "C.qcow2"]
    await other_client(q, ("blockdev-snapshot-sync", {"node-name": "C", "snapshot-file": str(lab.dir / "S.qcow2"),
                                                      "snapshot-node-name": "S", "format": "qcow2"}))
    await wait_for(lambda: [i.label for i in hub.drive(s.name, "drive0").images][-1] == "S.qcow2", timeout=5,
                   what="the snapshot in the hub's chain")
    # the log says what changed, and that chaintui did not do it
    assert [e.text for e in hub.log if "chain now" in e.text] == [
        "drive0: chain now A.qcow2 → B.qcow2 → C.qcow2 → S.qcow2 (was A.qcow2 → B.qcow2 → C.qcow2): "
        "changed outside chaintui"]
    # chaintui's own snapshot: logged, not called outside
    from tui.backend import ops

    plan = ops.plan_snapshot(hub.drive(s.name, "drive0"), str(lab.dir / "T.qcow2"), "T")
    await hub.run_plan(plan)
    await wait_for(lambda: [i.label for i in hub.drive(s.name, "drive0").images][-1] == "T.qcow2", timeout=5,
                   what="chaintui's snapshot in the hub's chain")
    mine = [e.text for e in hub.log if "chain now" in e.text][1:]
    assert mine == ["drive0: chain now A.qcow2 → B.qcow2 → C.qcow2 → S.qcow2 → T.qcow2 "
                    "(was A.qcow2 → B.qcow2 → C.qcow2 → S.qcow2)"], mine


async def test_another_tools_snapshot_of_one_disk_while_chaintui_streams_the_other_is_outside(lab, hub, libvirt_vm):
    """Seen in tmux: a second monitor's snapshot of virtio-disk1 while chaintui's stream ran on
    virtio-disk0 of the same VM was logged without "changed outside chaintui" (any job of chaintui's
    on that QEMU counted as the cause).  Only chaintui's work on the drive itself explains its change."""
    from tui.backend import ops

    vm = libvirt_vm
    s = await connect(hub, vm.q, drives=2)
    d0 = hub.drive(s.name, "virtio-disk0")
    # a slow merge of d0-C into d0-D on virtio-disk0 (4 MiB at 64 KiB/s): it runs while the other tool works
    await hub.run_plan(ops.plan_stream(d0, d0.images[1].node_name, "64K", "stream-virtio-disk0-1"))
    job = await wait_for(lambda: hub.tracker.get(s.name, "stream-virtio-disk0-1"), what="the stream")
    await wait_for(lambda: job.drive == "virtio-disk0" and job.active, what="the stream on virtio-disk0")
    d1 = vm.disks[1][-1].parent
    await other_client(vm.q, ("blockdev-snapshot-sync", {
        "node-name": hub.drive(s.name, "virtio-disk1").active.node_name, "snapshot-file": str(d1 / "d1-E.qcow2"),
        "snapshot-node-name": "other-e", "format": "qcow2"}))
    await wait_for(lambda: hub.drive(s.name, "virtio-disk1").images[-1].label == "d1-E.qcow2", timeout=10,
                   what="the other tool's snapshot in the hub's chain")
    assert not job.finished  # the stream still ran when the change was seen
    assert [e.text for e in hub.log if "chain now" in e.text] == [
        "virtio-disk1: chain now d1-A.qcow2 → d1-B.qcow2 → d1-E.qcow2 (was d1-A.qcow2 → d1-B.qcow2): "
        "changed outside chaintui"]
    # chaintui's own snapshot of virtio-disk1, while its stream still runs on virtio-disk0: not outside
    plan = ops.plan_snapshot(hub.drive(s.name, "virtio-disk1"), str(d1 / "d1-F.qcow2"), "mine-f")
    await hub.run_plan(plan)
    await wait_for(lambda: hub.drive(s.name, "virtio-disk1").images[-1].label == "d1-F.qcow2", timeout=10,
                   what="chaintui's snapshot in the hub's chain")
    assert [e.text for e in hub.log if "chain now" in e.text][1:] == [
        "virtio-disk1: chain now d1-A.qcow2 → d1-B.qcow2 → d1-E.qcow2 → d1-F.qcow2 "
        "(was d1-A.qcow2 → d1-B.qcow2 → d1-E.qcow2)"]
    await hub.set_speed(s.name, job.id, 0)
    await wait_for(lambda: job.finished, timeout=60, what="the stream's end")
    assert job.result == "completed"
    vm.q.stop()
    same(lab, vm.disks[0][-1], vm.refs[0])
    same(lab, d1 / "d1-F.qcow2", vm.refs[1])


# -- defect 6: a relative backing path stays relative --------------------------------
def _chain_with_relative_raw_base(lab):
    """disk/{B,C,D}.qcow2 over ``../bases/base räw.img`` (spaces, unicode and ``../`` in the path)."""
    (lab.dir / "bases").mkdir()
    disk = lab.dir / "disk"
    disk.mkdir()
    base = lab.dir / "bases" / "base räw.img"
    lab_run = __import__("tui.backend.lab", fromlist=["run"]).run
    lab_run(["qemu-img", "create", "-q", "-f", "raw", str(base), str(16 * MiB)])
    lab.fill(base, 0, MiB, 0x11, fmt="raw")
    prev, fmt = "../bases/base räw.img", "raw"
    paths = []
    for i, name in enumerate(["B", "C", "D"]):
        lab_run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", prev, "-F", fmt, f"{name}.qcow2"], cwd=disk)
        lab.fill(disk / f"{name}.qcow2", (i + 1) * MiB, MiB, 0x22 + i)
        prev, fmt = f"{name}.qcow2", "qcow2"
        paths.append(disk / f"{name}.qcow2")
    return base, paths


async def test_merge_keeps_relative_backing_path(lab, hub):
    from tui.backend import ops

    base, paths = _chain_with_relative_raw_base(lab)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    s = await connect(hub, q)
    drive = hub.drive(s.name, "drive0")
    assert [i.label for i in drive.images] == ["base räw.img", "B.qcow2", "C.qcow2", "D.qcow2"]
    plan = ops.plan_stream(drive, drive.images[0].node_name, None, hub.new_job_id("stream", drive))
    assert plan.steps[0].arguments["backing-file"] == "../bases/base räw.img"
    assert "recorded as \u201c../bases/base räw.img\u201d" in " ".join(plan.moves)
    assert "base räw.img" in plan.qmp_json()  # readable, not \\u00e4
    await hub.run_plan(plan)
    await hub.wait_job(s.name, plan.job_ids[0], lambda j: j.finished)
    assert hub.tracker.get(s.name, plan.job_ids[0]).outcome == "completed"
    q.stop()
    info = lab.info(paths[-1])[0]
    assert info["backing-filename"] == "../bases/base räw.img"
    same(lab, paths[-1], ref)


async def test_commit_keeps_absolute_backing_path_absolute(lab, hub):
    from tui.backend import ops

    paths = lab.make_chain(4, 16 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    s = await connect(hub, q)
    drive = hub.drive(s.name, "drive0")
    plan = ops.plan_commit(drive, "A.qcow2", "C.qcow2", None, hub.new_job_id("commit", drive))
    assert plan.steps[0].arguments["backing-file"] == str(paths[0])
    await hub.run_plan(plan)
    await hub.wait_job(s.name, plan.job_ids[0], lambda j: j.finished)
    q.stop()
    assert lab.info(paths[-1])[0]["backing-filename"] == str(paths[0])
    same(lab, paths[-1], ref)


# -- defect 11: leftover nodes --------------------------------------------------------
async def _active_commit(hub, s, drive_name, base_label):
    from tui.backend import ops

    drive = hub.drive(s, drive_name)
    plan = ops.plan_commit(drive, base_label, None, None, hub.new_job_id("commit", drive))
    await hub.run_plan(plan)
    job_id = plan.job_ids[0]
    await hub.wait_job(s, job_id, lambda j: j.ready)
    await hub.complete(s, job_id)
    await hub.wait_job(s, job_id, lambda j: j.finished)
    await hub.settle(s)
    await hub.refresh(s)


async def test_leftover_after_active_commit_on_libvirt_vm_shown_and_closed(lab, libvirt_vm):
    from tui.screens.dialogs import ConfirmDialog

    vm = libvirt_vm
    async with running_app([vm.qmp]) as (app, pilot):
        hub = app.hub
        s = next(iter(hub.sessions))
        await _active_commit(hub, s, "virtio-disk0", "d0-B.qcow2")
        drive = hub.drive(s, "virtio-disk0")
        assert [i.label for i in drive.images] == ["d0-A.qcow2", "d0-B.qcow2"]
        [left] = drive.leftovers
        assert left.labels == ("d0-D.qcow2", "d0-C.qcow2")
        assert left.deletable == ("libvirt-1-format", "libvirt-1-storage", "libvirt-2-format", "libvirt-2-storage")
        # the mirror refusal names them
        from tui.backend import ops
        from tui.backend.errors import ValidationError

        try:
            ops.plan_mirror(drive, str(lab.dir / "m.qcow2"), "qcow2", "full", None, "m1")
        except ValidationError as exc:
            assert "d0-D.qcow2 (libvirt-1-format)" in exc.message and "d0-C.qcow2 (libvirt-2-format)" in exc.message
        else:
            raise AssertionError("mirror not refused")
        # shown on the drive
        panel = main(app).query_one("#drives", DrivesPanel)
        await until(pilot, lambda: "left open: d0-D.qcow2, d0-C.qcow2" in str(
            [o.prompt for o in panel._options]), what="leftover on the drive")
        main(app).query_one("#graph").focus()
        await pilot.press("o")
        dlg = await until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and app.screen, what="confirmation")
        title = str(dlg.query_one("#dialog-title").render())
        assert "libvirt-1-format" in title and "virtio-disk0" in title and s in title
        body = str(dlg.query_one("#confirm-body").render())
        assert str(vm.disks[0][-1]) in body and str(vm.q.qmp) in body
        await pilot.press("y")
        await until(pilot, lambda: not hub.drive(s, "virtio-disk0").leftovers, what="leftovers closed")
        # now the drive can be mirrored
        ops.plan_mirror(hub.drive(s, "virtio-disk0"), str(lab.dir / "m.qcow2"), "qcow2", "full", None, "m1")
        names = {n["node-name"] for n in await hub.sessions[s].execute("query-named-block-nodes", {"flat": True})}
        assert not names & {"libvirt-1-format", "libvirt-1-storage", "libvirt-2-format", "libvirt-2-storage"}
    vm.q.stop()
    same(lab, vm.disks[0][1], vm.refs[0])


async def test_old_chains_a_flatten_and_a_pivot_leave_open_are_the_drives_leftovers_not_drives(lab, hub, libvirt_vm):
    """-blockdev nodes stay open after a flatten (the old images below) and a mirror's pivot (the
    old chain): they share nothing with the chain now, and were shown as drives of their own
    ("libvirt-2-format · 3 images", "6 drives" for 2 disks). They are the leftovers of the drive
    that had them; closing them leaves QEMU without them."""
    from tui.backend import ops

    vm = libvirt_vm
    s = (await connect(hub, vm.q, drives=2)).name

    async def run_to_end(plan, pivot: bool = False) -> None:  # type: ignore[no-untyped-def]
        await hub.run_plan(plan)
        if pivot:
            await hub.wait_job(s, plan.job_ids[0], lambda j: j.ready)
            await hub.complete(s, plan.job_ids[0])
        await hub.wait_job(s, plan.job_ids[0], lambda j: j.finished)
        await hub.settle(s)
        await hub.refresh(s)
        assert sorted(d.name for d in hub.drives[s]) == ["virtio-disk0", "virtio-disk1"]

    from tui.backend.usage import Usage

    usage = Usage(hub)  # it has seen the chains: it says what leaves them
    usage.note_chains(s)
    d0 = hub.drive(s, "virtio-disk0")
    await run_to_end(ops.plan_stream(d0, None, None, hub.new_job_id("stream", d0)))
    assert any("no longer used by virtio-disk0: d0-A.qcow2, d0-B.qcow2, d0-C.qcow2 (still open in QEMU: o closes"
               in e.text for e in hub.log), [e.text for e in hub.log]
    d0 = hub.drive(s, "virtio-disk0")
    assert [i.label for i in d0.images] == ["d0-D.qcow2"]
    [left] = d0.leftovers
    assert left.labels == ("d0-C.qcow2", "d0-B.qcow2", "d0-A.qcow2")
    # the image graph says they are still open in QEMU (not "on disk only": they cannot be deleted yet)
    graph = usage.graph()
    assert graph.describe(str(vm.disks[0][2].resolve())) == f"left open in {s} by a job of virtio-disk0"

    d1 = hub.drive(s, "virtio-disk1")
    target = vm.disks[1][-1].with_name("d1-B-mirror.qcow2")
    await run_to_end(ops.plan_mirror(d1, str(target), "qcow2", "full", None, hub.new_job_id("mirror", d1)), pivot=True)
    d1 = hub.drive(s, "virtio-disk1")
    assert [i.label for i in d1.images] == ["d1-B-mirror.qcow2"]
    [old] = d1.leftovers
    assert old.labels == ("d1-B.qcow2", "d1-A.qcow2")

    for name, leftover in (("virtio-disk0", left), ("virtio-disk1", old)):
        await hub.run_plan(ops.plan_close_leftover(hub.drive(s, name), leftover, vm.q.qmp.name))
    await hub.settle(s)
    await hub.refresh(s)
    assert not hub.drive(s, "virtio-disk0").leftovers and not hub.drive(s, "virtio-disk1").leftovers
    names = {n["node-name"] for n in await hub.sessions[s].execute("query-named-block-nodes", {"flat": True})}
    assert not names & set(left.deletable + old.deletable)
    vm.q.stop()
    same(lab, vm.disks[0][-1], vm.refs[0])
    same(lab, target, vm.refs[1])


async def test_leftover_after_active_commit_on_qsd(lab, hub):
    from tui.backend import ops

    paths = lab.make_chain(4, 16 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    s = await connect(hub, q)
    await _active_commit(hub, s.name, "drive0", "B.qcow2")
    drive = hub.drive(s.name, "drive0")
    assert [i.label for i in drive.images] == ["A.qcow2", "B.qcow2"]
    [left] = drive.leftovers
    assert left.labels == ("D.qcow2", "C.qcow2") and left.deletable[0] == "D"
    await hub.run_plan(ops.plan_close_leftover(drive, left, s.address_text))
    await hub.settle(s.name)
    await hub.refresh(s.name)
    assert not hub.drive(s.name, "drive0").leftovers
    q.stop()
    same(lab, paths[1], ref)


# -- defect 9: ownership after a restart; every job's drive ------------------------------
async def test_restart_knows_its_own_jobs(lab, libvirt_vm, tmp_path):
    from tui.app import ChainApp
    from tui.backend import ops
    from tui.backend.hub import Hub
    from tui.backend.state import OwnedJobs
    from tui.screens.dialogs import ConfirmDialog

    from .uihelp import FIXED_CLOCK

    vm = libvirt_vm
    store = tmp_path / "state" / "jobs.json"
    target = str(lab.dir / "vd0 mirrör.qcow2")
    hub1 = Hub(poll_interval=0.05, owned=OwnedJobs(store))
    s = await connect(hub1, vm.q, drives=2)
    drive = hub1.drive(s.name, "virtio-disk0")
    plan = ops.plan_mirror(drive, target, "qcow2", "full", "256K", hub1.new_job_id("mirror", drive))
    await hub1.run_plan(plan)
    job_id = plan.job_ids[0]
    await hub1.close()  # chaintui quits; the job goes on in QEMU

    app = ChainApp([vm.qmp], hub=Hub(poll_interval=0.05, owned=OwnedJobs(store)), clock=FIXED_CLOCK)
    async with app.run_test(size=(120, 40)) as pilot:
        j = await until(pilot, lambda: app.hub.tracker.get(s.name, job_id), what="the job after the restart")
        await until(pilot, lambda: j.started_by_us and j.target == target and j.drive == "virtio-disk0",
                    what="ownership, target and drive restored")
        app.request_quit()
        dlg = await until(pilot, lambda: isinstance(app.screen, ConfirmDialog) and app.screen, what="quit warning")
        await until(pilot, lambda: job_id in str(dlg.query_one("#confirm-body").render()), what="the job named")
        await pilot.press("n")
        await app.hub.cancel(s.name, job_id, force=True)
        await until(pilot, lambda: j.finished, what="cancelled")
        await until(pilot, lambda: not OwnedJobs(store).entries, what="the entry dropped")
    vm.q.stop()
    same(lab, vm.disks[0][-1], vm.refs[0])


async def test_fast_job_of_another_client_on_a_node_name_gets_its_drive(lab, hub):
    paths = lab.make_chain(3, 4 * MiB, absolute=True)
    other = lab.make_chain(2, 4 * MiB, prefix="o-", absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start([paths[-1], other[-1]], named_nodes=True)
    s = await connect(hub, q, drives=2)
    # another tool streams by node name (qemu-storage-daemon has no device names); done in milliseconds
    await other_client(q, ("block-stream", {"job-id": "fast1", "device": "C"}))
    j = await wait_for(lambda: hub.tracker.get(s.name, "fast1"), what="the other client's job")
    await wait_for(lambda: j.finished, what="its end")
    await wait_for(lambda: j.drive == "drive0", timeout=5, what="its drive resolved")
    q.stop()
    same(lab, paths[-1], ref)


# -- smaller things --------------------------------------------------------------------
async def test_target_named_img_is_mirrored_raw(lab, libvirt_vm):
    from textual.widgets import Select

    from tui.widgets.path_input import PathInput

    vm = libvirt_vm
    target = lab.dir / "disk0 cöpy.img"
    async with running_app([vm.qmp]) as (app, pilot):
        await pilot.press("m")
        dlg = await until(pilot, lambda: type(app.screen).__name__ == "PlanDialog" and app.screen, what="dialog")
        assert "-mirror-mirror" not in dlg.query_one("#field-target", PathInput).value
        dlg.query_one("#field-target", PathInput).value = str(target)
        await until(pilot, lambda: dlg.query_one("#field-format", Select).value == "raw", what="format raw")
        # the check runs in a worker once typing stops: wait for the preview of the raw target
        preview = await until(pilot, lambda: (p := str(dlg.query_one("#preview").render())) and "cöpy" in p and p,
                              what="the preview of the raw target")
        assert "A raw target has no backing file: the whole disk is copied into it" in preview
        qmp = str(dlg.query_one("#qmp").render())
        assert '"format": "raw"' in qmp and "cöpy" in qmp
        await pilot.press("ctrl+s")
        s = next(iter(app.hub.sessions))
        j = await until(pilot, lambda: app.hub.tracker.get(s, "mirror-virtio-disk0-1"), what="job")
        await until(pilot, lambda: j.ready, what="ready")
        await app.hub.cancel(s, j.id)
        await until(pilot, lambda: j.finished, what="cancelled after ready")
    vm.q.stop()
    assert lab.info(target)[0]["format"] == "raw"
    same(lab, target, vm.refs[0])


async def test_qcow2_format_for_img_name_warns(hub, libvirt_vm, lab):
    from tui.backend import ops

    s = await connect(hub, libvirt_vm.q, drives=2)
    plan = ops.plan_mirror(hub.drive(s.name, "virtio-disk1"), str(lab.dir / "x.img"), "qcow2", "full", None, "m1")
    assert any("ends in .img but the format is qcow2" in w for w in plan.warnings)


async def test_merge_on_single_image_refused_at_once(lab):
    paths = lab.make_chain(1, 4 * MiB)
    q = lab.start(paths[-1])
    async with running_app([str(q.qmp)]) as (app, pilot):
        await pilot.press("s")
        await until(pilot, lambda: any("nothing to merge" in m for m, _ in app.notices),
                    what="the reason")
        assert type(app.screen).__name__ == "MainScreen"


async def test_suggested_names_do_not_compound(hub, lab):
    from tui.backend import targets

    paths = lab.make_chain(2, 4 * MiB, names=["A", "A-mirror"])
    q = lab.start(paths[-1])
    s = await connect(hub, q)
    assert targets.suggest_target(hub.drive(s.name, "drive0"), "mirror") == str(lab.dir / "A-mirror-2.qcow2")
    assert targets.suggest_target(hub.drive(s.name, "drive0"), "snap") == str(lab.dir / "A-snap.qcow2")


async def test_traffic_view_shows_replies_and_errors(hub, lab):
    from tui.backend.errors import QMPCommandError
    from tui.screens.traffic import job_traffic

    paths = lab.make_chain(2, 16 * MiB)
    q = lab.start(paths[-1])
    s = await connect(hub, q)
    await hub.execute(s.name, "block-stream", {"job-id": "s1", "device": "B", "speed": 4096}, job="s1")
    try:
        await hub.execute(s.name, "block-job-set-speed", {"device": "s1", "speed": -1}, job="s1")
    except QMPCommandError:
        pass
    else:
        raise AssertionError("QEMU accepted a negative speed")
    await hub.execute(s.name, "block-job-cancel", {"device": "s1", "force": True}, job="s1")
    lines = job_traffic(hub.log, s.name, "s1")
    text = "\n".join(lines)
    assert '← {"return": {}}' in text
    assert '← {"error": {"class": "GenericError"' in text
    assert text.index('"speed": -1') < text.index('"error"')


async def test_job_on_drive_vm_addresses_the_drive_id_and_shows_the_device_id(hub, drive_vm, lab):
    from tui.backend import ops

    vm = drive_vm
    s = await connect(hub, vm.q, drives=2)
    drive = hub.drive(s.name, "virtio-disk0")
    plan = ops.plan_stream(drive, "d0-B.qcow2", None, hub.new_job_id("stream", drive))
    assert plan.steps[0].arguments["device"] == "drive0" and plan.job_ids == ["stream-virtio-disk0-1"]
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s.name, job.id, lambda j: j.finished)
    assert job.outcome == "completed" and job.drive == "virtio-disk0"
    assert await chain_of(hub, s.name, "virtio-disk0") == ["d0-A.qcow2", "d0-B.qcow2", "d0-D.qcow2"]
    vm.q.stop()
    same(lab, vm.disks[0][-1], vm.refs[0])
