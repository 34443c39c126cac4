"""The libvirt backend against a real libvirtd (started here when none runs) and TCG domains with no OS.

Every operation is checked twice: the data with ``qemu-img compare`` against a copy made
before (after the domain is gone, so QEMU closed the images), and libvirt's own view
afterwards (``virsh dumpxml`` shows the chain, and a following libvirt operation works).
Images live under /var/tmp: libvirtd's QEMU does not see a test's private /tmp.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tui.backend.errors import ValidationError
from tui.backend.hub import Hub
from tui.backend.lab import Lab
from tui.backend.libvirt_xml import build_libvirt_drives

from .conftest import MiB, same, wait_for
from .libvirt_lab import PIDFILES, URI, Daemons, Domains, virsh
from .test_remote import sshd  # noqa: F401 - the fixture
from .uihelp import ConfirmDialog, dialog, highlight, press, running_app, until

LIBVIRT_PACKAGES = "apt-get install libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc python3-dev"


def missing_libvirt() -> str | None:
    """What this machine lacks to run these tests, naming what installs it; None when nothing."""
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return (
            "libvirt-python is not installed: pip install \"libvirt-python==$(pkg-config --modversion libvirt)\" "
            f"after {LIBVIRT_PACKAGES} (or run `make test`)"
        )
    if shutil.which("virsh") is None:
        return f"virsh is missing: {LIBVIRT_PACKAGES} (or run `make test`)"
    return None


@pytest.fixture(scope="session")
def libvirtd():
    """Tests of the libvirt backend fail, saying what to install, when libvirt is missing (`make test` installs it)."""
    missing = missing_libvirt()
    if missing:
        pytest.fail(f"this test drives a real libvirtd, and {missing}", pytrace=False)
    daemons = Daemons()
    try:
        daemons.ensure()
    except RuntimeError as exc:
        pytest.fail(f"this test drives a real libvirtd: {exc}", pytrace=False)
    yield URI
    daemons.stop()


@pytest.fixture
def vlab(libvirtd):
    root = Path(tempfile.mkdtemp(prefix="chaintui-libvirt-", dir="/var/tmp"))
    root.chmod(0o755)  # the libvirt-qemu user must reach the images
    domains = Domains()
    with Lab(root=root) as lab:
        lab.domains = domains  # type: ignore[attr-defined]
        try:
            yield lab
        finally:
            domains.remove()
            shutil.rmtree(root, ignore_errors=True)


def start(lab: Lab, *, disks: int = 1, persistent: bool = False, n: int = 4) -> tuple[str, list[list[Path]], list[Path]]:
    """A domain on ``disks`` fresh 4-image chains; returns its name, the chains and a reference copy of each."""
    sub = f"dom{len(lab.domains.names) + 1}"  # type: ignore[attr-defined]
    chains = [lab.make_chain(n, 32 * MiB, prefix=f"d{i}" if i else "", absolute=True, subdir=sub) for i in range(disks)]
    refs = [lab.flatten(c[-1]) for c in chains]
    name = lab.domains.create([str(c[-1]) for c in chains], persistent=persistent)  # type: ignore[attr-defined]
    return name, chains, refs


def dumpxml_chain(domain: str, disk: str = "vda") -> list[str]:
    """libvirt's own view of a disk's chain (virsh dumpxml), bottom first."""
    xml = virsh("dumpxml", domain).stdout
    drive = next(d for d in build_libvirt_drives(domain, xml, {}, {}) if d.name == disk)
    return [i.label for i in drive.images]


def stop(domain: str) -> None:
    virsh("destroy", domain)


async def open_hub(domain: str, uri: str = URI) -> tuple[Hub, str]:
    hub = Hub(poll_interval=0.05)
    sessions = await hub.connect(f"{uri}#{domain}")
    await wait_for(lambda: hub.drives.get(sessions[0].name), what="drives")
    return hub, sessions[0].name


async def run(hub: Hub, session: str, plan, until_state=lambda j: j.finished):
    jobs = await hub.run_plan(plan)
    if not jobs:
        await hub.settle(session)
        return None
    job = await hub.wait_job(session, jobs[-1].id, until_state, timeout=60)
    await hub.settle(session)
    return job


async def pivot(hub: Hub, session: str, job, outcome: str) -> None:
    """Finish a ready job (blockJobAbort PIVOT) and wait for the chain libvirt then has."""
    await hub.complete(session, job.id)
    await hub.wait_job(session, job.id, lambda j: j.finished)
    assert job.outcome == outcome
    await hub.settle(session)


def chain(hub: Hub, session: str, disk: str = "vda") -> list[str]:
    return [i.label for i in hub.drive(session, disk).images]


async def refreshed(hub: Hub, session: str, disk: str = "vda") -> list[str]:
    await hub.refresh(session)
    return chain(hub, session, disk)


def follow_up(domain: str) -> None:
    """A following libvirt operation on the resulting chain succeeds."""
    virsh("blockpull", domain, "vda", "--wait", timeout=120)
    assert len(dumpxml_chain(domain)) == 1


# -- every operation ---------------------------------------------------------
async def test_merge_flatten_commit_and_libvirt_agrees(vlab):
    name, (paths,), (ref,) = start(vlab)
    hub, s = await open_hub(name)
    try:
        planner = hub.planner(hub.drive(s, "vda"))
        d = hub.drive(s, "vda")
        assert chain(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
        assert [i.node_name for i in d.images] == ["vda[4]", "vda[3]", "vda[2]", "vda[1]"]
        plan = planner.plan_stream(d, "B.qcow2", "", hub.new_job_id("stream", d))
        assert "dom.blockRebase('vda', 'vda[3]', 0, 0)" in plan.preview()
        assert "virsh -c qemu:///system blockpull " + name + " vda --base 'vda[3]'" in plan.preview()
        job = await run(hub, s, plan)
        assert job.outcome == "completed", job.outcome
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2", "D.qcow2"] == dumpxml_chain(name)
        d = hub.drive(s, "vda")
        plan = planner.plan_commit(d, "A.qcow2", "B.qcow2", "", hub.new_job_id("commit", d))
        a, b = d.images[0].node_name, d.images[1].node_name
        assert f"dom.blockCommit('vda', '{a}', '{b}', 0, 0)" in plan.preview()
        job = await run(hub, s, plan)
        assert job.outcome == "completed", job.outcome
        assert await refreshed(hub, s) == ["A.qcow2", "D.qcow2"] == dumpxml_chain(name)
        d = hub.drive(s, "vda")
        job = await run(hub, s, planner.plan_stream(d, None, "", hub.new_job_id("stream", d)))
        assert job.outcome == "completed"
        assert await refreshed(hub, s) == ["D.qcow2"] == dumpxml_chain(name)
    finally:
        await hub.close()
    stop(name)
    same(vlab, paths[-1], ref)


async def test_active_commit_pivot_then_follow_up(vlab):
    name, (paths,), (ref,) = start(vlab)
    hub, s = await open_hub(name)
    try:
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_commit(d, "B.qcow2", None, "", hub.new_job_id("commit", d))
        assert "DOMAIN_BLOCK_COMMIT_ACTIVE" in plan.preview() and "--active" in plan.preview()
        job = await run(hub, s, plan, lambda j: j.ready)
        with pytest.raises(ValidationError, match="no API to pause"):
            await hub.toggle_pause(s, job.id)
        await pivot(hub, s, job, "completed: drive switched to the base")
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2"] == dumpxml_chain(name)
        follow_up(name)
    finally:
        await hub.close()
    stop(name)
    same(vlab, paths[1], ref)


@pytest.mark.parametrize("persistent", [False, True], ids=["transient", "persistent"])
async def test_mirror_pivot(vlab, persistent):
    name, (paths,), (ref,) = start(vlab, persistent=persistent)
    target = paths[-1].parent / "D-mirror.qcow2"
    hub, s = await open_hub(name)
    try:
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_mirror(d, str(target), "qcow2", "top", "", hub.new_job_id("mirror", d))
        assert "DOMAIN_BLOCK_COPY_SHALLOW" in plan.preview()
        assert ("TRANSIENT_JOB" in plan.preview()) is persistent
        job = await run(hub, s, plan, lambda j: j.ready)
        with pytest.raises(ValidationError, match="only when it starts"):
            await hub.write_blocking(s, job.id)
        await pivot(hub, s, job, "completed: drive switched to the target")
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D-mirror.qcow2"] == dumpxml_chain(name)
        follow_up(name)
    finally:
        await hub.close()
    stop(name)
    same(vlab, target, ref)


async def test_mirror_full_write_blocking_cancel_keeps_source(vlab):
    name, (paths,), (ref,) = start(vlab)
    target = vlab.dir / "full.qcow2"
    hub, s = await open_hub(name)
    try:
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_mirror(d, str(target), "qcow2", "full", "", hub.new_job_id("mirror", d),
                                          copy_mode="write-blocking")
        assert "SYNCHRONOUS_WRITES" in plan.preview() and "--synchronous-writes" in plan.preview()
        job = await run(hub, s, plan, lambda j: j.ready)
        await hub.cancel(s, job.id)
        job = await hub.wait_job(s, job.id, lambda j: j.finished)
        assert job.outcome.startswith("cancelled"), job.outcome
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"] == dumpxml_chain(name)
    finally:
        await hub.close()
    stop(name)
    same(vlab, paths[-1], ref)
    same(vlab, target, ref)


async def test_snapshot_then_copy(vlab):
    name, (paths,), (ref,) = start(vlab)
    hub, s = await open_hub(name)
    snap, copy = vlab.dir / "E.qcow2", vlab.dir / "copy.qcow2"
    try:
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_snapshot(d, str(snap), "E")
        assert "snapshotCreateXML" in plan.preview() and "snapshot-create-as" in plan.preview()
        await run(hub, s, plan)
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2", "E.qcow2"] == dumpxml_chain(name)
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_copy(d, str(copy), "stream", "qcow2", "", hub.new_job_id("copy", d), "copy")
        assert [st.command for st in plan.steps] == ["snapshotCreateXML", "blockPull"]
        job = await run(hub, s, plan)
        assert job.outcome == "completed", job.outcome
        assert await refreshed(hub, s) == ["copy.qcow2"] == dumpxml_chain(name)
        d = hub.drive(s, "vda")
        await run(hub, s, hub.planner(d).plan_snapshot(d, str(vlab.dir / "F.qcow2"), "F"))  # libvirt goes on
        assert dumpxml_chain(name) == ["copy.qcow2", "F.qcow2"]
    finally:
        await hub.close()
    stop(name)
    same(vlab, copy, ref)
    same(vlab, snap, ref)


async def test_refusals_before_sending(vlab):
    name, (paths,), _ = start(vlab)
    (vlab.dir / "exists.qcow2").write_bytes(b"")
    hub, s = await open_hub(name)
    try:
        d = hub.drive(s, "vda")
        planner = hub.planner(d)
        with pytest.raises(ValidationError, match="already exists"):
            planner.plan_mirror(d, str(vlab.dir / "exists.qcow2"), "qcow2", "top", "", "m1")
        with pytest.raises(ValidationError, match="on-target-error"):
            planner.plan_mirror(d, str(vlab.dir / "new.qcow2"), "qcow2", "top", "", "m1", on_target_error="stop")
        job = await run(hub, s, planner.plan_stream(d, None, "64K", hub.new_job_id("stream", d)),
                        lambda j: j.offset > 0 and j.drive == "vda")
        await hub.settle(s)
        d = hub.drive(s, "vda")
        assert d.jobs == [job.id]
        with pytest.raises(ValidationError, match="one block job per disk"):
            planner.plan_commit(d, "A.qcow2", "B.qcow2", "", "c1")
        with pytest.raises(ValidationError, match="no API to pause"):
            await hub.toggle_pause(s, job.id)
        await hub.set_speed(s, job.id, 128 << 10)
        info = virsh("blockjob", name, "vda", "--info", "--bytes").stdout
        assert "131072" in info, info
        audit = [e.data for e in hub.log if e.kind == "action" and e.data]
        assert any(a["command"] == "blockJobSetSpeed" and "--bandwidth 131072 --bytes" in a["arguments"]["virsh"]
                   for a in audit)
        await hub.cancel(s, job.id)
        job = await hub.wait_job(s, job.id, lambda j: j.finished)
        assert job.outcome == "cancelled"
    finally:
        await hub.close()


async def test_failed_job_says_why(vlab):
    """libvirt's FAILED carries no reason: QEMU's own event (read-only) gives it."""
    # a 1 MiB file system, mounted where libvirtd lives (a test may run in a mount namespace
    # of its own) and before the domain starts (QEMU gets a mount namespace of its own)
    small = vlab.dir / "small"
    small.mkdir()
    # -r: libvirtd's own root too (in a chroot, the mount namespace's root is the host's /)
    host = ["nsenter", "-t", PIDFILES["libvirtd"].read_text().strip(), "-m", "-r", "--"]
    subprocess.run(host + ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0777", "tmpfs", str(small)], check=True)
    try:
        name, (paths,), _ = start(vlab)
        hub, s = await open_hub(name)
        try:
            d = hub.drive(s, "vda")
            plan = hub.planner(d).plan_mirror(d, str(vlab.dir / "t.qcow2"), "qcow2", "full", "", "mirror-vda-1")
            step = plan.steps[0]  # the space check would refuse the small file system: point past it
            step.arguments["destxml"] = step.arguments["destxml"].replace(str(vlab.dir / "t.qcow2"), str(small / "t.qcow2"))
            job = await run(hub, s, plan)
            assert job.outcome.startswith("failed"), job.outcome
            assert "No space left on device" in job.outcome, job.outcome
        finally:
            await hub.close()
        stop(name)
    finally:
        subprocess.run(host + ["umount", "-l", str(small)], check=False)


# -- jobs other clients start, and the other way round -----------------------
async def test_virsh_job_shows_live_and_ours_shows_in_virsh(vlab):
    name, _, _ = start(vlab)
    hub, s = await open_hub(name)
    try:
        virsh("blockpull", name, "vda", "--bandwidth", "1")
        job = await wait_for(lambda: next((j for j in hub.tracker.for_session(s) if j.active), None),
                             what="virsh's job in chaintui")
        await wait_for(lambda: job.offset > 0 and job.drive == "vda" and job.speed == 1 << 20, what="progress")
        assert not job.started_by_us and job.type == "stream"
        await hub.cancel(s, job.id)
        await hub.wait_job(s, job.id, lambda j: j.finished)
        await hub.settle(s)
        d = hub.drive(s, "vda")
        ours = await run(hub, s, hub.planner(d).plan_stream(d, None, "64K", hub.new_job_id("stream", d)),
                         lambda j: j.offset > 0)
        proc = virsh("blockjob", name, "vda", "--info")
        assert "Block Pull" in proc.stdout + proc.stderr, proc
        await hub.cancel(s, ours.id)
        await hub.wait_job(s, ours.id, lambda j: j.finished)
    finally:
        await hub.close()


async def test_a_domain_gone_between_listing_and_opening_is_skipped_with_its_reason(vlab):
    """A domain destroyed after the URI's domains were listed (a transient one stopping): opening it
    fails with libvirt's words as a ConnectFailed, so the hub notes it and opens the others (it used to
    be an internal error that failed the whole URI, and `chaintui chains` printed nothing)."""
    from tui.backend.backend import open_backends
    from tui.backend.errors import ConnectFailed

    a, _, _ = start(vlab)
    b, _, _ = start(vlab)
    backends = {s.name: s for s in await open_backends(URI)}
    stop(b)
    try:
        await backends[b].start()
    except ConnectFailed as exc:
        assert b in str(exc) and "not found" in str(exc).lower(), exc
    else:
        raise AssertionError("a destroyed domain opened")
    finally:
        for s in backends.values():
            await s.close()
    stop(a)


def test_chains_cli(vlab):
    name, _, _ = start(vlab, disks=2)
    env = dict(os.environ, XDG_STATE_HOME=str(vlab.dir / "state"))
    out = subprocess.run([sys.executable, "-m", "tui", "chains", f"{URI}#{name}"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert f"{name}/vda: [A.qcow2] -> [B.qcow2] -> [C.qcow2] -> [D.qcow2]" in out.stdout
    assert f"{name}/vdb: [d1A.qcow2] -> [d1B.qcow2] -> [d1C.qcow2] -> [d1D.qcow2]" in out.stdout
    out = subprocess.run([sys.executable, "-m", "tui", "chains", "--json", URI], capture_output=True, text=True,
                         timeout=60, env=env)
    data = json.loads(out.stdout)
    ours = next(q for q in data["qemus"] if q["qemu"] == name)
    assert ours["backend"] == "libvirt" and [d["name"] for d in ours["drives"]] == ["vda", "vdb"]
    out = subprocess.run([sys.executable, "-m", "tui", "chains", f"{URI}#no-such-domain"], capture_output=True,
                         text=True, timeout=60, env=env)
    assert out.returncode == 1 and "no-such-domain" in out.stderr


# -- the keyboard: two domains, two disks each ---------------------------------
async def test_four_drives_from_the_keyboard(vlab, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(vlab.dir / "state"))
    a, (a0, a1), (ra0, ra1) = start(vlab, disks=2)
    b, (b0, b1), (rb0, rb1) = start(vlab, disks=2)
    async with running_app([URI], size=(140, 45)) as (app, pilot):
        hub = app.hub
        await until(pilot, lambda: {a, b} <= set(hub.sessions), what="both domains")
        await until(pilot, lambda: all(len(hub.drives.get(n, [])) == 2 for n in (a, b)), what="four drives")
        assert [d.name for d in hub.drives[a]] == ["vda", "vdb"]

        async def pick(session: str, disk: str) -> None:
            panel = app.main_screen.query_one("#drives")
            panel.focus()
            for _ in range(40):
                sel = app.main_screen.selected_drive()
                if sel is not None and sel.key == (session, disk):
                    break
                await press(pilot, "down")
            assert app.main_screen.selected_drive().key == (session, disk)
            await press(pilot, "tab")  # to the chain

        def job_on(session: str, disk: str):
            return next((j for j in hub.tracker.for_session(session) if j.drive == disk), None)

        async def start_job(session: str, disk: str, key: str, image: str | None = None, typed: str = ""):
            await pick(session, disk)
            if image:
                await highlight(pilot, app, image)
            await press(pilot, key)
            values = (await dialog(pilot, app)).values()
            await pilot.press(*typed)
            await press(pilot, "enter")
            return await until(pilot, lambda: job_on(session, disk), what=f"the job on {disk}"), values

        async def confirm(j, key: str, outcome: str) -> None:
            await press(pilot, key)
            await dialog(pilot, app, ConfirmDialog)
            await press(pilot, "enter")
            await until(pilot, lambda: j.finished, what=outcome)
            assert j.outcome == outcome

        j, _ = await start_job(a, "vda", "s", "B.qcow2")  # merge
        await until(pilot, lambda: j.finished, what="merge done")
        assert j.outcome == "completed"
        j, _ = await start_job(a, "vdb", "c", "d1B.qcow2")  # active commit + pivot
        await until(pilot, lambda: j.ready, what="ready")
        await confirm(j, "f", "completed: drive switched to the base")
        j, values = await start_job(b, "vda", "m")  # mirror + pivot
        mirror_target = values["target"]
        await until(pilot, lambda: j.ready, what="mirror ready")
        await confirm(j, "f", "completed: drive switched to the target")
        j, _ = await start_job(b, "vdb", "s", "d1D.qcow2", typed="64K")  # a slow flatten, cancelled
        await until(pilot, lambda: j.offset > 0, what="progress")
        await confirm(j, "x", "cancelled")  # from the chain: the selected drive's running job
        assert dumpxml_chain(a, "vda") == ["A.qcow2", "B.qcow2", "D.qcow2"]
        assert dumpxml_chain(a, "vdb") == ["d1A.qcow2", "d1B.qcow2"]
        assert dumpxml_chain(b, "vda") == [os.path.basename(mirror_target)]  # the dialog's default: sync full
        assert dumpxml_chain(b, "vdb") == ["d1A.qcow2", "d1B.qcow2", "d1C.qcow2", "d1D.qcow2"]
    stop(a)
    stop(b)
    same(vlab, a0[-1], ra0)
    same(vlab, a1[1], ra1)
    same(vlab, mirror_target, rb0)
    same(vlab, b1[-1], rb1)


# -- remote ------------------------------------------------------------------
async def test_qemu_ssh(vlab, sshd):  # noqa: F811 - the fixture
    key = Path(os.environ["CHAINTUI_SSH_CONFIG"]).parent / "client_key"
    port = sshd.rsplit(":", 1)[1]
    uri = f"qemu+ssh://{getpass.getuser()}@127.0.0.1:{port}/system?keyfile={key}&no_verify=1"
    name, (paths,), (ref,) = start(vlab)
    hub, s = await open_hub(name, uri)
    try:
        assert chain(hub, s) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
        d = hub.drive(s, "vda")
        plan = hub.planner(d).plan_commit(d, "B.qcow2", None, "", hub.new_job_id("commit", d))
        job = await run(hub, s, plan, lambda j: j.ready)
        await pivot(hub, s, job, "completed: drive switched to the base")
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2"] == dumpxml_chain(name)
        # the target is on the other host: only what can be known from here is checked
        d = hub.drive(s, "vda")
        with pytest.raises(ValidationError, match="absolute path"):
            hub.planner(d).plan_snapshot(d, "E.qcow2", "E")
        await run(hub, s, hub.planner(d).plan_snapshot(d, str(paths[0].parent / "E.qcow2"), "E"))
        assert await refreshed(hub, s) == ["A.qcow2", "B.qcow2", "E.qcow2"] == dumpxml_chain(name)
    finally:
        await hub.close()
    stop(name)
    same(vlab, paths[1], ref)


def test_demo_domain_is_transient_and_goes_away(vlab):
    from tui.backend.libvirt_demo import LibvirtDemo

    paths = vlab.make_chain(2, 16 * MiB, absolute=True, subdir="demo")
    demo = LibvirtDemo([str(paths[-1])], uri=URI)
    address = demo.start()
    try:
        assert address == f"{URI}#{demo.name}"
        assert demo.name in virsh("list", "--name").stdout
        assert dumpxml_chain(demo.name) == ["A.qcow2", "B.qcow2"]
    finally:
        demo.close()
    assert demo.name not in virsh("list", "--all", "--name").stdout  # transient: destroyed is undefined
