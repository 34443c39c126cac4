"""The libvirt backend: one :class:`LibvirtSession` per running domain of a libvirt URI.

Chains come from the live domain XML (``<backingStore>`` nesting, layers named
``vda[N]`` as libvirt names them), sizes from ``domainListGetStats``.  Every
operation is a libvirt API call (never ``qemuMonitorCommand``: that taints the
domain and leaves libvirt's view of the chain stale).  Job ends arrive as
``VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2`` (libvirt's event loop in a thread, handed to asyncio);
progress is polled with ``blockJobInfo`` off the loop; the reason a job failed
comes read-only from QEMU's own events (``libvirt_qemu.qemuMonitorEventRegister``,
which does not taint).  Events are handed to the hub in QEMU's vocabulary (see
:mod:`tui.backend.backend`).

libvirt names jobs by disk (one job per disk at a time); chaintui gives each
job an id of its own so finished jobs stay apart from the next one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from .chain import Drive, Image, JobTarget, NodeInfoCache
from .errors import ConnectFailed, NotConnected, QMPCommandError
from .libvirt_conn import Connection, load_libvirt, on_loop, split_address
from .session import SessionState

log = logging.getLogger(__name__)

JOB_TYPES = {1: "stream", 2: "mirror", 3: "commit", 4: "commit", 5: "backup"}
# what chaintui sends and what it does in libvirt-python; arguments are keyword names of the call
CALLS = ("blockPull", "blockRebase", "blockCommit", "blockCopy", "snapshotCreateXML", "blockJobAbort",
         "blockJobSetSpeed")
PRIVATE_KEYS = ("job-id", "virsh")  # chaintui's own notes in a step's arguments, not sent to libvirt


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
            raise ConnectFailed(f"{uri}: no running domains")
        sessions = []
        for dom in doms:
            conn.users += 1
            label = name if name and len(doms) == 1 else dom.name()
            sessions.append(LibvirtSession(conn, dom, label, f"{uri}#{dom.name()}"))
        return sessions
    finally:
        await conn.release()


class LibvirtSession:
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
        libvirt = load_libvirt()
        import libvirt_qemu

        conn = self._conn.conn
        if conn is None:
            raise ConnectFailed(f"{self.uri}: connection closed")
        self.persistent = bool(await asyncio.to_thread(self.dom.isPersistent))
        loop = asyncio.get_running_loop()
        self._callback_ids.append(("any", conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2, on_loop(loop, self._on_block_job), None)))
        self._callback_ids.append(("any", conn.domainEventRegisterAny(
            self.dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_loop(loop, self._on_lifecycle), None)))
        # read-only: QEMU's own events, for the reason a job failed (does not taint the domain)
        self._callback_ids.append(("qemu", libvirt_qemu.qemuMonitorEventRegister(
            conn, self.dom, None, on_loop(loop, self._on_qemu_event), None, 0)))
        self._conn.closed_callbacks.append(self._on_conn_closed)
        self.generation += 1
        self._set_state(SessionState.CONNECTED)

    async def close(self) -> None:
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

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        libvirt = load_libvirt()
        if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
            self._set_state(SessionState.LOST, f"domain {self.domain} stopped")

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
            raise QMPCommandError(command, _error_name(libvirt, code), exc.get_error_message() or str(exc)) from None

    # -- Backend: drives -------------------------------------------------
    async def read_drives(self, cache: NodeInfoCache) -> tuple[list[Drive], list[JobTarget]]:
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
            raise QMPCommandError("XMLDesc", _error_name(libvirt, exc.get_error_code()),
                                  exc.get_error_message() or str(exc)) from None
        drives = build_libvirt_drives(self.name, xml, stats, self._job_ids)
        self.disks = [d.name for d in drives]
        return drives, []

    # -- Backend: progress -----------------------------------------------
    async def read_structure(self) -> tuple[Any, ...] | None:
        return None  # libvirt reports its own changes as events

    async def poll_jobs(self, full: bool, open_jobs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """blockJobInfo for every disk; libvirt cannot list ended jobs (their end is an event)."""
        return await self._scan_jobs(), None

    async def _scan_jobs(self) -> list[dict[str, Any]]:
        libvirt = load_libvirt()
        if not self.connected:
            raise NotConnected(f"{self.name}: not connected to libvirt")
        disks = list(self.disks) or await asyncio.to_thread(self._disks_from_xml)

        def ask() -> dict[str, dict[str, Any]]:
            flag = libvirt.VIR_DOMAIN_BLOCK_JOB_INFO_BANDWIDTH_BYTES
            return {disk: self.dom.blockJobInfo(disk, flag) for disk in disks}

        try:
            infos = await asyncio.to_thread(ask)
        except libvirt.libvirtError as exc:
            raise QMPCommandError("blockJobInfo", _error_name(libvirt, exc.get_error_code()),
                                  exc.get_error_message() or str(exc)) from None
        out = []
        for disk, info in infos.items():
            if not info:
                continue  # no job, or it just ended: its end comes as an event
            job_type = JOB_TYPES.get(info.get("type", 0), "?")
            job_id = self._job_id(disk, job_type)
            self._last[disk] = info
            ready = disk in self._ready
            out.append({
                "device": job_id, "type": job_type, "offset": int(info.get("cur", 0)),
                "len": int(info.get("end", 0)), "speed": int(info.get("bandwidth", 0)),
                "ready": ready, "status": "ready" if ready else "running",
                "paused": False, "busy": True, "io-status": "ok",
            })
        return out

    def _disks_from_xml(self) -> list[str]:
        root = ET.fromstring(self.dom.XMLDesc(0))
        return [t.get("dev", "") for t in root.findall("./devices/disk[@device='disk']/target")]

    def _job_id(self, disk: str, job_type: str) -> str:
        """chaintui's id for the job running on ``disk`` (one is made for a job started elsewhere)."""
        job_id = self._job_ids.get(disk)
        if job_id is None:
            n = 1
            while f"{job_type}-{disk}-{n}" in self._seen_ids:
                n += 1
            job_id = f"{job_type}-{disk}-{n}"
            self._seen_ids.add(job_id)
            self._job_ids[disk] = job_id
        self._job_types[disk] = job_type
        return job_id

    # -- events ----------------------------------------------------------
    def _emit(self, name: str, data: dict[str, Any]) -> None:
        event = {"event": name, "data": data}
        for cb in list(self._event_callbacks):
            try:
                cb(self, event)
            except Exception:  # noqa: BLE001 - one bad subscriber must not stop events
                log.exception("event callback failed")

    def _on_block_job(self, conn: Any, dom: Any, disk: str, job_type: int, status: int, opaque: Any) -> None:
        libvirt = load_libvirt()
        kind = JOB_TYPES.get(job_type, "?")
        job_id = self._job_id(disk, kind)
        last = self._last.get(disk, {})
        data: dict[str, Any] = {"device": job_id, "type": kind}
        if last:
            data.update({"len": int(last.get("end", 0)), "offset": int(last.get("cur", 0))})
        if status == libvirt.VIR_DOMAIN_BLOCK_JOB_READY:
            self._ready.add(disk)
            if "len" in data:
                data["offset"] = data["len"]  # in sync
            self._emit("BLOCK_JOB_READY", data)
            return
        self._job_ids.pop(disk, None)
        self._ready.discard(disk)
        self._last.pop(disk, None)
        if status == libvirt.VIR_DOMAIN_BLOCK_JOB_COMPLETED:
            if "len" in data:
                data["offset"] = data["len"]
            self._emit("BLOCK_JOB_COMPLETED", data)
        elif status == libvirt.VIR_DOMAIN_BLOCK_JOB_FAILED:
            reason = next((e for qid, e in self._errors.items() if f"-{disk}-" in qid), None)
            self._errors = {q: e for q, e in self._errors.items() if f"-{disk}-" not in q}
            data["error"] = reason or "failed (libvirt gives no reason)"
            self._emit("BLOCK_JOB_COMPLETED", data)
        else:
            self._emit("BLOCK_JOB_CANCELLED", data)

    def _on_qemu_event(self, conn: Any, dom: Any, event: str, seconds: int, micros: int, details: str | None,
                       opaque: Any) -> None:
        try:
            data = json.loads(details) if details else {}
        except ValueError:
            data = {}
        if event == "BLOCK_JOB_COMPLETED" and data.get("error"):
            self._errors[str(data.get("device"))] = str(data["error"])
        elif event == "BLOCK_JOB_ERROR":
            self._errors.setdefault(str(data.get("device")), f"I/O error during {data.get('operation')}")
        elif event == "JOB_STATUS_CHANGE" and data.get("status") == "running":
            # a job started (maybe by another client, virsh): find it and say so
            if self._scan is None or self._scan.done():
                self._scan = asyncio.ensure_future(self._announce_jobs())

    async def _announce_jobs(self) -> None:
        try:
            for info in await self._scan_jobs():
                self._emit("JOB_STATUS_CHANGE", {"id": info["device"], "status": info["status"]})
        except Exception:  # noqa: BLE001 - the next poll or event tells
            log.debug("job scan failed", exc_info=True)


