"""libvirt's block jobs in QEMU's vocabulary, for :class:`~tui.backend.libvirt_session.LibvirtSession`.

libvirt names jobs by disk (one job per disk at a time); chaintui gives each
job an id of its own so finished jobs stay apart from the next one.  Progress is
``blockJobInfo`` for every disk; ends arrive as ``VIR_DOMAIN_EVENT_ID_BLOCK_JOB_2``; the
reason a job failed comes read-only from QEMU's own events.  Each is handed on as the
QMP event or ``query-block-jobs`` entry the hub knows (see :mod:`tui.backend.backend`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from .errors import NotConnected
from .libvirt_conn import command_error, load_libvirt

log = logging.getLogger(__name__)

JOB_TYPES = {1: "stream", 2: "mirror", 3: "commit", 4: "commit", 5: "backup"}


class LibvirtJobs:
    """Mixed into :class:`~tui.backend.libvirt_session.LibvirtSession`, which holds the domain and this state."""

    dom: Any
    name: str
    disks: list[str]
    connected: bool
    _event_callbacks: list[Callable[[Any, dict[str, Any]], None]]
    _job_ids: dict[str, str]  # disk -> chaintui's id of the job running on it
    _job_types: dict[str, str]
    _ready: set[str]
    _errors: dict[str, str]  # QEMU job id -> its error text
    _seen_ids: set[str]
    _last: dict[str, dict[str, Any]]  # disk -> last blockJobInfo
    _scan: asyncio.Task[None] | None

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
            raise command_error(libvirt, "blockJobInfo", exc) from None
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
