"""The image graph beyond one drive (issue 15), on real QEMU.

Two qemu-storage-daemon processes whose chains share a base, plus an overlay of
that base on disk that no process has open: who uses what, the commit into the
shared base refused before anything is sent (and the override, audited), and
cleanup after a merge that refuses what is still needed, with the reason.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from tui.backend import ops
from tui.backend.audit import AuditLog
from tui.backend.errors import QMPCommandError, ValidationError
from tui.backend.hub import Hub
from tui.backend.lab import Lab, MiB, run
from tui.backend.disk_scan import DiskScanner
from tui.backend.image_graph import ImageGraph, describe_dependents, image_key, shared_with_others
from tui.backend.usage import Usage
from tui.screens import graph as graph_screen
from tui.screens.cleanup import CleanupDialog
from tui.screens.graph import GraphScreen
from tui.widgets.image_tree import ImageTree, layout

from .conftest import connect, wait_for
from .uihelp import PlanDialog, checked, dialog, main, press, problem, running_app, same, until



def overlay(lab: Lab, name: str, backing: Path) -> Path:
    path = lab.dir / name
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "qcow2", str(path), str(64 * MiB)])
    return path


def shared_lab(lab: Lab):
    """base.qcow2 <- vm1-B <- vm1-C (qsd1); base <- vm2 (qsd2); base <- idle.qcow2 (no process)."""
    [base] = lab.make_chain(1, 64 * MiB, names=["base"], absolute=True)
    b = overlay(lab, "vm1-B.qcow2", base)
    lab.fill(b, 4 * MiB, MiB, 0x42)
    c = overlay(lab, "vm1-C.qcow2", b)
    lab.fill(c, 8 * MiB, MiB, 0x43)
    vm2 = overlay(lab, "vm2.qcow2", base)
    lab.fill(vm2, 12 * MiB, MiB, 0x44)
    idle = overlay(lab, "idle.qcow2", base)
    q1 = lab.start(c, name="qsd1")
    q2 = lab.start(vm2, name="qsd2")
    return base, b, c, vm2, idle, q1, q2


# -- scanner ---------------------------------------------------------------
def test_scan_cached_unreadable_and_cancel(lab, tmp_path):
    paths = lab.make_chain(3, 64 * MiB, absolute=True, data=False)
    (lab.dir / "junk.qcow2").write_bytes(b"QFI\xfb" + b"\xff" * 60)  # a broken qcow2 header
    (lab.dir / "notes.txt").write_text("hello")
    scanner = DiskScanner()
    seen = []
    first = scanner.scan([str(lab.dir)], progress=lambda d, t: seen.append((d, t)))
    assert set(first.images) == {str(p.resolve()) for p in paths}
    assert first.unreadable == 1 and first.files == 4  # junk.qcow2 counted, notes.txt not an image
    assert first.images[str(paths[2].resolve())].backing == str(paths[1].resolve())
    assert seen[-1] == (4, 4)
    again = scanner.scan([str(lab.dir)])
    assert again.cached == 4 and again.images == first.images
    os.utime(paths[0], ns=(1, 1))  # another mtime: read again
    third = scanner.scan([str(lab.dir)])
    assert third.cached == 3
    stop = threading.Event()
    stop.set()
    cold = DiskScanner().scan([str(lab.dir)], cancel=stop)
    assert cold.cancelled and not cold.images
    assert "cancelled" in cold.summary()
    missing = DiskScanner().scan([str(tmp_path / "nope")])
    assert missing.unreadable == 1 and not missing.images


# -- who uses what ---------------------------------------------------------
async def test_shared_base_graph_and_commit_refused(lab, tmp_path):
    base, b, c, vm2, idle, q1, q2 = shared_lab(lab)
    audit = AuditLog(tmp_path / "audit.jsonl")
    hub = Hub(poll_interval=0.05, audit=audit)
    try:
        s1 = await connect(hub, q1)
        s2 = await connect(hub, q2)
        usage = Usage(hub)
        result = await usage.scan()
        assert {os.path.basename(p) for p in result.images} >= {"base.qcow2", "vm1-B.qcow2", "idle.qcow2"}
        graph = usage.graph()
        root = str(base.resolve())
        assert graph.roots[0] == root
        node = graph.nodes[root]
        assert [graph.nodes[k].label for k in node.children] == ["vm1-B.qcow2", "vm2.qcow2", "idle.qcow2"]
        assert {u.drive + "@" + u.session for u in node.live} == {f"drive0@{s1.name}", f"drive0@{s2.name}"}
        assert all(u.read_only for u in node.live)
        assert graph.describe(str(idle.resolve())) == "on disk only"
        assert graph.describe(str(c.resolve())) == f"drive0@{s1.name} rw active"
        assert graph.overlays_on_disk(root) and str(idle.resolve()) in graph.overlays_on_disk(root)
        rows = layout(graph)
        assert [r.lead for r in rows[:5]] == ["", "├─", "│ ", "├─", "└─"]  # vm1-C sits under vm1-B

        # committing qsd1's top into the shared base: refused before anything is sent
        drive = hub.drive(s1.name, "drive0")
        shared = describe_dependents(graph, shared_with_others(graph, drive, image_key(s1.name, drive.base)))
        assert len(shared) == 2
        assert any("vm2.qcow2" in t and "drive0@" in t for t in shared)
        assert any("idle.qcow2" in t and "on disk only" in t for t in shared)
        sent_before = sum(1 for e in hub.log if e.kind == "action")
        with pytest.raises(ValidationError) as err:
            ops.plan_commit(drive, drive.base.node_name, None, 0, "commit-drive0-1", shared=shared)
        assert err.value.field == "override"
        assert "vm2.qcow2" in err.value.message and "idle.qcow2" in err.value.message
        assert sum(1 for e in hub.log if e.kind == "action") == sent_before
        assert not list(audit.read())

        # the intermediate commit (vm1-B into base) is refused too
        with pytest.raises(ValidationError):
            ops.plan_commit(drive, drive.base.node_name, drive.images[1].node_name, 0, "c", shared=shared)

        # with the override it proceeds, and the audit trail says so first; QEMU's own lock
        # still stops it while qsd2 (a live process on this host) has the base open
        plan = ops.plan_commit(drive, drive.base.node_name, None, 0, "commit-drive0-1", shared=shared, override=True)
        assert "these 2 images will see changed data" in plan.warnings[0]
        with pytest.raises(QMPCommandError, match="lock"):
            await hub.run_plan(plan)
        entries = list(audit.read())
        assert entries[0]["command"] == "override-shared-image-refusal"
        assert len(entries[0]["arguments"]["images"]) == 2
        assert entries[1]["command"] == "block-commit" and not entries[1]["ok"]

        # qsd2 shut down: vm2 is an overlay on disk only now, which no lock protects:
        # chaintui still refuses, and with the override QEMU runs the commit
        await hub.remove(s2.name)
        q2.stop()
        usage.scanner = DiskScanner()
        await usage.scan()
        graph = usage.graph()
        assert graph.describe(str(vm2.resolve())) == "on disk only"
        shared = describe_dependents(graph, shared_with_others(graph, drive, image_key(s1.name, drive.base)))
        assert len(shared) == 2
        with pytest.raises(ValidationError):
            ops.plan_commit(drive, drive.base.node_name, None, 0, "commit-drive0-2", shared=shared)
        plan = ops.plan_commit(drive, drive.base.node_name, None, 0, "commit-drive0-2", shared=shared, override=True)
        [job] = await hub.run_plan(plan)
        await hub.wait_job(s1.name, job.id, lambda j: j.ready or j.finished)
        assert job.ready
        entries = list(audit.read())
        assert [e["command"] for e in entries[2:]] == ["override-shared-image-refusal", "block-commit"]
        assert entries[3]["ok"]
        await hub.cancel(s1.name, job.id)
        await hub.wait_job(s1.name, job.id, lambda j: j.finished)
    finally:
        await hub.close()


async def test_a_killed_qemus_images_are_shown_as_last_seen_not_in_use_now(lab):
    """kill -9 of one QEMU: its images are not shown as written now ("rw active"): they say as
    last seen; a commit into the shared base still counts them (the QEMU may come back)."""
    base, b, c, vm2, idle, q1, q2 = shared_lab(lab)
    hub = Hub(poll_interval=0.05)
    try:
        s1 = await connect(hub, q1)
        s2 = await connect(hub, q2)
        usage = Usage(hub)
        graph = usage.graph()
        assert graph.describe(str(vm2.resolve())) == f"drive0@{s2.name} rw active"
        assert graph.nodes[str(vm2.resolve())].active
        q2.kill()
        await wait_for(lambda: not hub.sessions[s2.name].connected, what="qsd2 seen gone")
        graph = usage.graph()
        state = hub.sessions[s2.name].state.value
        assert graph.describe(str(vm2.resolve())) == f"drive0@{s2.name} rw active (✗ {state}: as last seen)"
        assert not graph.nodes[str(vm2.resolve())].active
        assert not graph.nodes[str(vm2.resolve())].live_now and graph.nodes[str(c.resolve())].live_now
        assert graph.nodes[str(base.resolve())].live_now  # qsd1 still has it
        assert graph.describe(str(c.resolve())) == f"drive0@{s1.name} rw active"
        assert f"drive0@{s2.name} ro (✗ {state}: as last seen)" in graph.describe(str(base.resolve()))
        drive = hub.drive(s1.name, "drive0")
        shared = describe_dependents(graph, shared_with_others(graph, drive, image_key(s1.name, drive.base)))
        assert any("vm2.qcow2" in t and "as last seen" in t for t in shared), shared
    finally:
        await hub.close()


async def test_open_graph_follows_a_chain_change_built_off_the_ui_thread(lab, monkeypatch):
    """The graph is open when a snapshot adds an image: the tree shows it, and the model behind it
    was built in a thread, not on the UI loop (a 1000-image model takes ~45 ms)."""
    paths = lab.make_chain(3, 16 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    builders: list[str] = []
    model = graph_screen._model
    monkeypatch.setattr(graph_screen, "_model", lambda inputs: (builders.append(threading.current_thread().name),
                                                               model(inputs))[1])
    async with running_app([str(q.qmp)]) as (app, pilot):
        hub = app.hub
        s = await until(pilot, lambda: next(iter(hub.drives), None), what="drives")
        await hub.settle(s)
        await press(pilot, "g")
        screen = await until(pilot, lambda: isinstance(app.screen, GraphScreen) and app.screen, what="graph")
        tree = screen.query_one("#image-tree", ImageTree)
        await until(pilot, lambda: str(paths[-1].resolve()) in tree.graph.nodes, what="the chain")
        snap = paths[-1].with_name("S.qcow2")
        await hub.run_plan(ops.plan_snapshot(hub.drive(s, "drive0"), str(snap), "S"))
        await until(pilot, lambda: str(snap) in tree.graph.nodes and tree.highlighted is not None, what="the snapshot in the tree")
        assert str(snap) in tree.path  # still the drive's chain, now with the snapshot on top
        assert builders and threading.main_thread().name not in builders, builders
    q.stop()
    same(lab, snap, ref)


async def test_cleanup_after_merge_refuses_what_is_needed(lab, tmp_path):
    """After a merge: one still backing an overlay on disk, one open in another process, one a
    job's target are refused with the reason; the rest are deleted; every chain reads the same."""
    paths = lab.make_chain(7, 64 * MiB, absolute=True)  # A..G, G active
    a, b, c, d, e, f, g = paths
    x = overlay(lab, "X.qcow2", b)  # an idle overlay on disk needs B (and A)
    other = lab.make_chain(2, 64 * MiB, prefix="o-", absolute=True)
    refs = {p: lab.flatten(p) for p in (g, x, other[-1])}
    q1 = lab.start(g, name="qsd1")
    q2 = lab.start(other[-1], name="qsd2")
    audit = AuditLog(tmp_path / "audit.jsonl")
    hub = Hub(poll_interval=0.05, audit=audit)
    holder = None
    try:
        s1 = await connect(hub, q1)
        s2 = await connect(hub, q2)
        usage = Usage(hub)
        await hub.settle(s1.name)
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s1.name, "drive0"), None, 0, "stream-drive0-1"))
        await hub.wait_job(s1.name, job.id, lambda j: j.finished)
        assert job.outcome == "completed"
        await wait_for(lambda: len(usage.leftovers) == 6, what="six leftovers")
        assert set(usage.leftovers) == {str(p.resolve()) for p in (a, b, c, d, e, f)}
        assert all(v == f"no longer used by drive0 on {s1.name}" for v in usage.leftovers.values())
        assert any("no longer used by drive0" in e.text for e in hub.log)

        # C held open by another process; D the target of a running mirror of qsd2
        holder = subprocess.Popen(["sleep", "600"], stdin=open(c, "rb"))
        mirror = ops.plan_mirror(hub.drive(s2.name, "drive0"), str(d), "qcow2", "full", "64K", "mirror-drive0-1",
                                 mode="existing")
        [mjob] = await hub.run_plan(mirror)
        await hub.wait_job(s2.name, mjob.id, lambda j: j.status == "running")
        await hub.refresh(s2.name)

        checked = {os.path.basename(c_.path): c_ for c_ in await usage.check(usage.candidates())}
        reasons = {k: "; ".join(v.reasons) for k, v in checked.items()}
        assert "backing file of" in reasons["B.qcow2"] and "X.qcow2" in reasons["B.qcow2"]
        assert "backing file of" in reasons["A.qcow2"]
        assert "open in process" in reasons["C.qcow2"] and "(sleep)" in reasons["C.qcow2"]
        assert "target of job mirror-drive0-1" in reasons["D.qcow2"]
        assert checked["E.qcow2"].deletable and checked["F.qcow2"].deletable, reasons
        assert checked["E.qcow2"].size > 0

        deleted, refused = await usage.delete(list(checked.values()))
        assert sorted(os.path.basename(c_.path) for c_ in deleted) == ["E.qcow2", "F.qcow2"]
        assert sorted(os.path.basename(c_.path) for c_ in refused) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
        assert not e.exists() and not f.exists()
        assert all(p.exists() for p in (a, b, c, d, x))
        gone = [en for en in audit.read() if en["command"] == "delete-image"]
        assert sorted(os.path.basename(en["arguments"]["file"]) for en in gone) == ["E.qcow2", "F.qcow2"]
        assert all(en["drive"] == "drive0" for en in gone)

        await hub.cancel(s2.name, mjob.id)
        await hub.wait_job(s2.name, mjob.id, lambda j: j.finished)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        await hub.close()
    q1.stop()
    q2.stop()
    for path, ref in refs.items():
        same(lab, path, ref)
    run(["qemu-img", "check", "-q", str(x)])


