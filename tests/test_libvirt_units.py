"""The libvirt backend's pure parts: addresses, the chain from domain XML, a missing binding."""

from __future__ import annotations

import sys

from tui.backend.backend import is_libvirt_address
from tui.backend.libvirt_conn import split_address
from tui.backend.libvirt_xml import build_libvirt_drives
from tui.cli import _libvirt_missing

XML = """<domain type='qemu'><name>vm1</name><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
  <source file='/img/C.qcow2' index='3'/>
  <backingStore type='file' index='4'><format type='qcow2'/><source file='/img/B.qcow2'/>
    <backingStore type='file' index='5'><format type='raw'/><source file='/img/A.raw'/><backingStore/></backingStore>
  </backingStore><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><source file='/img/x.iso' index='2'/><target dev='sda' bus='sata'/></disk>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/D.qcow2' index='1'/>
  <backingStore/><target dev='vdb' bus='virtio'/></disk>
</devices></domain>"""

STATS = {"block.count": 4, "block.0.path": "/img/C.qcow2", "block.0.capacity": 100, "block.0.physical": 10,
         "block.1.path": "/img/B.qcow2", "block.1.capacity": 100, "block.1.physical": 20,
         "block.2.path": "/img/A.raw", "block.2.capacity": 100, "block.2.physical": 100}


def test_addresses():
    assert is_libvirt_address("qemu:///system") and is_libvirt_address("qemu+ssh://root@hv2/system")
    assert not is_libvirt_address("/run/qemu.sock") and not is_libvirt_address("ssh://hv2/run/q.sock")
    assert split_address("qemu:///system#vm1") == ("qemu:///system", "vm1")
    assert split_address("qemu+ssh://h/system?keyfile=/k") == ("qemu+ssh://h/system?keyfile=/k", None)


def test_chain_from_live_xml():
    vda, vdb = build_libvirt_drives("vm1", XML, STATS, {"vda": "stream-vda-1"})
    assert vda.notation() == "[A.raw] -> [B.qcow2] -> [C.qcow2]"
    assert [i.node_name for i in vda.images] == ["vda[5]", "vda[4]", "vda[3]"]
    assert [i.format for i in vda.images] == ["raw", "qcow2", "qcow2"]
    assert [i.actual_size for i in vda.images] == [100, 20, 10]
    assert vda.images[1].backing_file == "/img/A.raw" and vda.images[0].backing_file is None
    assert vda.jobs == ["stream-vda-1"] and vdb.jobs == []
    assert vdb.notation() == "[D.qcow2]" and vdb.images[0].virtual_size == 0  # no stats for it


def test_missing_binding_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt -> ImportError
    why = _libvirt_missing(["/run/q.sock", "qemu:///system"])
    assert why and "chaintui[libvirt]" in why and "qemu:///system" in why
    assert _libvirt_missing(["/run/q.sock"]) is None
