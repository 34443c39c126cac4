"""The hub: all sessions, their drives and jobs, and the operations on them.

The hub owns the background work (event handling, progress polling, chain
refreshes) and tells its listeners what changed through small change objects.
The UI subscribes and turns them into Textual messages; nothing here imports
Textual.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .audit import AuditLog
from .backend import Backend, open_backends
from .chain import Drive, JobTarget, NodeInfoCache
from .errors import ChainTuiError, NotConnected, QMPCommandError, ValidationError
from .jobs import ENDED_STATES, Job, JobTracker
from .plan import Plan, Step, make_id, make_node_name
from .session import SessionState
from .state import OwnedJobs

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.2  # query-block-jobs while jobs run: 5 per second
# Another tool (a second monitor, libvirt) can change a chain without any event: the
# structure (x-debug-query-block-graph alone) is compared this often, and the drives are
# re-read in full only when it changed.
WATCH_INTERVAL = 1.0


# -- what listeners hear ---------------------------------------------------
@dataclass
class SessionChanged:
    session: Backend


@dataclass
class DrivesChanged:
    session: str


@dataclass
class JobsChanged:
    jobs: list[Job]
    urgent: bool = True  # a state change (event, command); False for progress polls


@dataclass
class LogEntry:
    text: str
    session: str = ""
    kind: str = "info"  # info, action, event, error, warning
    when: float = field(default_factory=time.time)
    data: Any = None


Change = SessionChanged | DrivesChanged | JobsChanged | LogEntry
Listener = Callable[[Change], None]


class Hub:
    def __init__(
        self,
        poll_interval: float = POLL_INTERVAL,
        audit: AuditLog | None = None,
        watch_interval: float = WATCH_INTERVAL,
        owned: OwnedJobs | None = None,
    ) -> None:
        self.owned = owned  # the jobs chaintui started, kept across restarts
        self.watch_interval = watch_interval  # 0: no structure watch (chaintui chains)
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self.audit = audit
        self.sessions: dict[str, Backend] = {}
        self.drives: dict[str, list[Drive]] = {}
        self.targets: dict[str, list[JobTarget]] = {}
        self.tracker = JobTracker()
        self.log: deque[LogEntry] = deque(maxlen=5000)
        self.poll_interval = poll_interval
        self._listeners: list[Listener] = []
        self._pollers: dict[str, asyncio.Task[None]] = {}
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
        task = self._watchers.get(session)
        if task is None or task.done():
            self._watchers[session] = asyncio.create_task(self._watch_loop(session))

    async def _watch_loop(self, session: str) -> None:
        try:
            while not self._closed:
                # half as often for a big graph (47 ms a look at 1000 images), and while jobs
                # run (their own events and polls already cost; a job's end triggers a refresh)
                slow = self.last_check_ms.get(session, 0.0) > 25 or bool(self.tracker.active_for(session))
                await asyncio.sleep(self.watch_interval * (2 if slow else 1))
                sess = self.sessions.get(session)
                if sess is None or not sess.connected:
                    return
                try:
                    await self.check_structure(session)
                except ChainTuiError:
                    continue  # lost: the next connect starts a new watcher; refused: try again
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
        if self._closed:
            return
        task = self._pollers.get(session)
        if task is not None and not task.done():
            return
        if force or self.tracker.active_for(session):
            self._pollers[session] = asyncio.create_task(self._poll_loop(session))

    async def poll(self, session: str, full: bool = True) -> list[Job]:
        sess = self.sessions[session]
        asked_at = time.monotonic()
        open_jobs = [j for j in self.tracker.for_session(session) if j.outcome is None]
        block_jobs, jobs = await sess.poll_jobs(full, len(open_jobs))
        changed = self.tracker.on_poll(session, block_jobs, jobs, asked_at=asked_at)
        known = None
        if jobs is not None:  # every job QEMU has now
            known = {str(i.get("id")) for i in jobs} | {str(i.get("device") or i.get("id")) for i in block_jobs}
        changed += [j for j in self._apply_owned(session, known) if j not in changed]
        # a job another client started: find which drive it belongs to
        if any(j.drive is None and j.active for j in self.tracker.for_session(session)):
            self.schedule_refresh(session)
        if changed:
            self._emit(JobsChanged(changed, urgent=self.tracker.last_poll_urgent))
        return changed

    async def _poll_loop(self, session: str) -> None:
        first = True
        try:
            while not self._closed:
                sess = self.sessions.get(session)
                if sess is None or not sess.connected:
                    return
                try:
                    await self.poll(session, full=first)
                    first = False
                except NotConnected:
                    return
                except QMPCommandError as exc:
                    self.note(f"query-block-jobs failed: {exc}", session, "error")
                    return
                if not self.tracker.active_for(session):
                    return
                await asyncio.sleep(self.poll_interval)
        except asyncio.CancelledError:
            pass

    # -- lookups ---------------------------------------------------------
    def all_drives(self) -> list[Drive]:
        return [d for name in self.sessions for d in self.drives.get(name, [])]

    def drive(self, session: str, name: str) -> Drive:
        for d in self.drives.get(session, []):
            if d.name == name:
                return d
        raise ValidationError(f"No drive {name!r} on {session}", "drive")

    def planner(self, drive: Drive) -> Any:
        """Who builds plans for this drive (its backend's :class:`~tui.backend.backend.Planner`)."""
        sess = self.sessions.get(drive.session)
        if sess is None:
            raise NotConnected(f"No QEMU named {drive.session!r}")
        return sess.planner

    def taken_ids(self, session: str) -> set[str]:
        return {j.id for j in self.tracker.for_session(session)}

    def taken_node_names(self, session: str) -> set[str]:
        names = {img.node_name for d in self.drives.get(session, []) for img in d.images}
        names |= {t.node_name for t in self.targets.get(session, [])}
        return names

    def files_in_use(self, except_drive: Drive | None = None) -> dict[str, str]:
        """Real paths of every image every open drive uses (but ``except_drive``'s), and by whom."""
        out: dict[str, str] = {}
        for d in self.all_drives():
            if except_drive is not None and d.key == except_drive.key:
                continue
            for img in d.images:
                if not img.filename.startswith("json:"):
                    out[os.path.realpath(img.filename)] = f"{d.name} on {d.session} ({img.label})"
        return out

    def new_job_id(self, kind: str, drive: Drive) -> str:
        return make_id(kind, drive.name, self.taken_ids(drive.session))

    def new_node_name(self, target: str, drive: Drive) -> str:
        return make_node_name(target, self.taken_node_names(drive.session))

    # -- running ---------------------------------------------------------
    async def execute(
        self,
        session: str,
        command: str,
        arguments: dict[str, Any] | None = None,
        drive: str | None = None,
        job: str | None = None,
    ) -> Any:
        """Send one command as an operator action: logged, audited, errors too.

        ``drive`` and ``job`` say what the action is about, for the log and the audit trail.
        """
        sess = self.sessions.get(session)
        if sess is None:
            raise NotConnected(f"No QEMU named {session!r}")
        sent: dict[str, Any] = {"command": command, "arguments": arguments, "job": job}
        self.note(f"→ {command} {_args_text(arguments)}", session, "action", data=sent)

        def audit(error: tuple[str, str] | None = None) -> None:
            if self.audit is not None:
                self.audit.record(sess.address_text, session, command, arguments, drive=drive, job=job, error=error)

        try:
            result = await sess.execute(command, arguments)
        except QMPCommandError as exc:
            sent["error"] = {"class": exc.error_class, "desc": exc.desc}  # QEMU's answer, for the traffic view
            self.note(f"✗ {command}: {exc.desc}", session, "error", data={"class": exc.error_class})
            audit((exc.error_class, exc.desc))
            raise
        except NotConnected as exc:
            sent["error"] = {"class": "NotConnected", "desc": str(exc)}
            self.note(f"✗ {command}: {exc}", session, "error")
            audit(("NotConnected", str(exc)))
            raise
        sent["return"] = result
        audit()
        return result

    async def run_plan(self, plan: Plan) -> list[Job]:
        """Send a plan's commands in order; returns the jobs it started."""
        started: list[Job] = []
        for job_id in plan.job_ids:
            old = self.tracker.get(plan.session, job_id)
            if old is not None and not old.finished:
                raise ValidationError(
                    f"Job ID '{job_id}' is already in use by a {old.type} job on {old.drive or '?'}", "job"
                )
        self.note(plan.title, plan.session, "action")
        if plan.override:  # the operator overrode the shared-image refusal: say so first
            self.note(f"commit anyway: {len(plan.override)} images will see changed data", plan.session, "warning")
            if self.audit is not None:
                sess = self.sessions[plan.session]
                self.audit.record(sess.address_text, plan.session, "override-shared-image-refusal",
                                  {"plan": plan.title, "images": plan.override}, drive=plan.drive, job=next(iter(plan.job_ids), None))
        for i, step in enumerate(plan.steps):
            if step.starts_job:
                self.tracker.remove(plan.session, step.starts_job)  # a finished namesake
                job = self.tracker.ensure(plan.session, step.starts_job)
                job.started_by_us = True
                job.drive = plan.drive
                job.target = plan.target if plan.kind in ("mirror", "copy") else None
                job.type = step.job_type or job.type
                # a mirror target chaintui created (not a reused file): offered for deletion if cancelled early
                job.created_target = step.creates_target and plan.kind == "mirror"
                job.speed = step.speed
                job.active_commit = step.job_type == "commit" and step.ends_ready
                job.launching = True
            try:
                await self.execute(plan.session, step.command, step.arguments, drive=plan.drive, job=step.starts_job)
            except ChainTuiError as exc:
                if step.done_already and isinstance(exc, QMPCommandError) and step.done_already[0] in exc.desc:
                    self.note(step.done_already[1], plan.session)
                    continue
                if step.starts_job:
                    # QEMU refused the job (or created it and failed it at once): a failed card says why
                    reason = exc.desc if isinstance(exc, QMPCommandError) else str(exc)
                    job = self.tracker.get(plan.session, step.starts_job)
                    if f"'{step.starts_job}'" in reason and "in use" in reason:
                        # the id belongs to a job of another client: that job is not ours to mark
                        if job is not None and job.launching:
                            self.tracker.remove(plan.session, step.starts_job)
                    elif job is not None and job.finished:
                        # QEMU created the job and failed it at once (events came first)
                        job.launching = False
                        if job.result != "failed":
                            job.outcome = job.result = None
                            self.tracker.fail_start(plan.session, step.starts_job, reason)
                    else:
                        self.tracker.fail_start(plan.session, step.starts_job, f"QEMU refused to start it: {reason}")
                    if self.tracker.get(plan.session, step.starts_job) is not None:
                        self._emit(JobsChanged([self.tracker.ensure(plan.session, step.starts_job)]))
                if i > 0:
                    self.note(
                        f"step {i + 1} of {len(plan.steps)} failed; steps before it took effect",
                        plan.session,
                        "error",
                    )
                    self.schedule_refresh(plan.session)
                raise
            if step.starts_job:
                job = self.tracker.ensure(plan.session, step.starts_job)
                job.launching = False
                job.started_at = time.monotonic()
                if self.owned is not None:
                    self.owned.add(self.sessions[plan.session].address_text, plan.session, job.id, drive=job.drive,
                                   operation=plan.kind, target=job.target, active_commit=job.active_commit)
                started.append(job)
                self._emit(JobsChanged([job]))
            if step.changes_chain and i + 1 < len(plan.steps):
                await self.refresh(plan.session)
        self.schedule_refresh(plan.session)
        self._ensure_poller(plan.session, force=True)
        return started

    # -- job control -----------------------------------------------------
    def _job(self, session: str, job_id: str) -> Job:
        job = self.tracker.get(session, job_id)
        if job is None:
            raise ValidationError(f"No job {job_id!r} on {session}", "job")
        return job

    def _live_job(self, session: str, job_id: str, hint: str = "") -> Job:
        """A job that has not ended yet and whose QEMU is there (else a ValidationError saying why not)."""
        job = self._job(session, job_id)
        if job.finished:
            raise ValidationError(f"Job {job_id} has already ended ({job.outcome}){hint}", "job")
        why = self.unreachable(job)
        if why:
            raise ValidationError(why, "job")
        return job

    async def _job_step(self, job: Job, step: Step) -> Any:
        """Send a job command the backend built; an error it explains becomes a ValidationError."""
        try:
            return await self.execute(job.session, step.command, step.arguments, drive=job.drive, job=job.id)
        except QMPCommandError as exc:
            if exc.error_class in step.explain:
                raise ValidationError(step.explain[exc.error_class], "job") from None
            raise

    def _control(self, session: str) -> Any:
        sess = self.sessions.get(session)
        if sess is None:
            raise NotConnected(f"No QEMU named {session!r}")
        return sess.control

    def unreachable(self, job: Job) -> str:
        """Why no command can reach a job's QEMU now ('' when one can)."""
        sess = self.sessions.get(job.session)
        if sess is None:
            return f"{job.session} is no longer watched: nothing can reach {job.id}"
        if not sess.connected or job.lost:
            tries = self.retries.get(job.session, 0)
            again = f", retried {tries} time{'s' if tries != 1 else ''}" if tries else ""
            return (
                f"{job.id} is lost: the connection to {job.session} is gone ({sess.last_error or sess.state.value}"
                f"{again}); nothing can reach the job until QEMU answers again"
            )
        return ""

    async def cancel(self, session: str, job_id: str, force: bool = False) -> None:
        job = self._live_job(session, job_id, "; nothing to cancel")
        step = self._control(session).cancel(job, force)
        job.cancel_requested = True
        try:
            await self._job_step(job, step)
        except ChainTuiError:
            job.cancel_requested = False
            raise
        self._ensure_poller(session, force=True)

    async def complete(self, session: str, job_id: str) -> None:
        job = self._live_job(session, job_id)
        if not job.ready:
            raise ValidationError(
                f"Job {job_id} is not ready yet ({job.status}, {job.progress:.0%}): "
                "finish is possible once source and target are in sync",
                "job",
            )
        step = self._control(session).complete(job)
        job.complete_requested = True
        await self._job_step(job, step)
        self._ensure_poller(session, force=True)

    async def pause(self, session: str, job_id: str) -> None:
        job = self._live_job(session, job_id)
        job.user_paused = True  # before the command: its "paused" event is the operator's, not QEMU's own
        try:
            await self._job_step(job, self._control(session).pause(job))
        except ChainTuiError:
            job.user_paused = False
            raise
        job._touch()
        self._emit(JobsChanged([job]))

    async def resume(self, session: str, job_id: str) -> None:
        job = self._live_job(session, job_id)
        await self._job_step(job, self._control(session).resume(job))
        job.user_paused = False
        job._touch()
        self._emit(JobsChanged([job]))
        self._ensure_poller(session, force=True)

    async def toggle_pause(self, session: str, job_id: str) -> bool:
        """Pause a running job or resume a paused one; True when now paused."""
        job = self._job(session, job_id)
        if job.user_paused or (job.paused and job.io_status != "ok"):
            await self.resume(session, job_id)
            return False
        await self.pause(session, job_id)
        return True

    async def set_speed(self, session: str, job_id: str, speed: int) -> None:
        job = self._live_job(session, job_id)
        if speed < 0:
            raise ValidationError("Speed limit must not be negative", "speed")
        await self._job_step(job, self._control(session).set_speed(job, int(speed)))
        job.speed = int(speed)
        job._touch()
        self._emit(JobsChanged([job]))

    async def write_blocking(self, session: str, job_id: str) -> None:
        """Switch a mirror to copy-mode write-blocking (QEMU 8.2+: block-job-change)."""
        job = self._live_job(session, job_id)
        await self._job_step(job, self._control(session).write_blocking(job))
        self.note(f"job {job_id}: copy mode write-blocking (guest writes now wait for the target)", session)

    async def dismiss(self, session: str, job_id: str) -> None:
        """Forget a finished job (and dismiss it in QEMU if it still lingers there)."""
        job = self._job(session, job_id)
        if not job.finished and job.status not in ENDED_STATES:
            raise ValidationError(f"Job {job_id} is still {job.status}: cancel it first", "job")
        step = self._control(session).dismiss(job)
        sess = self.sessions.get(session)
        if step is not None and sess is not None and sess.connected:
            try:
                await self._job_step(job, step)
            except QMPCommandError:
                pass
        self.tracker.remove(session, job_id)
        self._emit(JobsChanged([job]))

    def incomplete_target(self, job: Job) -> str | None:
        """The target file a mirror left behind when it was cancelled before it was in sync, if chaintui made it."""
        if job.type != "mirror" or job.result != "cancelled" or job.ready or not job.created_target:
            return None
        if not job.target or not os.path.isfile(job.target):
            return None
        return job.target

    async def delete_incomplete_target(self, session: str, job_id: str) -> str:
        """Delete what :meth:`incomplete_target` names, once no open drive or job uses it; then dismiss the job."""
        job = self._job(session, job_id)
        path = self.incomplete_target(job)
        if path is None:
            raise ValidationError(f"{job.id} left no incomplete target to delete", "job")
        if job.session in self.sessions and self.sessions[job.session].connected:
            await self.refresh(job.session)
        real = os.path.realpath(path)
        users = self.files_in_use()
        if real in users or any(os.path.realpath(t.filename) == real for ts in self.targets.values() for t in ts):
            raise ValidationError(f"{path} is still open ({users.get(real, 'a job target')}): not deleted", "target")
        await asyncio.to_thread(os.unlink, path)
        self.note(f"deleted the incomplete target {path} of the cancelled {job.id}", job.session, "action")
        await self.dismiss(session, job_id)
        return path

    async def dismiss_finished(self) -> list[Job]:
        """Dismiss every job that completed (QEMU's job-dismiss for those it still keeps).

        Failed, cancelled and lost jobs stay: each is dismissed on its own, once read.
        """
        done = [j for j in self.tracker.ordered() if j.finished and j.succeeded]
        for job in done:
            await self.dismiss(job.session, job.id)
        return done

    # -- waiting (tests, CLI) --------------------------------------------
    async def wait_job(
        self, session: str, job_id: str, until: Callable[[Job], bool], timeout: float = 30.0
    ) -> Job:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            job = self.tracker.get(session, job_id)
            if job is not None and until(job):
                return job
            if loop.time() > deadline:
                state = job.state_text if job else "unknown"
                raise TimeoutError(f"job {job_id} did not reach the expected state (now {state})")
            await asyncio.sleep(0.02)

    async def settle(self, session: str) -> None:
        """Wait until pending refreshes of a session are done."""
        for _ in range(500):
            task = self._refreshers.get(session)
            if (task is None or task.done()) and session not in self._refresh_dirty:
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self._closed = True
        for handle in self._held_pauses.values():
            handle.cancel()
        self._held_pauses.clear()
        tasks = [*self._pollers.values(), *self._refreshers.values(), *self._watchers.values(), *self._checks.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except BaseException:  # noqa: BLE001
                pass
        for sess in list(self.sessions.values()):
            await sess.close()


def _args_text(arguments: dict[str, Any] | None) -> str:
    if not arguments:
        return ""
    import json

    return json.dumps(arguments, ensure_ascii=False)


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
