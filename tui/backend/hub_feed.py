"""What QEMU says about jobs, taken in: its events and the shared progress poll.

:class:`JobFeed` is the part of :class:`~tui.backend.hub.Hub` that feeds the
:class:`~tui.backend.job_tracker.JobTracker` and tells the listeners which jobs changed:
events as they come (QEMU 10's transient pauses around graph changes folded away) and
one poll tick for all sessions with active jobs (5 a second, one change for the UI a tick).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .changes import JobsChanged, LogEntry
from .errors import NotConnected, QMPCommandError
from .job_tracker import JobTracker
from .jobs import Job

if TYPE_CHECKING:
    from .backend import Backend


class JobFeed:
    """Mixed into :class:`~tui.backend.hub.Hub`, which provides the state."""

    sessions: dict[str, Backend]
    tracker: JobTracker
    poll_interval: float
    _closed: bool
    _ticker: asyncio.Task[None] | None
    _polling: set[str]
    _poll_full: set[str]
    _tick: int
    _held_pauses: dict[tuple[str, str], asyncio.TimerHandle]
    folded_pauses: dict[tuple[str, str], int]
    _ready_logged: set[tuple[str, str]]

    if TYPE_CHECKING:  # the Hub's own

        def note(self, text: str, session: str = "", kind: str = "info", data: Any = None) -> None: ...

        def _emit(self, change: Any) -> None: ...

        def schedule_refresh(self, session: str) -> None: ...

        def schedule_check(self, session: str) -> None: ...

        def _apply_owned(self, session: str, known: set[str] | None = None) -> list[Job]: ...

    # -- events ----------------------------------------------------------
    def _on_event(self, session: Backend, event: dict[str, Any]) -> None:
        name = event.get("event", "")
        data = event.get("data") or {}
        if name.startswith("BLOCK_JOB") or name == "JOB_STATUS_CHANGE":
            entry = LogEntry(_describe_event(name, data), session.name, "event", data=event)
            if not self._fold_transient_pause(session.name, name, data, entry):
                entry.quiet = self._told_ready(session.name, name, data)
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

    def _told_ready(self, session: str, name: str, data: dict[str, Any]) -> bool:
        """QEMU says "ready" twice: JOB_STATUS_CHANGE, then BLOCK_JOB_READY.  True for the second
        (kept for the job's traffic, not shown in the log again); a job ready again after standby
        has only the first."""
        if name == "JOB_STATUS_CHANGE":
            key = (session, str(data.get("id")))
            if data.get("status") == "ready":
                self._ready_logged.add(key)
            else:
                self._ready_logged.discard(key)
            return False
        if name == "BLOCK_JOB_READY":
            key = (session, str(data.get("device") or data.get("id")))
            if key in self._ready_logged:
                self._ready_logged.discard(key)
                return True
        return False

    def _release_pause(self, key: tuple[str, str], entry: LogEntry) -> None:
        """A pause that lasted: log it after all."""
        if self._held_pauses.pop(key, None) is not None:
            self._emit(entry)



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
        polled = self.tracker.on_poll(session, block_jobs, jobs, asked_at=asked_at)
        changed = polled.changed
        known = None
        if jobs is not None:  # every job QEMU has now
            known = {str(i.get("id")) for i in jobs} | {str(i.get("device") or i.get("id")) for i in block_jobs}
        changed += [j for j in self._apply_owned(session, known) if j not in changed]
        urgent = polled.urgent
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
                self._tick += 1
                due = [s for s in list(self._polling)
                       if poll_due(self.tracker.active_for(s), self._tick, s in self._poll_full)]
                results = await asyncio.gather(*(self._poll_session(s) for s in due))
                changed = [j for jobs, _ in results for j in jobs]
                if changed:
                    self._emit(JobsChanged(changed, urgent=any(u for _, u in results)))
                if not self._polling:
                    return
                await asyncio.sleep(max(0.0, self.poll_interval - (loop.time() - t0)))
        except asyncio.CancelledError:
            pass


PAUSED_EVERY = 5  # ticks: a session whose jobs are all paused is polled once a second, not 5 times


def poll_due(active: list[Job], tick: int, full: bool) -> bool:
    """Whether a session is polled on this tick.  Jobs QEMU reports paused do not move, and their
    resuming comes as an event: polled once a second (a speed another client sets still shows)."""
    if full or not active:
        return True
    if all(j.paused and j.status in ("paused", "standby") for j in active):
        return tick % PAUSED_EVERY == 0
    return True


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
