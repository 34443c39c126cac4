"""Every operation against real QEMU, with the data checked by qemu-img compare.

Each test makes a chain with known data, flattens it into a reference first,
runs the job (often while a writer plays the guest through the NBD export and
the same writes go to the reference), lets QEMU close the images, then
compares what the guest sees with the reference.
"""

from __future__ import annotations


import pytest
from qemu.qmp import QMPClient

from tui.backend import ops
from tui.backend.errors import QMPCommandError, ValidationError
from tui.backend.hub import Hub

from .conftest import MiB, chain_of, connect, same, wait_for

KINDS = ["qsd", "system"]


async def setup(lab, hub, kind="qsd", n=4, size=64 * MiB):
    paths = lab.make_chain(n, size)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], kind=kind)
    session = await connect(hub, q)
    return paths, ref, q, session.name


def guest_write(lab, q, ref, offset, length, pattern):
    """A write by 'the guest' through NBD, applied to the reference as well."""
    q.write(offset, length, pattern)
    lab.fill(ref, offset, length, pattern)


async def finish(hub, q):
    await hub.close()
    q.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_stream_with_base_and_guest_writes(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    plan = ops.plan_stream(drive, "B.qcow2", "64K", hub.new_job_id("stream", drive))
    assert plan.before == "[A.qcow2] -> [B.qcow2] -> [C.qcow2] -> [D.qcow2]"
    assert plan.after == "[A.qcow2] -> [B.qcow2] -> [D.qcow2]"
    [job] = await hub.run_plan(plan)
    assert job.id == "stream-drive0-1"
    await hub.wait_job(s, job.id, lambda j: j.status == "running" or j.finished)
    # the guest writes while the job runs: over C's data, B's, and fresh areas
    guest_write(lab, q, ref, 8 * MiB + 4096, 64 * 1024, 0x5A)
    guest_write(lab, q, ref, 4 * MiB, 1 * MiB, 0x6B)
    guest_write(lab, q, ref, 40 * MiB, 512 * 1024, 0x7C)
    assert not hub.tracker.get(s, job.id).finished, "job should still be throttled"
    await hub.set_speed(s, job.id, 0)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "completed"
    await wait_for(lambda: hub.drive(s, "drive0").notation() == "[A.qcow2] -> [B.qcow2] -> [D.qcow2]", what="chain")
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2", "D.qcow2"]
    await finish(hub, q)
    same(lab, paths[-1], ref)
    assert lab.info(paths[-1])[0]["backing-filename"].endswith("B.qcow2")


async def test_stream_flatten(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    plan = ops.plan_stream(drive, None, 0, hub.new_job_id("stream", drive))
    assert plan.after == "[D.qcow2]"
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    assert await chain_of(hub, s) == ["D.qcow2"]
    await finish(hub, q)
    same(lab, paths[-1], ref)
    assert "backing-filename" not in lab.info(paths[-1])[0]


@pytest.mark.parametrize("kind", KINDS)
async def test_commit_intermediate(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    plan = ops.plan_commit(drive, "A.qcow2", "C.qcow2", "64K", hub.new_job_id("commit", drive))
    assert plan.after == "[A.qcow2] -> [D.qcow2]"
    assert "top-node" in plan.steps[0].arguments
    [job] = await hub.run_plan(plan)
    guest_write(lab, q, ref, 12 * MiB, 256 * 1024, 0x3C)
    await hub.set_speed(s, job.id, 0)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "completed"
    assert await chain_of(hub, s) == ["A.qcow2", "D.qcow2"]
    await finish(hub, q)
    same(lab, paths[-1], ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_active_commit_ready_then_finish(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    plan = ops.plan_commit(drive, "B.qcow2", None, "64K", hub.new_job_id("commit", drive))
    assert plan.title.startswith("Active commit")
    assert plan.after == "[A.qcow2] -> [B.qcow2]"
    [job] = await hub.run_plan(plan)
    guest_write(lab, q, ref, 9 * MiB, 128 * 1024, 0x4D)
    with pytest.raises(ValidationError, match="not ready yet"):
        await hub.complete(s, job.id)
    await hub.set_speed(s, job.id, 0)
    await hub.wait_job(s, job.id, lambda j: j.ready)
    guest_write(lab, q, ref, 20 * MiB, 64 * 1024, 0x4E)  # lands in the ready phase
    await hub.complete(s, job.id)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "completed: drive switched to the base"
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2"]
    # QEMU says ready twice (JOB_STATUS_CHANGE, BLOCK_JOB_READY): the log says it once
    assert [e.text for e in hub.log if e.text == f"job {job.id}: ready" and not e.quiet] == [f"job {job.id}: ready"]
    await finish(hub, q)
    same(lab, paths[1], ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_mirror_ready_then_finish_moves_drive(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "moved" / "D-new.qcow2"
    target.parent.mkdir()
    plan = ops.plan_mirror(drive, str(target), "qcow2", "top", "4M", hub.new_job_id("mirror", drive))
    [job] = await hub.run_plan(plan)
    guest_write(lab, q, ref, 12 * MiB, 1 * MiB, 0x21)
    await hub.set_speed(s, job.id, 0)
    await hub.wait_job(s, job.id, lambda j: j.ready)
    assert hub.tracker.get(s, job.id).target == str(target)
    guest_write(lab, q, ref, 30 * MiB, 64 * 1024, 0x22)
    await hub.complete(s, job.id)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "completed: drive switched to the target"
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D-new.qcow2"]
    await finish(hub, q)
    same(lab, target, ref)


async def test_mirror_full_raw(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "flat.raw"
    plan = ops.plan_mirror(drive, str(target), "raw", "full", 0, hub.new_job_id("mirror", drive))
    assert plan.after.startswith("[flat.raw]")
    assert any("thin provisioning" in w for w in plan.warnings)
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.ready)
    guest_write(lab, q, ref, 2 * MiB, 64 * 1024, 0x31)
    await hub.complete(s, job.id)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    assert await chain_of(hub, s) == ["flat.raw"]
    await finish(hub, q)
    same(lab, target, ref)


async def test_mirror_cancel_after_ready_keeps_source_and_consistent_copy(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "copy.qcow2"
    plan = ops.plan_mirror(drive, str(target), "qcow2", "full", 0, hub.new_job_id("mirror", drive))
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.ready)
    guest_write(lab, q, ref, 5 * MiB, 64 * 1024, 0x41)  # done once it returns (NBD): the mirror has it dirty
    # cancelling a ready mirror ends it only once the copy is in sync (no pivot): no wait is needed before
    await hub.cancel(s, job.id)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome.startswith("cancelled after ready")
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
    await finish(hub, q)
    same(lab, paths[-1], ref)
    same(lab, target, ref)


async def test_mirror_cancel_before_ready(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "half.qcow2"
    plan = ops.plan_mirror(drive, str(target), "qcow2", "full", "64K", hub.new_job_id("mirror", drive))
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.status == "running")
    await hub.cancel(s, job.id)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "cancelled"
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
    await finish(hub, q)
    same(lab, paths[-1], ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_snapshot(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "E.qcow2"
    plan = ops.plan_snapshot(drive, str(target), hub.new_node_name(str(target), drive))
    assert plan.after.endswith("[D.qcow2] -> [E.qcow2]")
    assert await hub.run_plan(plan) == []
    assert await chain_of(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2", "E.qcow2"]
    guest_write(lab, q, ref, 0, 64 * 1024, 0x51)
    await finish(hub, q)
    same(lab, target, ref)


@pytest.mark.parametrize("kind", KINDS)
async def test_copy_snapshot_then_stream(lab, hub: Hub, kind):
    paths, ref, q, s = await setup(lab, hub, kind)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "copy.qcow2"
    plan = ops.plan_copy(
        drive, str(target), "stream", "qcow2", "64K", hub.new_job_id("copy", drive),
        hub.new_node_name(str(target), drive),
    )
    assert [st.command for st in plan.steps] == ["blockdev-snapshot-sync", "block-stream"]
    [job] = await hub.run_plan(plan)
    old_ref = lab.flatten(paths[-1])  # D is frozen at the snapshot: a point-in-time copy
    guest_write(lab, q, ref, 6 * MiB, 64 * 1024, 0x61)
    await hub.set_speed(s, job.id, 0)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    assert await chain_of(hub, s) == ["copy.qcow2"]
    await finish(hub, q)
    same(lab, target, ref)
    same(lab, paths[-1], old_ref)


async def test_copy_full_mirror_raw(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    target = lab.dir / "copy.raw"
    plan = ops.plan_copy(drive, str(target), "mirror", "raw", 0, hub.new_job_id("copy", drive), "unused")
    assert plan.steps[0].arguments["sync"] == "full"
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.ready)
    await hub.cancel(s, job.id)  # keep the source: the target is the copy
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await finish(hub, q)
    same(lab, target, ref)
    same(lab, paths[-1], ref)


async def test_pause_resume_and_speed(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    drive = hub.drive(s, "drive0")
    [job] = await hub.run_plan(ops.plan_stream(drive, None, "64K", hub.new_job_id("stream", drive)))
    assert await hub.toggle_pause(s, job.id) is True
    await hub.wait_job(s, job.id, lambda j: j.paused)
    assert hub.tracker.get(s, job.id).state_text == "paused"
    assert await hub.toggle_pause(s, job.id) is False
    await hub.wait_job(s, job.id, lambda j: not j.paused)
    await hub.set_speed(s, job.id, 128 * 1024)
    await hub.wait_job(s, job.id, lambda j: j.speed == 128 * 1024)
    blockjobs = await hub.sessions[s].execute("query-block-jobs")
    assert blockjobs[0]["speed"] == 128 * 1024
    await hub.set_speed(s, job.id, 0)
    job = await hub.wait_job(s, job.id, lambda j: j.finished)
    assert job.outcome == "completed"
    await hub.dismiss(s, job.id)
    assert hub.tracker.get(s, job.id) is None
    await finish(hub, q)
    same(lab, paths[-1], ref)


async def test_jobs_on_two_drives_and_two_qemus(lab, hub: Hub):
    a = lab.make_chain(3, 64 * MiB, prefix="x")
    b = lab.make_chain(3, 64 * MiB, prefix="y")
    c = lab.make_chain(3, 64 * MiB, prefix="z")
    refs = [lab.flatten(p[-1]) for p in (a, b, c)]
    q1 = lab.start([a[-1], b[-1]], kind="qsd")
    q2 = lab.start(c[-1], kind="system")
    s1 = (await connect(hub, q1, drives=2)).name
    s2 = (await connect(hub, q2)).name
    assert [d.name for d in hub.drives[s1]] == ["drive0", "drive1"]
    started = []
    for s, name in ((s1, "drive0"), (s1, "drive1"), (s2, "drive0")):
        d = hub.drive(s, name)
        started += await hub.run_plan(ops.plan_stream(d, None, "64K", hub.new_job_id("stream", d)))
    assert len({(j.session, j.id) for j in started}) == 3
    await wait_for(lambda: all(j.status == "running" for j in started), what="three running jobs")
    # at 64K/s each: all three move at once, and none can have finished yet
    await wait_for(lambda: all(j.offset > 0 for j in started), what="progress on all three")
    for j in started:
        assert j.drive is not None and not j.finished
    for j in started:
        await hub.set_speed(j.session, j.id, 0)
    for j in started:
        await hub.wait_job(j.session, j.id, lambda x: x.finished)
        assert j.outcome == "completed"
    assert await chain_of(hub, s1, "drive0") == ["xC.qcow2"]
    assert await chain_of(hub, s1, "drive1") == ["yC.qcow2"]
    assert await chain_of(hub, s2, "drive0") == ["zC.qcow2"]
    await hub.close()
    q1.stop()
    q2.stop()
    for p, ref in zip((a, b, c), refs):
        same(lab, p[-1], ref)


async def test_job_started_by_another_client_shows_up(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    other = QMPClient("other")
    await other.connect(str(q.spare))
    try:
        await other.execute("block-stream", {"job-id": "theirs", "device": "D", "speed": 65536})
        job = await hub.wait_job(s, "theirs", lambda j: j.drive == "drive0", timeout=10)
        assert job.type == "stream" and not job.started_by_us
        await other.execute("block-job-cancel", {"device": "theirs"})
        job = await hub.wait_job(s, "theirs", lambda j: j.finished)
        assert job.outcome == "cancelled"
    finally:
        await other.disconnect()
    await finish(hub, q)
    same(lab, paths[-1], ref)


async def test_reattach_to_running_job(lab):
    paths = lab.make_chain(4, 64 * MiB)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    first = Hub(poll_interval=0.05)
    s = (await connect(first, q)).name
    d = first.drive(s, "drive0")
    [job] = await first.run_plan(ops.plan_stream(d, None, "64K", first.new_job_id("stream", d)))
    await first.wait_job(s, job.id, lambda j: j.offset > 0 or j.status == "running")
    await first.close()  # chaintui goes away; the job goes on inside QEMU
    second = Hub(poll_interval=0.05)
    try:
        s2 = (await connect(second, q)).name
        again = await second.wait_job(s2, job.id, lambda j: j.drive == "drive0" and j.length > 0)
        assert again.type == "stream" and again.active
        assert "stream-drive0-2" == second.new_job_id("stream", second.drive(s2, "drive0"))
        await second.set_speed(s2, job.id, 0)
        await second.wait_job(s2, job.id, lambda j: j.finished)
    finally:
        await second.close()
    q.stop()
    same(lab, paths[-1], ref)


async def test_lost_connection_and_reconnect(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    d = hub.drive(s, "drive0")
    [job] = await hub.run_plan(ops.plan_stream(d, None, "64K", hub.new_job_id("stream", d)))
    q.kill()
    sess = hub.sessions[s]
    await wait_for(lambda: sess.state.value == "lost", what="lost state")
    assert hub.tracker.get(s, job.id).state_text.startswith("lost")
    assert sess.last_error
    # a QEMU comes back on the same socket
    q2 = lab.start(paths[-1], name=q.qmp.stem)
    await wait_for(lambda: sess.state.value == "connected", timeout=15, what="reconnect")
    assert sess.generation == 2
    await wait_for(lambda: hub.tracker.get(s, job.id).finished, what="old job marked ended")
    assert hub.tracker.get(s, job.id).result == "lost"
    await wait_for(lambda: hub.drives[s] and hub.drives[s][0].notation().endswith("[D.qcow2]"), what="chain again")
    await finish(hub, q2)


@pytest.mark.parametrize("n", [1, 200])
async def test_chain_depth(lab, hub: Hub, n):
    paths = lab.make_chain(n, 16 * MiB, data=(n < 20))
    q = lab.start(paths[-1])
    s = (await connect(hub, q)).name
    # a big graph is first sketched from its structure, then the details follow
    await wait_for(lambda: not any(i.partial for i in hub.drive(s, "drive0").images), what="details")
    d = hub.drive(s, "drive0")
    assert len(d.images) == n
    assert hub.node_info[s].sketched == (n == 200)
    # a big graph's per-node details are not re-read on every refresh (QEMU's answer is slow)
    asked = hub.node_info[s].queries
    await hub.refresh(s)
    assert hub.node_info[s].queries == (asked if n == 200 else asked + 1)
    assert len(hub.drive(s, "drive0").images) == n
    assert d.images[0].label == paths[0].name and d.active.label == paths[-1].name
    assert d.base.backing_file is None
    if n > 1:
        assert d.active.backing_file == paths[-2].name  # relative, as recorded
    await finish(hub, q)


async def test_raw_base_and_filters_hidden(lab, hub: Hub):
    paths = lab.make_chain(3, 16 * MiB, raw_base=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1])
    s = (await connect(hub, q)).name
    d = hub.drive(s, "drive0")
    assert [i.format for i in d.images] == ["raw", "qcow2", "qcow2"]
    [job] = await hub.run_plan(ops.plan_stream(d, None, "64K", hub.new_job_id("stream", d)))
    await hub.refresh(s)
    d = hub.drive(s, "drive0")
    # the copy-on-read filter the stream inserts is not an image of the chain
    assert [i.format for i in d.images] == ["raw", "qcow2", "qcow2"]
    assert d.jobs == [job.id] and d.active.job == job.id
    await hub.set_speed(s, job.id, 0)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await finish(hub, q)
    same(lab, paths[-1], ref)


async def test_validation_before_anything_is_sent(lab, hub: Hub):
    paths, ref, q, s = await setup(lab, hub)
    d = hub.drive(s, "drive0")
    jid = hub.new_job_id("x", d)
    with pytest.raises(ValidationError, match="not in the backing chain"):
        ops.plan_stream(d, "nope.qcow2", 0, jid)
    with pytest.raises(ValidationError, match="already the backing file"):
        ops.plan_stream(d, "C.qcow2", 0, jid)
    with pytest.raises(ValidationError, match="above the top"):
        ops.plan_commit(d, "C.qcow2", "B.qcow2", 0, jid)
    with pytest.raises(ValidationError, match="into itself"):
        ops.plan_commit(d, "B.qcow2", "B.qcow2", 0, jid)
    with pytest.raises(ValidationError, match="does not exist"):
        ops.plan_mirror(d, str(lab.dir / "nodir" / "x.qcow2"), "qcow2", "top", 0, jid)
    exists = lab.dir / "exists.qcow2"
    exists.write_bytes(b"precious")
    with pytest.raises(ValidationError, match="already exists"):
        ops.plan_mirror(d, str(exists), "qcow2", "top", 0, jid)
    assert exists.read_bytes() == b"precious"
    with pytest.raises(ValidationError, match="active image"):
        ops.plan_mirror(d, str(paths[-1]), "qcow2", "top", 0, jid)
    with pytest.raises(ValidationError, match="Unknown format 'vmdk'"):
        ops.plan_mirror(d, str(lab.dir / "t.vmdk"), "vmdk", "top", 0, jid)
    with pytest.raises(ValidationError, match="negative"):
        ops.plan_stream(d, None, "-5", jid)
    # a node already in a job
    [job] = await hub.run_plan(ops.plan_stream(d, "A.qcow2", "64K", hub.new_job_id("stream", d)))
    await hub.refresh(s)
    busy = hub.drive(s, "drive0")
    with pytest.raises(ValidationError, match="is busy"):
        ops.plan_commit(busy, "A.qcow2", None, 0, jid)
    # a job id in use is known before sending
    with pytest.raises(ValidationError, match=f"Job ID '{job.id}' is already in use"):
        await hub.run_plan(ops.plan_stream(d, "A.qcow2", 0, job.id))
    # QEMU's own words where only QEMU can know (here: a model read before the job began)
    stale = ops.plan_stream(d, "A.qcow2", 0, "other-id")
    with pytest.raises(QMPCommandError, match="is busy: block device is in use by block job: stream"):
        await hub.run_plan(stale)
    assert any(e.kind == "error" and "is busy" in e.text for e in hub.log)
    refused = hub.tracker.get(s, "other-id")  # a failed card says why (issue 10)
    assert refused.result == "failed" and "QEMU refused to start it" in refused.outcome and "is busy" in refused.outcome
    assert hub.tracker.get(s, job.id).active  # the running job is untouched
    await hub.set_speed(s, job.id, 0)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await finish(hub, q)
    same(lab, paths[-1], ref)


async def test_explicitly_opened_nodes_keep_plain_backing_names(lab, hub: Hub):
    """-blockdev style chains (every node named, json: pseudo file names in QEMU):
    labels come from the protocol children, and a merge records a real backing
    file name (``backing-file``), never a json:{...} one qemu-img cannot open."""
    paths = lab.make_chain(4, 64 * MiB)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    s = (await connect(hub, q)).name
    d = hub.drive(s, "drive0")
    assert [i.node_name for i in d.images] == ["A", "B", "C", "D"]
    assert d.notation() == "[A.qcow2] -> [B.qcow2] -> [C.qcow2] -> [D.qcow2]"
    plan = ops.plan_stream(d, "B", 0, hub.new_job_id("stream", d))
    assert plan.steps[0].arguments["backing-file"] == "B.qcow2"
    [job] = await hub.run_plan(plan)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await finish(hub, q)
    info = lab.info(paths[-1])
    assert info[0]["backing-filename"] == "B.qcow2"
    same(lab, paths[-1], ref)
