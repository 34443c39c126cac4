"""What the screen says must be true (issue 10): drive names, stale chains, backing paths,
leftover nodes, on the VMs operators run (q35, ``-device virtio-blk-pci,id=virtio-diskN``)."""

from __future__ import annotations

import subprocess
import sys

from tui.widgets import DrivesPanel

from .conftest import chain_of, connect, wait_for
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


def test_chains_cli_prints_device_ids(libvirt_vm):
    out = subprocess.run([sys.executable, "-m", "tui", "chains", libvirt_vm.qmp], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("virtio-disk0: [d0-A.qcow2]")
    assert lines[1] == "virtio-disk1: [d1-A.qcow2] -> [d1-B.qcow2]"
    assert "virtio-backend" not in out.stdout
