"""Bad input, table-driven, against a real QEMU: each case gets the exact message
the operator sees, and nothing changes on disk or in the chain."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest

from tui.backend import ops
from tui.backend.errors import ChainTuiError
from tui.backend.hub import Hub

from .conftest import MiB, connect, same


def snapshot_dir(path) -> dict[str, str]:
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full) and not name.endswith((".log",)):
            with open(full, "rb") as f:
                out[name] = hashlib.sha256(f.read()).hexdigest()
        else:
            out[name] = "dir" if os.path.isdir(full) else "other"
    return out


def cases(lab, d0, d1):
    """(case id, action, exact message). ``d0`` is idle; ``d1`` has a throttled stream running."""
    L = str(lab.dir)
    existing = os.path.join(L, "taken.qcow2")
    j = "job-x"
    mirror = lambda target, fmt="qcow2", sync="full", speed=0, mode="absolute-paths": (  # noqa: E731
        lambda: ops.plan_mirror(d0, target, fmt, sync, speed, j, mode=mode)
    )
    return [
        ("base not in chain", lambda: ops.plan_stream(d0, "nope", 0, j), "'nope' is not in the backing chain of drive0"),
        ("base is the backing file already", lambda: ops.plan_stream(d0, "C", 0, j),
         "C.qcow2 is already the backing file of D.qcow2: nothing to merge"),
        ("commit into itself", lambda: ops.plan_commit(d0, "D", None, 0, j),
         "Cannot commit D.qcow2 into itself: pick an image below the top"),
        ("base above the top", lambda: ops.plan_commit(d0, "C", "B", 0, j),
         "Base C.qcow2 is above the top B.qcow2: pick a lower base"),
        ("no base chosen", lambda: ops.plan_commit(d0, "", None, 0, j), "No base chosen"),
        ("top not in chain", lambda: ops.plan_commit(d0, "A", "zzz", 0, j), "'zzz' is not in the backing chain of drive0"),
        ("target directory missing", mirror(f"{L}/nodir/x.qcow2"), f"Target directory {L}/nodir does not exist"),
        ("target exists", mirror(existing),
         f"Target {existing} already exists; choose another name or \"reuse existing\""),
        ("target is the active image", mirror(f"{L}/D.qcow2"),
         f"Target {L}/D.qcow2 is the active image (D.qcow2); pick a new file"),
        ("target is a backing image", mirror(f"{L}/B.qcow2"),
         f"Target {L}/B.qcow2 is an image of its backing chain (B.qcow2); pick a new file"),
        ("target via a symlink to the chain", mirror(f"{L}/link-to-A.qcow2"),
         f"Target {L}/link-to-A.qcow2 is an image of its backing chain (A.qcow2); pick a new file"),
        ("target is a directory", mirror(f"{L}/adir"), f"Target {L}/adir is a directory; give a file name"),
        ("unknown format", mirror(f"{L}/t.vmdk", fmt="vmdk"), "Unknown format 'vmdk': choose qcow2 or raw"),
        ("mistyped format", mirror(f"{L}/t.qcow", fmt="qcow"), "Unknown format 'qcow': choose qcow2 or raw"),
        ("empty format", mirror(f"{L}/t.img", fmt=""), "Unknown format '': choose qcow2 or raw"),
        ("unknown sync", mirror(f"{L}/t.qcow2", sync="bottom"), "Unknown sync mode 'bottom': choose top or full"),
        ("raw with sync top", mirror(f"{L}/t.raw", fmt="raw", sync="top"),
         "A raw target cannot have a backing file: use sync full for raw, or qcow2 for sync top"),
        ("negative speed", mirror(f"{L}/t.qcow2", speed="-1"), "Speed limit must not be negative: '-1'"),
        ("non-numeric speed", mirror(f"{L}/t.qcow2", speed="fast"),
         "Speed limit 'fast' is not a number of bytes per second (e.g. 10M, 512K, 0 = unlimited)"),
        ("absurd speed", mirror(f"{L}/t.qcow2", speed="99999P"), "Speed limit 99999P is absurdly high (max 1P per second; 0 = unlimited)"),
        ("scientific speed", mirror(f"{L}/t.qcow2", speed="1e9"),
         "Speed limit '1e9' is not a number of bytes per second (e.g. 10M, 512K, 0 = unlimited)"),
        ("snapshot to raw", lambda: ops.plan_snapshot(d0, f"{L}/s.raw", "s", "raw"), "Unknown format 'raw': choose qcow2"),
        ("unknown copy method", lambda: ops.plan_copy(d0, f"{L}/c.qcow2", "rsync", "qcow2", 0, j, "c"),
         "Unknown copy method 'rsync': choose stream or mirror"),
        ("empty path", mirror(""), "Target path is empty"),
        ("blank path", mirror("   "), "Target path is empty"),
        ("newline in path", mirror(f"{L}/a\nb.qcow2"),
         "Target path contains a control character (e.g. a newline); choose another name"),
        ("non-UTF-8 path", mirror(os.fsdecode(os.fsencode(L) + b"/\xff\xfe.qcow2")),
         "Target path is not valid UTF-8; QMP can only carry UTF-8 file names"),
        ("4096-character path", mirror(L + "/" + "a/" * 2100 + "x.qcow2"),
         f"Target path is too long ({len(L + '/' + 'a/' * 2100 + 'x.qcow2')} characters; the limit is 4095)"),
        ("component over 255 bytes", mirror(f"{L}/{'x' * 300}.qcow2"), "A component of the target path is longer than 255 bytes"),
        ("reuse existing that is missing", mirror(f"{L}/gone.qcow2", mode="existing"),
         f"Target {L}/gone.qcow2 does not exist (\"reuse existing\" needs an existing image)"),
        ("unknown mirror mode", mirror(f"{L}/t.qcow2", mode="overwrite"), "Unknown mode 'overwrite': choose absolute-paths or existing"),
        ("read-only directory", mirror(f"{L}/ro/t.qcow2"), f"Target directory {L}/ro is not writable"),
        ("merge on a single image", lambda: ops.plan_stream(d1_single(d1), None, 0, j), "vm: nothing"),
        ("node already in a job", lambda: ops.plan_commit(d1, "vm1-A", None, 0, j),
         "Node 'vm1-A' (vm1-A.qcow2) is busy: it is in job 'stream-drive1-1'. Wait for the job to end or cancel it first."),
        ("mirror of a busy drive", lambda: ops.plan_mirror(d1, f"{L}/m.qcow2", "qcow2", "full", 0, j),
         "Node 'vm1-D' (vm1-D.qcow2) is busy: it is in job 'stream-drive1-1'. Wait for the job to end or cancel it first."),
    ]


def d1_single(d1):
    from dataclasses import replace

    return replace(d1, name="vm", images=d1.images[-1:])


async def test_bad_input_table(lab, hub: Hub):
    a = lab.make_chain(4, 32 * MiB, absolute=True)
    b = lab.make_chain(4, 32 * MiB, prefix="vm1-", absolute=True)
    (lab.dir / "taken.qcow2").write_bytes(b"precious")
    (lab.dir / "adir").mkdir()
    os.symlink(a[0], lab.dir / "link-to-A.qcow2")
    (lab.dir / "ro").mkdir()
    subprocess.run(["chattr", "+i", str(lab.dir / "ro")], check=True)  # read-only even for root
    try:
        await _bad_input_table(lab, hub, a, b)
    finally:
        subprocess.run(["chattr", "-i", str(lab.dir / "ro")], check=True)


async def _bad_input_table(lab, hub: Hub, a, b):
    q = lab.start([a[-1], b[-1]], named_nodes=True)
    s = (await connect(hub, q, drives=2)).name
    [stream] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive1"), None, "16K", "stream-drive1-1"))
    await hub.refresh(s)
    d0, d1 = hub.drive(s, "drive0"), hub.drive(s, "drive1")
    chains_before = [d.notation() for d in hub.drives[s]]
    disk_before = snapshot_dir(lab.dir)
    table = cases(lab, d0, d1)
    # the single-image case's message depends on the name it gets: fill it in
    table = [(n, f, "vm has no backing file: nothing to merge" if m == "vm: nothing" else m) for n, f, m in table]
    seen = []
    for name, action, message in table:
        with pytest.raises(ChainTuiError) as exc:
            action()
        assert str(exc.value) == message, name
        seen.append(name)
    # job control mistakes, answered before anything is sent
    job_cases = [
        (lambda: hub.complete(s, stream.id), f"Job {stream.id} is not ready yet"),
        (lambda: hub.set_speed(s, stream.id, -5), "Speed limit must not be negative"),
        (lambda: hub.dismiss(s, stream.id), f"Job {stream.id} is still running: cancel it first"),
        (lambda: hub.cancel(s, "nojob"), "No job 'nojob' on " + s),
        (lambda: hub.run_plan(ops.plan_stream(d0, None, 0, stream.id)),
         f"Job ID '{stream.id}' is already in use by a stream job on drive1"),
    ]
    for action, message in job_cases:
        with pytest.raises(ChainTuiError) as exc:
            await action()
        assert str(exc.value).startswith(message)
    await hub.refresh(s)
    assert [d.notation() for d in hub.drives[s]] == chains_before
    assert snapshot_dir(lab.dir) == {k: v for k, v in disk_before.items()}, "nothing changed on disk"
    assert len(seen) + len(job_cases) >= 30
    # a finished job: cancel says so
    await hub.set_speed(s, stream.id, 0)
    await hub.wait_job(s, stream.id, lambda x: x.finished)
    with pytest.raises(ChainTuiError, match="has already ended"):
        await hub.cancel(s, stream.id)


async def test_shell_characters_in_paths_are_just_names(lab, hub: Hub):
    """Spaces, quotes, ; and $(...) reach QEMU as a file name; no shell ever sees them."""
    paths = lab.make_chain(3, 32 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    s = (await connect(hub, q)).name
    name = "we ird; $(touch pwned) 'q\" `x`.qcow2"
    target = lab.dir / name
    d = hub.drive(s, "drive0")
    [job] = await hub.run_plan(ops.plan_mirror(d, str(target), "qcow2", "full", 0, hub.new_job_id("mirror", d)))
    await hub.wait_job(s, job.id, lambda j: j.ready)
    await hub.complete(s, job.id)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await hub.refresh(s)
    assert hub.drive(s, "drive0").active.filename == str(target)
    await hub.close()
    q.stop()
    assert target.exists() and not (lab.dir / "pwned").exists() and not os.path.exists("pwned")
    same(lab, target, ref)


async def test_raw_image_in_the_middle_is_flagged(lab, hub: Hub):
    paths = lab.make_chain(3, 32 * MiB, raw_base=True)
    q = lab.start(paths[-1])
    s = (await connect(hub, q)).name
    d = hub.drive(s, "drive0")
    plan = ops.plan_stream(d, None, 0, "s")
    assert any("raw image is in the chain" in w for w in plan.warnings)
    await hub.close()
    q.stop()


async def test_image_still_used_by_leftover_overlays(lab, hub: Hub):
    """Found by the randomized sequences: after an active commit down to the base,
    qemu-storage-daemon keeps the old overlays open on top of it; QEMU then refuses
    snapshots and mirrors of the base. chaintui says why before sending."""
    paths = lab.make_chain(3, 16 * MiB, absolute=True)
    q = lab.start(paths[-1], named_nodes=True)
    s = (await connect(hub, q)).name
    d = hub.drive(s, "drive0")
    [job] = await hub.run_plan(ops.plan_commit(d, "A", None, 0, "c1"))
    await hub.wait_job(s, job.id, lambda j: j.ready)
    await hub.complete(s, job.id)
    await hub.wait_job(s, job.id, lambda j: j.finished)
    await hub.refresh(s)
    d = hub.drive(s, "drive0")
    assert d.notation() == "[A.qcow2]" and d.active.users == ("B.qcow2",)
    message = (
        "Node 'A' (A.qcow2) is busy: leftover nodes C.qcow2 (C), B.qcow2 (B) still open in QEMU from an earlier "
        "job use it as backing file; QEMU cannot snapshot or mirror it until they are closed (o closes leftover "
        "nodes with blockdev-del)"
    )
    with pytest.raises(ChainTuiError) as exc:
        ops.plan_snapshot(d, str(lab.dir / "s.qcow2"), "s")
    assert str(exc.value) == message
    with pytest.raises(ChainTuiError) as exc:
        ops.plan_mirror(d, str(lab.dir / "m.qcow2"), "qcow2", "full", 0, "m")
    assert str(exc.value) == message
    await hub.close()
    q.stop()
