"""The embedded libvirt demo: a transient TCG domain with no OS on the demo chain.

Defined in the running libvirtd (``qemu:///system`` as root, ``qemu:///session``
otherwise); destroyed (a transient domain is then undefined too) on close.
"""

from __future__ import annotations

import os
import uuid
from xml.sax.saxutils import quoteattr

from .libvirt_conn import load_libvirt


def domain_xml(name: str, disks: list[str]) -> str:
    """A domain that sits in firmware (no OS): enough for every block job."""
    devs = "".join(
        f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file={quoteattr(path)}/><target dev='vd{chr(ord('a') + i)}' bus='virtio'/></disk>"
        for i, path in enumerate(disks)
    )
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><on_poweroff>destroy</on_poweroff>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
        f"{devs}<video><model type='none'/></video><memballoon model='none'/></devices></domain>"
    )


def default_uri() -> str:
    return "qemu:///system" if os.geteuid() == 0 else "qemu:///session"


class LibvirtDemo:
    """One transient domain; ``address`` is what chaintui opens."""

    def __init__(self, disks: list[str], uri: str | None = None) -> None:
        self.uri = uri or default_uri()
        self.name = f"chaintui-demo-{uuid.uuid4().hex[:6]}"
        self.disks = disks
        self._conn = None
        self._dom = None

    @property
    def address(self) -> str:
        return f"{self.uri}#{self.name}"

    def start(self) -> str:
        libvirt = load_libvirt()
        for path in self.disks:  # the qemu user must reach the images (mkdtemp folders are 0700)
            os.chmod(os.path.dirname(path), 0o755)
        try:
            self._conn = libvirt.open(self.uri)
            self._dom = self._conn.createXML(domain_xml(self.name, self.disks), 0)
        except libvirt.libvirtError as exc:
            self.close()
            raise RuntimeError(f"{self.uri}: {exc.get_error_message() or exc}") from None
        return self.address

    def close(self) -> None:
        if self._dom is not None:
            try:
                self._dom.destroy()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._dom = None
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001
                pass
            self._conn = None