async def test_deleting_checks_the_lock(lab):
    """An image locked by a running QEMU (seen without /proc: the lock) is refused."""
    [lone] = lab.make_chain(1, 64 * MiB, names=["lone"], absolute=True)
    q = lab.start(lone, name="locker")
    try:
        from tui.backend.deletion import lock_problem

        assert "lock" in (lock_problem(str(lone)) or "")
    finally:
        q.stop()
    from tui.backend.deletion import lock_problem

    assert lock_problem(str(lone)) is None


def test_images_of_one_name_in_different_directories_are_told_apart():
    from tui.backend.disk_scan import DiskImage

    paths = ["/srv/vm1/disk.qcow2", "/srv/vm2/disk.qcow2", "/a/x/b/d.qcow2", "/c/x/b/d.qcow2", "/srv/base.qcow2"]
    disk = {p: DiskImage(p, "qcow2", MiB, None, None) for p in paths}
    g = ImageGraph.build([], [], disk)
    assert {k: n.label for k, n in g.nodes.items()} == {
        "/srv/vm1/disk.qcow2": "vm1/disk.qcow2", "/srv/vm2/disk.qcow2": "vm2/disk.qcow2",
        "/a/x/b/d.qcow2": "a/x/b/d.qcow2", "/c/x/b/d.qcow2": "c/x/b/d.qcow2", "/srv/base.qcow2": "base.qcow2"}


