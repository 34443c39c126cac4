"""Every domain defined on a libvirt connection, as users of image files.

A domain that is shut off (or running, but not opened in chaintui) has no drive in
the hub, yet its disks would see a commit into any image of their chains, and need
every file of them kept.  :class:`DomainUsers` lists them all (``listAllDomains(0)``:
active and inactive) and reads each disk's source and its ``<backingStore>`` chain when
libvirt records one: from the inactive XML (``VIR_DOMAIN_XML_INACTIVE``) of a shut-off
domain, from the live XML of a running one.  Read-only libvirt calls, in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlsplit

from .backend import ImageUser
from .errors import NotConnected
from .libvirt_conn import Connection, load_libvirt

log = logging.getLogger(__name__)

# virDomainState -> virsh's words
STATES = {0: "no state", 1: "running", 2: "idle", 3: "paused", 4: "in shutdown", 5: "shut off", 6: "crashed",
          7: "pmsuspended"}


class DomainUsers:
    """The domains of one shared libvirt connection (implements :class:`~tui.backend.backend.ImageUsers`)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.key = conn.uri

    async def read(self) -> list[ImageUser]:
        conn = self._conn.conn
        if conn is None:
            raise NotConnected(f"{self.key}: connection closed, its domains cannot be listed")
        return await asyncio.to_thread(read_domains, conn, self.key)


def read_domains(conn: Any, uri: str) -> list[ImageUser]:
    """Blocking: every disk of every domain defined on ``conn`` (a domain undefined meanwhile is skipped)."""
    libvirt = load_libvirt()
    out: list[ImageUser] = []
    for dom in conn.listAllDomains(0):
        try:
            name = dom.name()
            state = dom.state()[0]
            # a shut-off domain's only XML is its definition; a running one's live XML has the chain now
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if state == libvirt.VIR_DOMAIN_SHUTOFF else 0)
        except libvirt.libvirtError as exc:
            log.debug("%s: domain skipped: %s", uri, exc)
            continue
        out.extend(domain_disks(name, STATES.get(state, f"state {state}"), xml, uri))
    return out


def domain_disks(name: str, state: str, xml: str, uri: str) -> list[ImageUser]:
    """The disks of one domain XML that have a file or block device as their source."""
    local = not urlsplit(uri).hostname
    root = ET.fromstring(xml)
    out = []
    for disk in root.findall("./devices/disk"):
        target = disk.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        chain: list[str] = []
        node: ET.Element | None = disk
        while node is not None:
            source = node.find("source")
            path = (source.get("file") or source.get("dev")) if source is not None else None
            if not path or not path.startswith("/"):
                break  # no source (an empty CD-ROM), or a network one: no file here
            chain.append(os.path.realpath(path))  # as the graph keys its images (image_key)
            node = node.find("backingStore")
        if chain:
            out.append(ImageUser(name, state, dev, tuple(chain), f"{uri}#{name}", local,
                                 disk.find("readonly") is not None))
    return out
