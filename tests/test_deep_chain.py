"""Chains deeper than ``query-block`` can answer: drives are named without it.

``query-block`` nests a drive's whole backing chain in its answer (``backing-image`` inside
``backing-image``); from ~975 images on (Python 3.11, QEMU 7.2) ``qemu.qmp`` cannot parse it
(RecursionError in its reader), drops the connection and chaintui reconnected forever with no
drives.  chaintui names drives from the block graph's backends and, for ``-drive`` backends, from
the devices' ``drive`` properties (:func:`tui.backend.block_graph.device_names`).

The unit test checks, on answers recorded from QEMU 7.2 and 10, that this names every drive as
``query-block`` did; the live ones run a real q35 VM on every device shape and on a 1000-image chain
(860 on QEMU 10.0, which itself crashes from 874 with a virtio-blk device).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tui.backend.block_graph import _Graph, backends_named_by_id, build_drives, device_names, qdev_id
from tui.backend.lab import Lab, LabQemu
from tui.backend.session import QemuSession

from .conftest import MiB

DATA = Path(__file__).parent / "data"
RECORDED = sorted(DATA.glob("qemu*/*.json"))
DEEP = 1000  # images: query-block's answer is too deeply nested for Python's JSON parser from ~975


def deep_enough() -> int:
    """The chain depth for the live test: DEEP, except on QEMU 10.0, which itself crashes (SIGSEGV
    right after its greeting) with a virtio-blk device on a chain of 874 images or more."""
    import subprocess

    out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True).stdout
    major = int(out.split("version ")[1].split(".")[0]) if "version " in out else 0
    return DEEP if major < 10 else 860


def by_query_block(block: list[dict]) -> dict[str, tuple[str, str | None]]:
    """How chaintui named devices from ``query-block`` before (the reference): by root node,
    (qdev id, else -drive id; the -drive id or None)."""
    named = {}
    for dev in block:
        root = (dev.get("inserted") or {}).get("node-name")
        shown = qdev_id(dev.get("qdev")) or dev.get("device") or None
        if root and shown:
            named[root] = (shown, dev.get("device") or None)
    return named


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_recorded_drives_are_named_as_query_block_named_them(path: Path):
    answers = json.loads(path.read_text())
    asked = answers["devices"] if backends_named_by_id(answers["graph"]) else {}
    assert bool(asked) == (path.stem == "drive_vm")  # only -drive backends need the devices' drive properties
    assert device_names(_Graph(answers["graph"], answers["named"]), asked) == by_query_block(answers["block"])
    new, _ = build_drives("vm", answers["graph"], answers["named"], asked, answers["exports"])
    assert {d.name for d in new} == ({"drive0", "drive1"} if path.stem == "qsd" else {"virtio-disk0", "virtio-disk1"})
    if path.stem == "drive_vm":
        assert {(d.name, d.device, d.has_device) for d in new} == {("virtio-disk0", "drive0", True),
                                                                   ("virtio-disk1", "drive1", True)}


# -- every device shape, live: the same names as query-block gives ------------------------------
def _start_q35(lab: Lab, name: str, disks: list[str], timeout: float = 30) -> LabQemu:
    """A q35 whose CPUs never run, with these disk arguments, three QMP monitors and no exports."""
    import subprocess

    from tui.backend.lab_qemu import pdeathsig

    monitors = [lab.dir / f"{name}.{m}" for m in ("qmp", "ctl", "spare")]
    args = ["qemu-system-x86_64", "-M", "q35", "-nodefaults", "-display", "none", "-accel", "tcg", "-S", *disks]
    for sock in monitors:
        args += ["-qmp", f"unix:{sock},server=on,wait=off"]
    log = lab.dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=pdeathsig, cwd=lab.dir)
    q = LabQemu("q35", proc, monitors[0], None, [], log, monitors[1], monitors[2])
    lab.processes.append(q)
    q.wait_for_monitors(args[0], timeout)
    return q


def _start_shapes(lab: Lab) -> LabQemu:
    """A q35 with the ways a disk can be given: -blockdev or -drive, on a virtio proxy or a
    scsi-hd, with or without a device id, -drive without a device, an empty cdrom."""
    def chain(name: str) -> str:
        return str(lab.make_chain(2, 8 * MiB, prefix=f"{name}-", subdir="shapes")[-1])

    def blockdev(name: str) -> str:
        return json.dumps({"driver": "qcow2", "node-name": name, "file": {"driver": "file", "filename": chain(name)}})

    def drive(name: str) -> str:
        return f"if=none,id={name},file={chain(name)},format=qcow2"

    return _start_q35(lab, "shapes", [
            "-device", "virtio-scsi-pci,id=scsi0",
            "-blockdev", blockdev("sd-fmt"), "-device", "scsi-hd,drive=sd-fmt,id=disk-sd",  # backend named by the id
            "-drive", drive("drive-sd2"), "-device", "scsi-hd,drive=drive-sd2,id=disk-sd2",
            "-drive", drive("lonely"),  # no device
            "-drive", drive("anondrive"), "-device", "virtio-blk-pci,drive=anondrive",  # a device without an id
            "-blockdev", blockdev("nameless"), "-device", "virtio-blk-pci,drive=nameless",
            "-blockdev", blockdev("vd-fmt"), "-device", "virtio-blk-pci,drive=vd-fmt,id=virtio-disk0",
            "-drive", drive("drive1"), "-device", "virtio-blk-pci,drive=drive1,id=virtio-disk1",
            "-device", "scsi-cd,id=cd0",  # no medium
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,id=net0"])  # no drive property


async def test_every_device_shape_named_as_query_block_names_it(lab):
    q = _start_shapes(lab)
    sess = QemuSession(str(q.qmp), reconnect=False)
    await sess.start()
    try:
        # jobs whose filters QEMU inserts on its own (no filter-node-name): devices name the node below
        await sess.execute("block-stream", {"job-id": "s1", "device": "lonely", "speed": 1})
        await sess.execute("drive-mirror", {"job-id": "m1", "device": "drive1", "sync": "top", "speed": 1,
                                            "target": str(lab.dir / "m1.qcow2"), "format": "qcow2"})
        await sess.execute("block-commit", {"job-id": "c1", "device": "sd-fmt", "speed": 1})
        from tui.backend import qmp_read

        graph = await qmp_read.read_graph(sess)
        named = await qmp_read.read_named_nodes(sess)
        devices = await qmp_read.read_device_drives(sess)
        assert backends_named_by_id(graph)
        # a device's drive: the -drive id, else its backend's root (the commit's filter above sd-fmt)
        assert sorted(devices) == ["disk-sd", "disk-sd2", "virtio-disk0", "virtio-disk1"]  # not cd0 (empty), net0
        assert (devices["disk-sd2"], devices["virtio-disk0"], devices["virtio-disk1"]) == ("drive-sd2", "vd-fmt", "drive1")
        block = await sess.execute("query-block")
        mine = device_names(_Graph(graph, named), devices)
        assert mine == by_query_block(block)
        assert {shown for shown, _ in mine.values()} == {"disk-sd", "disk-sd2", "lonely", "anondrive", "virtio-disk0",
                                                         "virtio-disk1"}
        drives, _ = await qmp_read.read_drives(sess)
        assert {(d.name, d.device, d.has_device) for d in drives} >= {
            ("disk-sd2", "drive-sd2", True), ("lonely", "lonely", True), ("anondrive", "anondrive", True),
            ("virtio-disk1", "drive1", True)}
        assert {d.name: d.jobs for d in drives if d.jobs} == {"lonely": ["s1"], "virtio-disk1": ["m1"],
                                                               "disk-sd": ["c1"]}
    finally:
        await sess.close()
        q.stop()


async def _greeted(q: LabQemu, timeout: float) -> None:
    """Until QEMU answers on the lab's own monitor."""
    import asyncio

    from qemu.qmp import QMPClient

    client = QMPClient("deep-test")
    await asyncio.wait_for(client.connect(str(q.ctl)), timeout)
    await client.execute("query-status")
    await client.disconnect()


