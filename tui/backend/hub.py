"""The hub: all sessions, their drives and jobs, and the operations on them.

The hub owns the background work (event handling, progress polling, chain
refreshes) and tells its listeners what changed through small change objects.
The UI subscribes and turns them into Textual messages; nothing here imports
Textual.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from .audit import AuditLog
from .backend import Backend, open_backends
from .changes import Change, DrivesChanged, JobsChanged, Listener, LogEntry, SessionChanged
from .chain import Drive, JobTarget, NodeInfoCache
from .errors import ChainTuiError, NotConnected, QMPCommandError
from .hub_commands import HubCommands
from .jobs import Job, JobTracker
from .session import SessionState
from .state import OwnedJobs

__all__ = ["Change", "DrivesChanged", "Hub", "JobsChanged", "Listener", "LogEntry", "SessionChanged"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # query-block-jobs while jobs run: 5 per second
# Another tool (a second monitor, libvirt) can change a chain without any event: the
# structure (x-debug-query-block-graph alone) is compared this often, and the drives are
# re-read in full only when it changed.  One shared watch for all sessions; a change shows
# within 2 s (one interval, the look and the re-read).
WATCH_INTERVAL = 1.6


class Hub(HubCommands):
    """Every backend the operator watches, their drives and jobs (see the module text).

    What the operator does (plans, job commands) is in :class:`~tui.backend.hub_commands.HubCommands`.
    """

    def __init__(
        self,
        poll_interval: float = POLL_INTERVAL,
        audit: AuditLog | None = None,
        watch_interval: float = WATCH_INTERVAL,
        owned: OwnedJobs | None = None,
    ) -> None:
        self.owned = owned  # the jobs chaintui started, kept across restarts
        self.watch_interval = watch_interval  # 0: no structure watch (chaintui chains)
        self._watched: set[str] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._watch_round = 0
        self.audit = audit
        self.sessions: dict[str, Backend] = {}
        self.drives: dict[str, list[Drive]] = {}
        self.targets: dict[str, list[JobTarget]] = {}
        self.tracker = JobTracker()
        self.log: deque[LogEntry] = deque(maxlen=5000)
        self.poll_interval = poll_interval
        self._listeners: list[Listener] = []
        self._ticker: asyncio.Task[None] | None = None
        self._polling: set[str] = set()  # sessions polled on the shared tick
        self._poll_full: set[str] = set()  # ... whose next poll also asks query-jobs
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._refresh_dirty: set[str] = set()
        self.node_info: dict[str, NodeInfoCache] = {}
        self._checks: dict[str, asyncio.Task[None]] = {}
        self.structure_checks = 0
        self.last_check_ms: dict[str, float] = {}
        self.retries: dict[str, int] = {}  # failed reconnect attempts since the connection was lost
        # QEMU 10 pauses every job around each graph change: such a pause is held back
        # and dropped when the job resumes at once (counted per job, said once)
        self._held_pauses: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.folded_pauses: dict[tuple[str, str], int] = {}
        self._closed = False

    # -- listeners -------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _emit(self, change: Change) -> None:
        if isinstance(change, LogEntry):
            self.log.append(change)
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # noqa: BLE001 - a listener must not break the hub
                log.exception("listener failed")

    def note(self, text: str, session: str = "", kind: str = "info", data: Any = None) -> None:
        self._emit(LogEntry(text, session, kind, data=data))

    # -- sessions --------------------------------------------------------
    async def add(self, address: str, name: str | None = None, *, reconnect: bool = True) -> Backend:
        """Connect to a QEMU; returns after the first attempt (see QemuSession.start).

        An address that names several groups (a libvirt URI: one per domain) returns the first;
        :meth:`connect` returns them all."""
        return (await self.connect(address, name, reconnect=reconnect))[0]

    async def connect(self, address: str, name: str | None = None, *, reconnect: bool = True) -> list[Backend]:
        """Connect to every backend an address names (a QMP socket, a libvirt URI's domains)."""
        started = []
        for session in await open_backends(address, name, reconnect=reconnect):
            started.append(await self._start(session))
        return started

    async def _start(self, session: Backend) -> Backend:
        base, n = session.name, 2
        while session.name in self.sessions:
            session.name = f"{base}#{n}"
            n += 1
        self.sessions[session.name] = session
        self.drives.setdefault(session.name, [])
        session.subscribe_events(self._on_event)
        session.subscribe_state(self._on_state)
        warning = session.warning
        if warning:
            self.note(warning, session.name, "warning")
        try:
            await session.start()
        except ChainTuiError:
            del self.sessions[session.name]
            self.drives.pop(session.name, None)
            await session.close()
            raise
        return session

    async def remove(self, name: str) -> None:
        """Stop watching a QEMU (it keeps running, and so do its jobs); forget its drives and jobs."""
        session = self.sessions.pop(name, None)
        if session is not None:
            await session.close()
        self.drives.pop(name, None)
        self.targets.pop(name, None)
        self.retries.pop(name, None)
        gone = [self.tracker.remove(name, j.id) for j in self.tracker.for_session(name)]
        self._emit(DrivesChanged(name))
        if gone:
            self._emit(JobsChanged([j for j in gone if j is not None]))
        if session is not None:
            self._emit(SessionChanged(session))

    async def add_at_run_time(self, address: str) -> Backend:
        """Add a QEMU the operator typed in: a first attempt that fails says why (nothing stays behind);
        once connected it reconnects like the others."""
        session = await self.add(address, reconnect=False)
        session.reconnect = True
        self.note(f"added {session.address_text} as {session.name}", session.name, "action")
        return session

    def _on_state(self, session: Backend) -> None:
        if session.name not in self.sessions:
            return
        if session.state is SessionState.CONNECTED:
            self.retries.pop(session.name, None)
            self.node_info.pop(session.name, None)  # maybe another QEMU now
            what = "reconnected" if session.generation > 1 else "connected"
            self.note(f"{what} to {session.address_text}", session.name)
            self.schedule_refresh(session.name)
            self._ensure_poller(session.name, force=True)
            self._ensure_watcher(session.name)
        elif session.state is SessionState.LOST:
            # said once; every further attempt only counts up (the drives panel shows the count)
            n = self.retries.get(session.name)
            self.retries[session.name] = 0 if n is None else n + 1
            if n is None:
                self.note(f"connection lost: {session.last_error}; retrying", session.name, "error")
            changed = self.tracker.on_lost(session.name)
            if changed:
                self._emit(JobsChanged(changed))
        self._emit(SessionChanged(session))

    def _on_event(self, session: Backend, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data = event.get("data") or {}
        if name.startswith("BLOCK_JOB") or name == "JOB_STATUS_CHANGE":
            entry = LogEntry(_describe_event(name, data), session.name, "event", data=event)
            if not self._fold_transient_pause(session.name, name, data, entry):
                self._emit(entry)
            changed = self.tracker.on_event(session.name, event)
            changed += [j for j in self._apply_owned(session.name) if j not in changed]
            if changed:
                self._emit(JobsChanged(changed))
            status = data.get("status")
            if name in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED", "BLOCK_JOB_READY") or status in (
                "created",
                "concluded",
                "null",
            ):
                self.schedule_refresh(session.name)
            else:
                self.schedule_check(session.name)
            if name == "BLOCK_JOB_ERROR":
                self._emit(
                    LogEntry(
                        f"job {data.get('device')}: I/O error during {data.get('operation')}, "
                        f"action {data.get('action')}",
                        session.name,
                        "error",
                        data=data,
                    )
                )
            self._ensure_poller(session.name)
        elif name not in ("RTC_CHANGE",):
            self._emit(LogEntry(name, session.name, "event", data=event))
            self.schedule_check(session.name)  # any event may come with a graph change

    TRANSIENT_PAUSE = 1.0  # seconds: a pause QEMU undoes within this is part of a graph change

    def _fold_transient_pause(self, session: str, name: str, data: dict[str, Any], entry: LogEntry) -> bool:
        """True when the event is held back or dropped (QEMU's own paused/running, standby/ready pair)."""
        if name != "JOB_STATUS_CHANGE":
            return False
        key = (session, str(data.get("id")))
        status = data.get("status")
        job = self.tracker.get(*key)
        if status in ("paused", "standby") and not (job is not None and job.user_paused):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return False
            old = self._held_pauses.pop(key, None)
            if old is not None:
                old.cancel()
            self._held_pauses[key] = loop.call_later(self.TRANSIENT_PAUSE, self._release_pause, key, entry)
            return True
        if status in ("running", "ready") and key in self._held_pauses:
            self._held_pauses.pop(key).cancel()
            n = self.folded_pauses.get(key, 0) + 1
            self.folded_pauses[key] = n
            if n == 1:
                self._emit(LogEntry(
                    f"job {key[1]}: QEMU paused and resumed it around a graph change (not an operator's pause; "
                    "further ones are not logged)", session, "event", data=entry.data,
                ))
            return True
        return False

    def _release_pause(self, key: tuple[str, str], entry: LogEntry) -> None:
        """A pause that lasted: log it after all."""
        if self._held_pauses.pop(key, None) is not None:
            self._emit(entry)

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
        before = {d.name: [i.node_name for i in d.images] for d in self.drives.get(session, [])}
        drives, targets = await sess.read_drives(cache)
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

    def _apply_owned(self, session: str, known: set[str] | None = None) -> list[Job]:
        """Jobs this chaintui (or an earlier run of it) started are its own again after a restart;
        ended jobs, and jobs QEMU no longer has (``known``: the ids it has now), are forgotten."""
        if self.owned is None or session not in self.sessions:
            return []
        address = self.sessions[session].address_text
        changed = []
        for entry in self.owned.for_address(address):
            job = self.tracker.get(session, entry["job"])
            if job is None:
                if known is not None and entry["job"] not in known:
                    self.owned.forget(address, entry["job"])  # gone from QEMU while chaintui was away
                continue
            if job.finished:
                self.owned.forget(address, job.id)
                continue
            if not job.started_by_us or (job.target is None and entry.get("target")) or job.drive is None:
                job.started_by_us = True
                job.target = job.target or entry.get("target")
                job.drive = job.drive or entry.get("drive")
                job.active_commit = job.active_commit or bool(entry.get("active_commit"))
                job._touch()
                changed.append(job)
        return changed

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
                    # run (their own events and polls already cost; a job's end triggers a refresh)
                    slow = self.last_check_ms.get(session, 0.0) > 25 or bool(self.tracker.active_for(session))
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
        started = time.perf_counter()
        signature = await sess.read_structure()
        self.structure_checks += 1
        self.last_check_ms[session] = (time.perf_counter() - started) * 1000
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

    # -- polling ---------------------------------------------------------
    def _ensure_poller(self, session: str, force: bool = False) -> None:
        """Have ``session`` polled on the shared tick (``force``: once even without active jobs)."""
        if self._closed:
            return
        if force:
            self._poll_full.add(session)
        elif not self.tracker.active_for(session):
            return
        self._polling.add(session)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick_loop(), name="poll-tick")

    async def poll(self, session: str, full: bool = True) -> list[Job]:
        changed, urgent = await self._poll(session, full)
        if changed:
            self._emit(JobsChanged(changed, urgent=urgent))
        return changed

    async def _poll(self, session: str, full: bool) -> tuple[list[Job], bool]:
        sess = self.sessions[session]
        asked_at = time.monotonic()
        open_jobs = [j for j in self.tracker.for_session(session) if j.outcome is None]
        block_jobs, jobs = await sess.poll_jobs(full, len(open_jobs))
        changed = self.tracker.on_poll(session, block_jobs, jobs, asked_at=asked_at)
        known = None
        if jobs is not None:  # every job QEMU has now
            known = {str(i.get("id")) for i in jobs} | {str(i.get("device") or i.get("id")) for i in block_jobs}
        changed += [j for j in self._apply_owned(session, known) if j not in changed]
        urgent = self.tracker.last_poll_urgent
        # a job another client started: find which drive it belongs to
        if any(j.drive is None and j.active for j in self.tracker.for_session(session)):
            self.schedule_refresh(session)
        return changed, urgent

    async def _poll_session(self, session: str) -> tuple[list[Job], bool]:
        """One session's share of a tick; drops it from the tick when it has nothing to watch."""
        sess = self.sessions.get(session)
        if sess is None or not sess.connected:
            self._polling.discard(session)
            return [], False
        full = session in self._poll_full
        self._poll_full.discard(session)
        try:
            result = await self._poll(session, full)
        except NotConnected:
            self._polling.discard(session)
            return [], False
        except QMPCommandError as exc:
            self.note(f"query-block-jobs failed: {exc}", session, "error")
            self._polling.discard(session)
            return [], False
        if not self.tracker.active_for(session) and session not in self._poll_full:
            self._polling.discard(session)
        return result

    async def _tick_loop(self) -> None:
        """All sessions polled together, one change for the UI per tick (5 a second)."""
        loop = asyncio.get_running_loop()
        try:
            while not self._closed and self._polling:
                t0 = loop.time()
                results = await asyncio.gather(*(self._poll_session(s) for s in list(self._polling)))
                changed = [j for jobs, _ in results for j in jobs]
                if changed:
                    self._emit(JobsChanged(changed, urgent=any(u for _, u in results)))
                if not self._polling:
                    return
                await asyncio.sleep(max(0.0, self.poll_interval - (loop.time() - t0)))
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        self._closed = True
        for handle in self._held_pauses.values():
            handle.cancel()
        self._held_pauses.clear()
        tasks = [t for t in (self._ticker, *self._refreshers.values(), self._watcher, *self._checks.values())
                 if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001
                pass
        for sess in list(self.sessions.values()):
            await sess.close()


def _describe_event(name: str, data: dict[str, Any]) -> str:
    if name == "JOB_STATUS_CHANGE":
        return f"job {data.get('id')}: {data.get('status')}"
    job = data.get("device") or data.get("id")
    kind = name.removeprefix("BLOCK_JOB_").lower()
    extra = ""
    if name == "BLOCK_JOB_ERROR":
        extra = f" ({data.get('operation')}, {data.get('action')})"
    elif data.get("error"):
        extra = f": {data['error']}"
    return f"job {job}: {kind}{extra}"