def _error_name(libvirt: Any, code: int) -> str:
    for name in dir(libvirt):
        if name.startswith("VIR_ERR_") and getattr(libvirt, name) == code:
            return name
    return f"libvirt error {code}"


def build_libvirt_drives(session: str, xml: str, stats: dict[str, Any], jobs: dict[str, str]) -> list[Drive]:
    """Drives from a live domain XML (``<backingStore>`` nesting) and block stats (sizes)."""
    root = ET.fromstring(xml)
    sizes: dict[str, tuple[int, int | None]] = {}
    for i in range(int(stats.get("block.count", 0))):
        path = stats.get(f"block.{i}.path")
        if path:
            sizes[path] = (int(stats.get(f"block.{i}.capacity", 0)),
                           stats.get(f"block.{i}.physical", stats.get(f"block.{i}.allocation")))
    drives = []
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = disk.find("target")
        if target is None:
            continue
        dev = target.get("dev", "")
        layers: list[tuple[str, str, str]] = []  # (vda[N], file, format), top first
        node: ET.Element | None = disk
        top_format = (disk.find("driver").get("type", "?") if disk.find("driver") is not None else "?")
        while node is not None:
            source = node.find("source")
            if source is None:
                break
            path = source.get("file") or source.get("dev") or source.get("name") or ""
            index = source.get("index") or node.get("index") or ""
            fmt_el = node.find("format")
            fmt = fmt_el.get("type", "?") if fmt_el is not None else top_format
            layers.append((f"{dev}[{index}]" if index else dev, path, fmt))
            node = node.find("backingStore")
        if not layers:
            continue
        images = []
        known = [sizes[p][0] for _, p, _ in layers if p in sizes]
        for i, (name, path, fmt) in enumerate(reversed(layers)):
            # a layer new since the sizes were read: the disk's size, allocation unknown
            capacity, physical = sizes.get(path, (known[0] if known else 0, None))
            below = layers[len(layers) - i] if i > 0 else None
            images.append(Image(
                node_name=name, filename=path, format=fmt, virtual_size=capacity,
                actual_size=int(physical) if physical is not None else None,
                backing_file=below[1] if below else None,
                read_only=i < len(layers) - 1,
                job=jobs.get(dev),
            ))
        job = jobs.get(dev)
        drives.append(Drive(session=session, name=dev, device=dev, has_device=True, images=images,
                            root_node=dev, jobs=[job] if job else []))
    return drives

