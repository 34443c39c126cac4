"""The libvirt backend: one :class:`LibvirtSession` per running domain of a libvirt URI.

Chains come from the live domain XML (:mod:`tui.backend.libvirt_xml`), sizes from
``domainListGetStats``.  Every operation is a libvirt API call (never
``qemuMonitorCommand``: that taints the domain and leaves libvirt's view of the chain
stale).  Job ends arrive as ``VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2`` (libvirt's event loop in a
thread, handed to asyncio); progress is polled with ``blockJobInfo`` off the loop; the
reason a job failed comes read-only from QEMU's own events
(``libvirt_qemu.qemuMonitorEventRegister``, which does not taint).  Jobs and events are
handed to the hub in QEMU's vocabulary by :class:`~tui.backend.libvirt_jobs.LibvirtJobs`.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import Any

from .chain import Drive, JobTarget, NodeInfoCache
from .errors import ConnectFailed, NoMembers, NotConnected, QMPCommandError
from .libvirt_conn import Connection, command_error, load_libvirt, on_loop, split_address
from .libvirt_jobs import LibvirtJobs
from .libvirt_xml import build_libvirt_drives
from .session import SessionState

log = logging.getLogger(__name__)

# what chaintui sends and what it does in libvirt-python; arguments are keyword names of the call
CALLS = ("blockPull", "blockRebase", "blockCommit", "blockCopy", "snapshotCreateXML", "blockJobAbort",
         "blockJobSetSpeed")
PRIVATE_KEYS = ("job-id", "virsh")  # chaintui's own notes in a step's arguments, not sent to libvirt
# VIR_DOMAIN_EVENT_STOPPED_* details, as the operator reads them
STOP_REASONS = {0: "was shut down", 1: "was destroyed", 2: "crashed", 3: "migrated away", 4: "was saved",
                5: "failed", 6: "was reverted to a snapshot"}


async def open_domains(address: str, name: str | None = None) -> list[LibvirtSession]:
    """A session per running domain of ``address`` (or just the one after ``#``)."""
    libvirt = load_libvirt()
    uri, only = split_address(address)
    conn = await Connection.get(uri)
    try:
        if only:
            try:
                doms = [await asyncio.to_thread(conn.conn.lookupByName, only)]
            except libvirt.libvirtError as exc:
                raise ConnectFailed(f"{address}: {exc.get_error_message()}") from None
        else:
            doms = await asyncio.to_thread(conn.conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            doms.sort(key=lambda d: d.name())
        if not doms:
            raise NoMembers(f"{uri}: no running domains")
        sessions = []
        for dom in doms:
            conn.users += 1
            label = name if name and len(doms) == 1 else dom.name()
            sessions.append(LibvirtSession(conn, dom, label, f"{uri}#{dom.name()}"))
        return sessions
    finally:
        await conn.release()


async def watch_domains(address: str, on_started: Callable[[str], None]) -> Callable[[], Awaitable[None]] | None:
    """For an address naming every domain of a URI (no ``#name``): ``on_started(address of the
    domain)`` when a domain starts.  Returns what stops watching; None for a single domain."""
    uri, only = split_address(address)
    if only:
        return None
    libvirt = load_libvirt()
    conn = await Connection.get(uri)

    def listener(dom: Any, event: int, detail: int) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            on_started(f"{uri}#{dom.name()}")

    conn.add_lifecycle(listener)

    async def stop() -> None:
        conn.remove_lifecycle(listener)
        await conn.release()

    return stop


class LibvirtSession(LibvirtJobs):
    """One libvirt domain as a group of drives (implements :class:`~tui.backend.backend.Backend`)."""

    kind = "libvirt"

    def __init__(self, conn: Connection, dom: Any, name: str, address: str) -> None:
        from .libvirt_plans import LibvirtControl, LibvirtPlanner

        self._conn = conn
        self.dom = dom
        self.domain = dom.name()
        self.uri = conn.uri
        self.name = name
        self.raw_address = address
        self.state = SessionState.CONNECTING
        self.last_error = ""
        self.generation = 0
        self.disks: list[str] = []
        self.persistent = False
        self.planner = LibvirtPlanner(self)
        self.control = LibvirtControl(self)
        self._event_callbacks: list[Callable[[Any, dict[str, Any]], None]] = []
        self._state_callbacks: list[Callable[[Any], None]] = []
        self._callback_ids: list[tuple[str, int]] = []
        self._job_ids: dict[str, str] = {}  # disk -> chaintui's id of the job running on it
        self._job_types: dict[str, str] = {}
        self._ready: set[str] = set()
        self._errors: dict[str, str] = {}  # QEMU job id -> its error text
        self._seen_ids: set[str] = set()
        self._last: dict[str, dict[str, Any]] = {}  # disk -> last blockJobInfo
        self._scan: asyncio.Task[None] | None = None
        self._stats: dict[str, Any] = {}  # the last block stats (sizes), read while no job ran

    # -- Backend: state --------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED and self._conn.conn is not None

    @property
    def address_text(self) -> str:
        return self.raw_address

    @property
    def warning(self) -> str | None:
        return None

    @property
    def local(self) -> bool:
        """The domain's files are on this machine (else targets cannot be checked here)."""
        from urllib.parse import urlsplit

        return not urlsplit(self.uri).hostname

    def image_users(self) -> Any:
        from .libvirt_users import DomainUsers  # every domain of the connection, as users of images
        return DomainUsers(self._conn)

    def subscribe_events(self, callback: Callable[[Any, dict[str, Any]], None]) -> None:
        self._event_callbacks.append(callback)

    def subscribe_state(self, callback: Callable[[Any], None]) -> None:
        self._state_callbacks.append(callback)

    def _set_state(self, state: SessionState, why: str = "") -> None:
        self.state = state
        if why:
            self.last_error = why
        for cb in list(self._state_callbacks):
            cb(self)

    async def start(self) -> None:
        conn = self._conn.conn
        if conn is None:
            raise ConnectFailed(f"{self.uri}: connection closed")
        libvirt = load_libvirt()
        try:
            self.persistent = bool(await asyncio.to_thread(self.dom.isPersistent))
            self._register(conn)
        except libvirt.libvirtError as exc:  # gone since it was listed (destroyed, undefined): not this one
            self._deregister()
            raise ConnectFailed(f"{self.name}: {exc.get_error_message()}") from None
        self._conn.add_lifecycle(self._on_lifecycle)  # the domain stopping and starting again
        self._conn.closed_callbacks.append(self._on_conn_closed)
        self.generation += 1
        self._set_state(SessionState.CONNECTED)

    def _register(self, conn: Any) -> None:
        """The domain's own callbacks: block jobs, and (read-only, does not taint the domain) QEMU's
        events for the reason a job failed."""
        libvirt = load_libvirt()
        import libvirt_qemu

        loop = asyncio.get_running_loop()
        self._callback_ids.append(("any", conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_loop(loop, self._on_block_job), None)))
        self._callback_ids.append(("qemu", libvirt_qemu.qemuMonitorEventRegister(
            conn, self.dom, None, on_loop(loop, self._on_qemu_event), None, 0)))

    def _deregister(self) -> None:
        import libvirt_qemu

        conn = self._conn.conn
        for kind, cid in self._callback_ids:
            try:
                if conn is None:
                    break
                if kind == "any":
                    conn.domainEventDeregisterAny(cid)
                else:
                    libvirt_qemu.qemuMonitorEventDeregister(conn, cid)
            except Exception:  # noqa: BLE001 - a connection already gone
                pass
        self._callback_ids.clear()

    async def close(self) -> None:
        self._deregister()
        self._conn.remove_lifecycle(self._on_lifecycle)
        if self._on_conn_closed in self._conn.closed_callbacks:
            self._conn.closed_callbacks.remove(self._on_conn_closed)
        if self._scan is not None:
            self._scan.cancel()
        if self.state is not SessionState.CLOSED:
            await self._conn.release()
            self._set_state(SessionState.CLOSED)

    def _on_conn_closed(self, why: str) -> None:
        log.info("%s: %s", self.name, why)
        self._set_state(SessionState.LOST, why)

    def _on_lifecycle(self, dom: Any, event: int, detail: int) -> None:
        """The domain stopped (its jobs end with it), or started again (a transient one is a new
        domain of the same name: the callbacks follow it)."""
        libvirt = load_libvirt()
        if dom.name() != self.domain or self.state is SessionState.CLOSED:
            return
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._set_state(SessionState.STOPPED, f"domain {self.domain} {STOP_REASONS.get(detail, 'stopped')}")
        elif event == libvirt.VIR_DOMAIN_EVENT_STARTED and self.state is SessionState.STOPPED:
            conn = self._conn.conn
            if conn is None:
                return
            self._deregister()
            self.dom = dom
            self._job_ids.clear()
            self._ready.clear()
            self._last.clear()
            self._stats = {}
            self._register(conn)
            self.generation += 1
            self._set_state(SessionState.CONNECTED)

    # -- Backend: commands -----------------------------------------------
    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        libvirt = load_libvirt()
        if not self.connected:
            raise NotConnected(f"{self.name}: not connected to libvirt ({self.last_error or self.state.value})")
        if command not in CALLS:
            raise QMPCommandError(command, "NotSupported", f"chaintui does not send {command} to libvirt")
        args = dict(arguments or {})
        job_id = args.pop("job-id", None)
        for key in PRIVATE_KEYS:
            args.pop(key, None)
        flags = 0
        for flag in args.pop("flags", []):
            flags |= getattr(libvirt, flag)
        disk = args.get("disk")
        if job_id and disk:
            self._job_ids[disk] = job_id  # before the call: its events may come before it returns
            self._seen_ids.add(job_id)
            self._ready.discard(disk)
        method = getattr(self.dom, command)
        try:
            return await asyncio.to_thread(method, *args.values(), flags)
        except libvirt.libvirtError as exc:
            if job_id and disk and self._job_ids.get(disk) == job_id:
                del self._job_ids[disk]
            code = exc.get_error_code()
            if self._conn.conn is None or code in (libvirt.VIR_ERR_NO_CONNECT, libvirt.VIR_ERR_INVALID_CONN):
                raise NotConnected(f"{self.name}: libvirt connection lost during {command}") from None
            raise command_error(libvirt, command, exc) from None

    # -- Backend: drives -------------------------------------------------
    async def read_drives(self, cache: NodeInfoCache, previous: list[Drive] | None = None) -> tuple[list[Drive], list[JobTarget]]:
        libvirt = load_libvirt()
        if not self.connected:
            raise NotConnected(f"{self.name}: not connected to libvirt")

        def read() -> tuple[str, dict[str, Any]]:
            xml = self.dom.XMLDesc(0)  # libvirt's own record: does not ask QEMU
            # QEMU 7.2 segfaults when asked for the backing chain's block stats while a
            # block-stream finishes (reproduced with blockRebase + domainListGetStats in a
            # loop): while any disk has a job, the sizes read before it are kept.
            disks = [t.get("dev", "") for t in ET.fromstring(xml).findall("./devices/disk/target")]
            if any(self.dom.blockJobInfo(disk, 0) for disk in disks):
                return xml, self._stats
            stats = self._conn.conn.domainListGetStats(
                [self.dom], libvirt.VIR_DOMAIN_STATS_BLOCK, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_BACKING)
            self._stats = stats[0][1] if stats else {}
            return xml, self._stats

        try:
            xml, stats = await asyncio.to_thread(read)
        except libvirt.libvirtError as exc:
            raise command_error(libvirt, "XMLDesc", exc) from None
        drives = build_libvirt_drives(self.name, xml, stats, self._job_ids)
        self.disks = [d.name for d in drives]
        return drives, []

    # -- Backend: progress -----------------------------------------------
    async def read_structure(self) -> tuple[Any, ...] | None:
        return None  # libvirt reports its own changes as events

    async def poll_jobs(self, full: bool, open_jobs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """blockJobInfo for every disk; libvirt cannot list ended jobs (their end is an event)."""
        return await self._scan_jobs(), None