def test_graph_unit_200_overlays_and_loop():
    from tui.backend.disk_scan import DiskImage

    disk = {"/i/base": DiskImage("/i/base", "qcow2", 1 << 30, 1 << 20, None)}
    for i in range(200):
        disk[f"/i/o{i:03d}"] = DiskImage(f"/i/o{i:03d}", "qcow2", 1 << 30, 1 << 16, "/i/base")
    disk["/i/p"] = DiskImage("/i/p", "qcow2", 1, 1, "/i/q")
    disk["/i/q"] = DiskImage("/i/q", "qcow2", 1, 1, "/i/p")  # a broken loop: still shown, once each
    g = ImageGraph.build([], [], disk)
    rows = layout(g)
    assert len(rows) == 203 and rows[0].key == "/i/base"
    assert rows[200].lead == "└─" and all(r.lead == "├─" for r in rows[1:200])
    assert {r.key for r in rows[201:]} == {"/i/p", "/i/q"}
    assert len(g.dependents("/i/base")) == 200


# -- the UI ----------------------------------------------------------------
async def test_graph_screen_keys_commit_override_and_cleanup(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    base, b, c, vm2, idle, q1, q2 = shared_lab(lab)
    async with running_app([str(q1.qmp), str(q2.qmp)]) as (app, pilot):
        hub = app.hub
        for s in list(hub.sessions):
            await until(pilot, lambda s=s: hub.drives.get(s), what="drives")
            await hub.settle(s)
        await press(pilot, "g")
        screen = await until(pilot, lambda: isinstance(app.screen, GraphScreen) and app.screen, what="graph")
        tree = screen.query_one("#image-tree", ImageTree)
        await until(pilot, lambda: str(idle.resolve()) in tree.graph.nodes, what="scan shown")
        root = str(base.resolve())
        assert tree.rows[0].key == root
        assert len(tree.graph.nodes[root].children) == 3
        assert tree.highlighted == str(c.resolve())  # opens on the selected drive's active image
        assert tree.path == {root, str(b.resolve()), str(c.resolve())}
        await press(pilot, "home")
        assert "used by: drive0@" in str(screen.query_one("#graph-details").render())
        await press(pilot, "enter")  # the base has two users: enter switches to the other drive's chain
        assert str(vm2.resolve()) in tree.path
        await press(pilot, "escape")
        await until(pilot, lambda: app.screen is main(app), what="back")

        # commit into the shared base: refused in the dialog, the checkbox is the way on
        await press(pilot, "home", "c")
        dlg = await dialog(pilot, app)
        error = problem(dlg, "override")
        assert "idle.qcow2" in error and "vm2.qcow2" in error
        assert dlg.plan is None and dlg.query_one("#confirm").disabled
        await press(pilot, "enter")
        assert isinstance(app.screen, PlanDialog)  # nothing started
        assert not any(e.kind == "action" for e in hub.log)
        box = dlg.query_one("#field-override")
        # not ticked reads as not ticked without colour too: an empty box, not a dimmed X
        assert box.render().plain.startswith("▐ ▌")
        box.value = True
        await until(pilot, lambda: dlg.plan is not None, what="override accepted")
        assert box.render().plain.startswith("▐X▌")
        await checked(pilot, dlg)
        assert "commit anyway" in str(dlg.query_one("#preview").render()).lower()
        # sent with the override: audited first; QEMU's own lock still refuses while qsd2 runs
        hub.audit = AuditLog(tmp_path / "audit.jsonl")
        await press(pilot, "ctrl+s")
        await until(pilot, lambda: len(list(hub.audit.read())) == 2, what="audited")
        first, second = hub.audit.read()
        assert first["command"] == "override-shared-image-refusal" and len(first["arguments"]["images"]) == 2
        assert second["command"] == "block-commit" and not second["ok"] and "lock" in second["error"]["desc"]

        # the merge dialog: the images below stay untouched, the shared ones usable
        await press(pilot, "home", "s")
        dlg = await dialog(pilot, app)
        preview = str(dlg.query_one("#preview").render())
        assert "stay untouched" in preview and "stay usable" in preview and "idle.qcow2" in preview
        await press(pilot, "escape")

        # no leftovers yet: the Delete key says so
        await press(pilot, "delete")
        assert not isinstance(app.screen, CleanupDialog)


async def test_cleanup_dialog_after_merge(lab, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    paths = lab.make_chain(3, 64 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    async with running_app([str(q.qmp)]) as (app, pilot):
        hub = app.hub
        hub.audit = AuditLog(tmp_path / "audit.jsonl")
        s = next(iter(hub.sessions))
        await hub.settle(s)
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive0"), None, 0, "stream-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.finished)
        await until(pilot, lambda: len(app.usage.leftovers) == 2, what="leftovers")
        await press(pilot, "delete")
        dlg = await until(pilot, lambda: isinstance(app.screen, CleanupDialog) and app.screen, what="cleanup")
        body = str(dlg.query_one("#cleanup-body").render())
        assert "A.qcow2" in body and "B.qcow2" in body and "Delete 2 images" in body
        await press(pilot, "y")
        await until(pilot, lambda: not paths[0].exists() or app.screen is main(app), what="done")
        await until(pilot, lambda: not paths[0].exists() and not paths[1].exists(), what="deleted")
        deletions = lambda: [en for en in hub.audit.read() if en["command"] == "delete-image"]  # noqa: E731
        await until(pilot, lambda: len(deletions()) == 2, what="audited")
    q.stop()
    same(lab, paths[-1], ref)


# -- the command line ------------------------------------------------------
def test_cli_users_and_chains_json(lab):
    import json
    import sys

    base, b, c, vm2, idle, q1, q2 = shared_lab(lab)

    def chaintui(*args):
        env = dict(os.environ, XDG_CONFIG_HOME=str(lab.dir / "noconfig"))
        return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True, timeout=60, env=env)

    out = chaintui("users", str(base), str(q1.qmp), str(q2.qmp))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "drive0 on qsd1.qmp: read-only, in its backing chain" in text
    assert "drive0 on qsd2.qmp: read-only, in its backing chain" in text
    assert "qemu-storage" in text  # the processes holding it
    assert f"{idle.resolve()}: on disk only" in text
    assert f"{c.resolve()} (indirectly): drive0@qsd1.qmp rw active" in text
    js = json.loads(chaintui("users", "--json", str(base), str(q1.qmp)).stdout)
    assert {o["file"] for o in js["overlays"] if o["direct"]} == {str(p.resolve()) for p in (b, vm2, idle)}
    assert len(js["processes"]) == 2
    data = json.loads(chaintui("chains", "--json", str(q1.qmp), str(q2.qmp)).stdout)
    chain = data["qemus"][0]["drives"][0]["chain"]
    assert [u["qemu"] for u in chain[0]["users"]] == ["qsd1.qmp", "qsd2.qmp"]
    assert chain[0]["overlays-on-disk"] == [str(idle.resolve())]
    assert chain[-1]["users"][0]["active"] and chain[-1]["overlays-on-disk"] == []
    missing = chaintui("users", str(lab.dir / "nope.qcow2"))
    assert missing.returncode == 1 and "no such file" in missing.stderr
