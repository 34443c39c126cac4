"""Keeping the drives true: re-reading a session's block graph, and watching for changes others make.

:class:`StructureWatch` is the part of :class:`~tui.backend.hub.Hub` that re-reads drives
(several requests collapse into one) and looks at every session's structure together on one
shared watch: another tool (a second monitor, libvirt) can change a chain without any event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from .changes import DrivesChanged, JobsChanged
from .chain import Drive, JobTarget, NodeInfoCache
from .errors import ChainTuiError, NotConnected, QMPCommandError
from .job_tracker import JobTracker
from .jobs import Job

if TYPE_CHECKING:
    from .backend import Backend

log = logging.getLogger(__name__)

BIG_GRAPH = 1000  # nodes (about 500 images): looked at every other round of the watch
OWN_CHANGE = 10.0  # seconds: a chain change this soon after chaintui's own command or job is not "outside"


class StructureWatch:
    """Mixed into :class:`~tui.backend.hub.Hub`, which provides the state."""

    sessions: dict[str, Backend]
    drives: dict[str, list[Drive]]
    targets: dict[str, list[JobTarget]]
    tracker: JobTracker
    node_info: dict[str, NodeInfoCache]
    watch_interval: float
    structure_checks: int
    graph_nodes: dict[str, int]
    _closed: bool
    _watched: set[str]
    _watcher: asyncio.Task[None] | None
    _watch_round: int
    _refreshers: dict[str, asyncio.Task[None]]
    _refresh_dirty: set[str]
    _checks: dict[str, asyncio.Task[None]]
    log: Any

    if TYPE_CHECKING:  # the Hub's own

        def note(self, text: str, session: str = "", kind: str = "info", data: Any = None) -> None: ...

        def _emit(self, change: Any) -> None: ...

    # -- refresh ---------------------------------------------------------
    def schedule_refresh(self, session: str) -> None:
        """Re-read the block graph soon; several requests collapse into one."""
        if self._closed:
            return
        self._refresh_dirty.add(session)
        task = self._refreshers.get(session)
        if task is None or task.done():
            self._refreshers[session] = asyncio.create_task(self._refresh_loop(session))

    async def _refresh_loop(self, session: str) -> None:
        while session in self._refresh_dirty:
            self._refresh_dirty.discard(session)
            try:
                await self.refresh(session)
            except NotConnected:
                return
            except QMPCommandError as exc:
                self.note(f"could not read the block graph: {exc}", session, "error")
                return
            except Exception as exc:  # noqa: BLE001
                log.exception("refresh failed")
                self.note(f"could not read the block graph: {exc}", session, "error")
                return

    async def refresh(self, session: str) -> list[Drive]:
        """Re-read the block graph of one session now."""
        sess = self.sessions[session]
        cache = self.node_info.setdefault(session, NodeInfoCache())
        old = self.drives.get(session, [])
        before = {d.name: [i.node_name for i in d.images] for d in old}
        drives, targets = await sess.read_drives(cache, old)
        self._note_chain_changes(session, old, drives)
        self.drives[session] = drives
        self.targets[session] = targets
        changed: list[Job] = []
        for drive in drives:
            for job_id in drive.jobs:
                job = self.tracker.ensure(session, job_id)
                if job.drive != drive.name:
                    job.drive = drive.name
                    job._touch()
                    changed.append(job)
        # a job too fast to be seen holding nodes (another client's): the one drive whose chain
        # changed meanwhile is its drive; with several, it stays unknown rather than guessed
        orphans = [j for j in self.tracker.for_session(session) if j.drive is None and j.type in ("stream", "commit")]
        if orphans and before:
            moved = [d for d in drives if before.get(d.name) not in (None, [i.node_name for i in d.images])]
            if len(moved) == 1 and len(orphans) == 1:
                orphans[0].drive = moved[0].name
                orphans[0]._touch()
                changed.append(orphans[0])
        for target in targets:
            job = self.tracker.ensure(session, target.job)
            if job.target is None:
                job.target = target.filename
                job._touch()
                changed.append(job)
        self._emit(DrivesChanged(session))
        if changed:
            self._emit(JobsChanged(changed))
        if any(img.partial for d in drives for img in d.images):
            self.schedule_refresh(session)  # a sketch: now the details
        return drives

    def _note_chain_changes(self, session: str, old: list[Drive], new: list[Drive]) -> None:
        """A log line for each drive whose chain (its files) changed, saying so when nothing chaintui
        sent or ran explains it: another client of this QEMU did it."""
        was = {d.name: d for d in old}
        for drive in new:
            before = was.get(drive.name)
            if before is None or any(i.partial for i in (*before.images, *drive.images)):
                continue  # new, or a sketch whose names come later: no change to tell
            then, now = [i.label for i in before.images], [i.label for i in drive.images]
            if then == now:
                continue
            text = f"{drive.name}: chain now {' → '.join(now)} (was {' → '.join(then)})"
            if not self._own_change(session, drive.name):
                text += ": changed outside chaintui"
            self.note(text, session, "event")

    def _own_change(self, session: str, drive: str) -> bool:
        """Whether chaintui sent a command about this drive (or about no drive in particular) to this
        QEMU, or one of its jobs on this drive ran there, in the last OWN_CHANGE seconds (a change of
        the drive's chain then may be its own).  A job on another drive of the same QEMU does not
        explain it: another client's snapshot of disk1 while chaintui streams disk0 is "outside"."""
        wall = time.time()
        for entry in reversed(self.log):
            if wall - entry.when > OWN_CHANGE:
                break
            if (entry.session == session and entry.kind == "action" and isinstance(entry.data, dict)
                    and entry.data.get("drive") in (None, drive)):
                return True  # a command sent (Hub.execute records what it sent, and about which drive)
        mono = time.monotonic()
        return any(
            job.started_by_us and job.drive in (None, drive)
            and (not job.finished or mono - (job.ended_at or mono) <= OWN_CHANGE)
            for job in self.tracker.for_session(session)
        )

    # -- watching for changes made by others -----------------------------
    def _ensure_watcher(self, session: str) -> None:
        if self._closed or self.watch_interval <= 0:
            return
        self._watched.add(session)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_loop(), name="structure-watch")

    async def _watch_loop(self) -> None:
        """Every session's structure looked at together: one wake-up per interval for all QEMUs."""
        try:
            while not self._closed and self._watched:
                await asyncio.sleep(self.watch_interval)
                self._watch_round += 1
                due = []
                for session in list(self._watched):
                    sess = self.sessions.get(session)
                    if sess is None or not sess.connected:
                        self._watched.discard(session)  # the next connect watches it again
                        continue
                    # every other round for a big graph (47 ms a look at 1000 images), and while jobs
                    # run (their own events and polls already cost; a job's end triggers a refresh).
                    # Big by its size, not by a time measured on a busy machine.
                    slow = self.graph_nodes.get(session, 0) > BIG_GRAPH or bool(self.tracker.active_for(session))
                    if not slow or self._watch_round % 2 == 0:
                        due.append(session)
                if due:
                    await asyncio.gather(*(self._check_quietly(s) for s in due))
        except asyncio.CancelledError:
            pass

    def schedule_check(self, session: str) -> None:
        if self._closed or session not in self.sessions:
            return
        task = self._checks.get(session)
        if task is None or task.done():
            self._checks[session] = asyncio.create_task(self._check_quietly(session))

    async def _check_quietly(self, session: str) -> None:
        try:
            await self.check_structure(session)
        except ChainTuiError:
            pass

    async def check_structure(self, session: str) -> bool:
        """Compare the block graph's structure with the one the drives were built from;
        re-read the drives when it changed (True).  One cheap query when nothing changed."""
        task = self._refreshers.get(session)
        if session in self._refresh_dirty or (task is not None and not task.done()):
            return False  # a refresh is on its way anyway
        sess = self.sessions.get(session)
        cache = self.node_info.get(session)
        if sess is None or cache is None or cache.signature is None:
            return False
        signature = await sess.read_structure()
        self.structure_checks += 1
        if signature is not None:
            self.graph_nodes[session] = len(signature[0])
        if signature is None or signature == cache.signature:
            return False
        self.schedule_refresh(session)
        return True

    async def refresh_all(self) -> None:
        for name, sess in list(self.sessions.items()):
            if sess.connected:
                try:
                    await self.refresh(name)
                except ChainTuiError:
                    pass
