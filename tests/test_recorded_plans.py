"""Plans built on drives recorded from real QEMU 7.2 and 10 (``tests/data/qemuN/*.json``, see ``tests/data/record.py``).

The live tests are the evidence that operations work; these pin down, for the VM shapes found in the
field, what each plan sends: the QMP arguments and the libvirt calls are both built from what the
plan decided (:class:`~tui.backend.plan.Choice`) and agree with each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tui.backend import ops
from tui.backend.block_graph import backends_named_by_id, build_drives
from tui.backend.chain import Drive
from tui.backend.errors import ValidationError
from tui.backend.libvirt_plans import LibvirtPlanner

DATA = Path(__file__).parent / "data"
QEMUS = sorted(p.name for p in DATA.glob("qemu*") if p.is_dir())
SHAPES = ["libvirt_vm", "drive_vm", "qsd", "libvirt_vm_mirror"]


@pytest.fixture(params=QEMUS)
def qemu(request) -> str:
    """Each QEMU the answers were recorded from."""
    return request.param


def test_answers_of_both_qemus_are_recorded():
    assert QEMUS == ["qemu10", "qemu7"]
    for q in QEMUS:
        assert sorted(p.stem for p in (DATA / q).glob("*.json")) == sorted(SHAPES)


def drives_of(shape: str, qemu: str) -> list[Drive]:
    """The drives chaintui builds from the answers it asks for (no query-block; the devices'
    drive properties only where a backend is named by a bare name, as tui.backend.qmp_read asks)."""
    answers = json.loads((DATA / qemu / f"{shape}.json").read_text())
    devices = answers["devices"] if backends_named_by_id(answers["graph"]) else {}
    drives, _ = build_drives("vm", answers["graph"], answers["named"], devices, answers["exports"])
    return drives


def libvirt(drives: list[Drive]) -> LibvirtPlanner:
    """The planner of a domain named vm on a remote libvirt (its files are not looked at here)."""
    return LibvirtPlanner(SimpleNamespace(domain="vm", uri="qemu+ssh://host/system", persistent=True,
                                          local=False, disks=[d.name for d in drives]))  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", SHAPES)
def test_recorded_drives_are_named_as_operators_know_them(shape, qemu):
    drives = drives_of(shape, qemu)
    names = [d.name for d in drives]
    expected = {"libvirt_vm": ["virtio-disk0", "virtio-disk1"], "libvirt_vm_mirror": ["virtio-disk0", "virtio-disk1"],
                "drive_vm": ["virtio-disk0", "virtio-disk1"], "qsd": ["drive0", "drive1"]}[shape]
    assert sorted(names) == expected
    for d in drives:
        assert all(i.filename.startswith("/lab/") for i in d.images), d.notation()
    busy = [d for d in drives if d.jobs]
    assert [d.jobs for d in busy] == ([["mirror-virtio-disk0"]] if shape == "libvirt_vm_mirror" else [])


@pytest.mark.parametrize("shape", ["libvirt_vm", "drive_vm", "qsd"])
def test_stream_and_commit_choices_match_both_backends(shape, qemu):
    drives = drives_of(shape, qemu)
    drive = max(drives, key=lambda d: len(d.images))
    planner = libvirt(drives)
    base, middle = drive.images[0], drive.images[1]

    plan = ops.plan_stream(drive, base.node_name, "1M", "j1")
    (step,) = plan.steps
    assert step.arguments["base-node"] == plan.choice.base == base.node_name and plan.choice.speed == 1 << 20
    (call,) = planner.plan_stream(drive, base.node_name, "1M", "j1").steps
    assert call.command == "blockRebase" and call.arguments["base"] == base.node_name
    assert call.arguments["bandwidth"] == 1 << 20

    flat = ops.plan_stream(drive, None, 0, "j2")
    assert "base-node" not in flat.steps[0].arguments and flat.choice.base is None
    assert planner.plan_stream(drive, None, 0, "j2").steps[0].command == "blockPull"

    active = ops.plan_commit(drive, base.node_name, None, 0, "j3", shared=[])
    assert active.choice.top is None and active.steps[0].ends_ready and "top-node" not in active.steps[0].arguments
    (call,) = planner.plan_commit(drive, base.node_name, None, 0, "j3", shared=[]).steps
    assert call.arguments["top"] is None and "VIR_DOMAIN_BLOCK_COMMIT_ACTIVE" in call.arguments["flags"]

    inner = ops.plan_commit(drive, base.node_name, middle.node_name, 0, "j4", shared=[])
    assert inner.steps[0].arguments["top-node"] == inner.choice.top == middle.node_name
    (call,) = planner.plan_commit(drive, base.node_name, middle.node_name, 0, "j4", shared=[]).steps
    assert call.arguments["top"] == middle.node_name and call.arguments["base"] == base.node_name
    assert not call.ends_ready


@pytest.mark.parametrize("shape", ["libvirt_vm", "drive_vm", "qsd"])
@pytest.mark.parametrize("sync, mode, copy_mode", [("top", "absolute-paths", None), ("full", "existing", "write-blocking")])
def test_mirror_choices_match_both_backends(shape, sync, mode, copy_mode, qemu):
    drives = drives_of(shape, qemu)
    drive = drives[0]
    target = "/elsewhere/target disk.qcow2"
    plan = ops.plan_mirror(drive, target, "qcow2", sync, "4M", "m", mode=mode, copy_mode=copy_mode, here=False)
    args = plan.steps[0].arguments
    c = plan.choice
    assert (args["target"], args["format"], args["sync"], args["mode"], args.get("copy-mode")) == (
        c.target, c.fmt, c.sync, c.mode, c.copy_mode) == (target, "qcow2", sync, mode, copy_mode)
    (call,) = libvirt(drives).plan_mirror(drive, target, "qcow2", sync, "4M", "m", mode=mode,
                                          copy_mode=copy_mode).steps
    flags = call.arguments["flags"]
    assert call.command == "blockCopy" and call.arguments["params"] == {"bandwidth": 4 << 20}
    assert ("VIR_DOMAIN_BLOCK_COPY_SHALLOW" in flags) == (sync == "top")
    assert ("VIR_DOMAIN_BLOCK_COPY_REUSE_EXT" in flags) == (mode == "existing") == (not call.creates_target)
    assert ("VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES" in flags) == (copy_mode == "write-blocking")
    assert '<source file="/elsewhere/target disk.qcow2"/>' in call.arguments["destxml"]


@pytest.mark.parametrize("shape", ["libvirt_vm", "drive_vm", "qsd"])
def test_copy_choices_match_both_backends(shape, qemu):
    drives = drives_of(shape, qemu)
    drive = drives[0]
    planner = libvirt(drives)
    by_stream = ops.plan_copy(drive, "/elsewhere/copy.qcow2", "stream", "qcow2", "2M", "c", "snap", here=False)
    assert by_stream.choice.method == "stream" and by_stream.choice.speed == 2 << 20
    assert [s.command for s in by_stream.steps] == ["blockdev-snapshot-sync", "block-stream"]
    calls = planner.plan_copy(drive, "/elsewhere/copy.qcow2", "stream", "qcow2", "2M", "c", "snap").steps
    assert [s.command for s in calls] == ["snapshotCreateXML", "blockPull"]
    assert calls[1].arguments["bandwidth"] == 2 << 20
    by_mirror = ops.plan_copy(drive, "/elsewhere/copy.qcow2", "mirror", "qcow2", 0, "c", "snap", here=False)
    assert by_mirror.choice.method == "mirror" and by_mirror.choice.sync == "full"
    (call,) = planner.plan_copy(drive, "/elsewhere/copy.qcow2", "mirror", "qcow2", 0, "c", "snap").steps
    assert call.command == "blockCopy" and "VIR_DOMAIN_BLOCK_COPY_SHALLOW" not in call.arguments["flags"]


def test_a_busy_recorded_drive_is_refused_by_both_backends(qemu):
    drives = drives_of("libvirt_vm_mirror", qemu)
    busy = next(d for d in drives if d.jobs)
    with pytest.raises(ValidationError, match="busy|mirror-virtio-disk0"):
        ops.plan_stream(busy, None, 0, "s")
    with pytest.raises(ValidationError, match="one block job per disk"):
        libvirt(drives).plan_stream(busy, None, 0, "s")


async def test_answers_read_while_a_job_ended_are_read_again():
    """A stream ended between chaintui's reads of the graph and of the node list (recorded on QEMU 7.2,
    ``tests/data/races``): built together they gave virtio-disk0 twice (``virtio-disk0(#block3453)``),
    a name the stream's card then kept.  Answers that disagree are read again."""
    from tui.backend import qmp_read

    race = json.loads((DATA / "races" / "drive_vm_stream_end.json").read_text())
    clean = json.loads((DATA / "qemu7" / "drive_vm.json").read_text())
    assert not qmp_read._agree(race["graph"], race["named"], race["exports"])
    assert qmp_read._agree(clean["graph"], clean["named"], clean["exports"])

    class Recorded:
        """Answers as QEMU gave them: the race first, a quiet read after."""

        name = "vm"

        def __init__(self) -> None:
            self.rounds = [race, clean]
            self.asked: list[str] = []

        async def execute(self, cmd: str, args: dict | None = None):
            self.asked.append(cmd)
            answers = self.rounds[0] if cmd != "query-block-exports" or len(self.rounds) == 1 else self.rounds.pop(0)
            return {"x-debug-query-block-graph": lambda: answers["graph"],
                    "query-named-block-nodes": lambda: answers["named"],
                    "query-block-exports": lambda: answers["exports"],
                    "qom-list": lambda: [{"name": d, "type": "child<virtio-blk-pci>"} for d in answers["devices"]],
                    "qom-get": lambda: answers["devices"][args["path"].rsplit("/", 1)[1]]}[cmd]()

    session = Recorded()
    drives, _ = await qmp_read.read_drives(session)
    assert [d.name for d in drives] == ["virtio-disk0", "virtio-disk1"]
    assert session.asked.count("x-debug-query-block-graph") == 2
