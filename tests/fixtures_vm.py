"""The VMs operators actually run: q35 guests whose disks are ``-device virtio-blk-pci`` with ids.

``libvirt_vm``: two disks on ``-blockdev`` chains named the way libvirt names them
(``libvirt-N-format`` over ``libvirt-N-storage``), ``-device virtio-blk-pci,drive=NODE,id=virtio-diskN``.
``drive_vm``: two ``-drive`` disks, each behind ``-device virtio-blk-pci,drive=driveN,id=virtio-diskN``.
Both run ``-M q35 -accel tcg -S -nodefaults``; the lab writes through NBD exports as the guest would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tui.backend.lab import Lab, LabQemu, MiB



@dataclass
class Vm:
    q: LabQemu
    disks: list[list[Path]]  # per disk, its chain bottom first
    refs: list[Path]  # per disk, a flat copy of what the guest saw at start

    @property
    def qmp(self) -> str:
        return str(self.q.qmp)


def start_vm(lab: Lab, kind: str = "libvirt", lengths: tuple[int, ...] = (4, 2), size: int = 32 * MiB) -> Vm:
    disks = [lab.make_chain(n, size, prefix=f"d{i}-", subdir=kind,
                             absolute=(kind == "libvirt")) for i, n in enumerate(lengths)]
    refs = [lab.flatten(chain[-1]) for chain in disks]
    q = lab.start([chain[-1] for chain in disks], kind=kind, name=f"{kind}-vm")
    return Vm(q, disks, refs)


@pytest.fixture
def libvirt_vm(lab: Lab) -> Vm:
    return start_vm(lab, "libvirt")


@pytest.fixture
def drive_vm(lab: Lab) -> Vm:
    return start_vm(lab, "q35")
