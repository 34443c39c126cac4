"""The hub: all sessions, their drives and jobs, and the operations on them.

The hub owns the background work and tells its listeners what changed through
small change objects. The UI subscribes and turns them into Textual messages;
nothing here imports Textual.  Its parts, one module each:

- :mod:`tui.backend.hub` (here): sessions, listeners, jobs chaintui owns across restarts;
- :mod:`tui.backend.hub_feed`: QMP events and the shared progress poll → the job tracker;
- :mod:`tui.backend.hub_watch`: re-reading drives, and the shared structure watch;
- :mod:`tui.backend.hub_commands`: what the operator does (plans, job commands).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import replace
from collections.abc import Awaitable, Callable
from typing import Any

from .audit import AuditLog
from .backend import Backend, open_backends, watch_address
from .changes import Change, DrivesChanged, JobsChanged, Listener, LogEntry, SessionChanged
from .chain import Drive, JobTarget, NodeInfoCache
from .errors import ChainTuiError, ConnectFailed, NoMembers
from .hub_commands import HubCommands
from .hub_feed import JobFeed
from .hub_watch import StructureWatch
from .job_tracker import JobTracker
from .jobs import Job
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


class Hub(HubCommands, JobFeed, StructureWatch):
    """Every backend the operator watches, their drives and jobs (see the module text).

    Its parts are mixed in from the modules the module text lists.
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
        self._tick = 0  # poll ticks so far
        self._refreshers: dict[str, asyncio.Task[None]] = {}
        self._refresh_dirty: set[str] = set()
        self.node_info: dict[str, NodeInfoCache] = {}
        self._checks: dict[str, asyncio.Task[None]] = {}
        self.structure_checks = 0
        self.graph_nodes: dict[str, int] = {}  # nodes of each session's block graph, last look
        self.retries: dict[str, int] = {}  # failed reconnect attempts since the connection was lost
        # QEMU 10 pauses every job around each graph change: such a pause is held back
        # and dropped when the job resumes at once (counted per job, said once)
        self._held_pauses: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.folded_pauses: dict[tuple[str, str], int] = {}
        self._ready_logged: set[tuple[str, str]] = set()  # jobs whose "ready" one of QEMU's two events told
        self._address_watches: list[Callable[[], Awaitable[None]]] = []  # groups that can grow
        self._appearing: dict[str, asyncio.Task[None]] = {}  # address -> its opening (a reference kept)
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
        found = await self.connect(address, name, reconnect=reconnect)
        if not found:
            raise NoMembers(f"{address}: nothing running to watch yet")
        return found[0]

    async def connect(self, address: str, name: str | None = None, *, reconnect: bool = True) -> list[Backend]:
        """Connect to every backend an address names (a QMP socket, a libvirt URI's domains).

        Of several, one that cannot be opened (a domain that stopped meanwhile) is said and left out;
        members that appear later (a domain started afterwards) are added as they come."""
        try:
            backends = await open_backends(address, name, reconnect=reconnect)
        except NoMembers as exc:
            if not reconnect or self.watch_interval <= 0 or self._closed:
                raise
            # a URI with no domain running yet: each one that starts is shown (as when some ran)
            stop = await watch_address(address, self._appeared)
            if stop is None:
                raise
            self._address_watches.append(stop)
            self.note(f"{exc}: waiting; a domain that starts is shown", "", "warning")
            return []
        started: list[Backend] = []
        for session in backends:
            try:
                started.append(await self._start(session))
            except ChainTuiError as exc:
                if len(backends) == 1:
                    raise
                self.note(f"{session.address_text}: not opened: {exc}", session.name, "warning")
        if not started:
            raise ConnectFailed(f"{address}: none of its {len(backends)} domains could be opened")
        if self.watch_interval > 0 and not self._closed:
            stop = await watch_address(address, self._appeared)
            if stop is not None:
                self._address_watches.append(stop)
        return started

    def _appeared(self, address: str) -> None:
        """A new member of a watched group (a domain that started): watched too, unless it already is
        (a domain chaintui shows that starts again follows by itself)."""
        if self._closed or address in self._appearing or any(
                s.address_text == address for s in self.sessions.values()):
            return

        async def add() -> None:
            try:
                for session in await self.connect(address):
                    self.note(f"{session.address_text} started: shown now", session.name, "action")
            except ChainTuiError as exc:
                self.note(f"{address} started but could not be opened: {exc}", "", "warning")
            finally:
                self._appearing.pop(address, None)

        self._appearing[address] = asyncio.create_task(add(), name=f"appeared {address}")

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
        elif session.state is SessionState.STOPPED:
            self.note(f"{session.last_error}: its jobs ended with it; the chains shown are as it left them, "
                      "and come back when it starts again", session.name, "warning")
            changed = self.tracker.on_stopped(session.name, session.last_error)
            if changed:
                self._emit(JobsChanged(changed))
            # the chains stay as it left them; no job holds them any more
            self.drives[session.name] = [
                replace(d, jobs=[], images=[replace(i, job=None) for i in d.images])
                for d in self.drives.get(session.name, [])]
            self._emit(DrivesChanged(session.name))
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

    async def close(self) -> None:
        self._closed = True
        for handle in self._held_pauses.values():
            handle.cancel()
        self._held_pauses.clear()
        tasks = [t for t in (self._ticker, *self._refreshers.values(), self._watcher, *self._checks.values(),
                             *self._appearing.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001
                pass
        for stop in self._address_watches:
            try:
                await stop()
            except Exception:  # noqa: BLE001 - closing a connection already gone
                pass
        self._address_watches.clear()
        for sess in list(self.sessions.values()):
            await sess.close()