# -- a 1000-image chain on the VMs operators run -------------------------------------------------
async def test_deep_chain_drives_appear_with_their_names_and_whole_chain(lab):
    """A q35 with a -drive disk (virtio-disk0 on drive0) and a libvirt-style -blockdev disk
    (virtio-disk1, an anonymous backend), each on its own top over one 1000-image chain: both
    drives appear, named by their device ids, each with all 1001 images, in the hub and on screen,
    and the connection is never lost.  (The lab's libvirt kind opens every layer with its own
    -blockdev: QEMU takes minutes to start that at this depth, so the -blockdev top here lets
    QEMU open its backing chain.)"""
    from tui.backend.lab_qemu import run

    from .uihelp import graph, running_app, until

    depth = deep_enough()
    chain = lab.make_chain(depth, 16 * MiB, prefix="deep-", data=False)
    tops = []
    for i in range(2):
        top = lab.dir / f"top{i}.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", chain[-1].name, "-F", "qcow2", top.name], cwd=lab.dir)
        tops.append(top)
    q = _start_q35(lab, "deep", [
        "-drive", f"if=none,id=drive0,file={tops[0]},format=qcow2",
        "-device", "virtio-blk-pci,drive=drive0,id=virtio-disk0",
        "-blockdev", json.dumps({"driver": "qcow2", "node-name": "libvirt-1-format",
                                 "file": {"driver": "file", "filename": str(tops[1])}}),
        "-device", "virtio-blk-pci,drive=libvirt-1-format,id=virtio-disk1"], timeout=120)
    files = [str(p.resolve()) for p in chain]
    await _greeted(q, 180)  # QEMU greets once it has opened every image

    async with running_app([str(q.qmp)], first_drive_timeout=120) as (app, pilot):
        hub = app.hub
        errors: list[str] = []
        hub.subscribe(lambda c: getattr(c, "kind", "") == "error" and errors.append(c.text))
        session = q.qmp.name
        await until(pilot, lambda: len(hub.drives.get(session, [])) == 2 and not any(
            i.partial for d in hub.drives[session] for i in d.images), timeout=180, what="both drives in full")
        d0, d1 = hub.drives[session]
        assert (d0.name, d0.device, d0.has_device) == ("virtio-disk0", "drive0", True)
        assert (d1.name, d1.device, d1.has_device) == ("virtio-disk1", "libvirt-1-format", False)
        for d, top in zip((d0, d1), tops):
            assert [i.filename for i in d.images] == files + [str(top.resolve())]
        g = graph(app)
        await until(pilot, lambda: g.drive is not None and len(g.drive.images) == depth + 1, what="the chain on screen")
        lines = lambda: [g.render_line(y).text for y in range(g.size.height)]  # noqa: E731
        await until(pilot, lambda: any(g.drive.active.label in ln for ln in lines()), what="the active image in view")
        assert not errors, errors
