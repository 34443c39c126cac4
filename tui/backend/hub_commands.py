"""What the operator does through the hub: run plans, command jobs, and the lookups they need.

:class:`HubCommands` is the half of :class:`~tui.backend.hub.Hub` that sends: every command
goes through :meth:`HubCommands.execute` (logged and audited).  It sends the
steps a backend built (:mod:`tui.backend.ops`, :mod:`tui.backend.qmp_control`,
:mod:`tui.backend.libvirt_plans`) and reads only what is written on them.  The job
commands (cancel, finish, pause, ...) are in :class:`~tui.backend.hub_job_control.JobControl`.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .changes import JobsChanged
from .chain import Drive, JobTarget
from .errors import ChainTuiError, NotConnected, QMPCommandError, ValidationError
from .fmt import count
from .hub_job_control import JobControl
from .job_tracker import JobTracker
from .jobs import Job
from .plan import Plan, Step, make_id, make_node_name

if TYPE_CHECKING:
    from .audit import AuditLog
    from .backend import Backend
    from .state import OwnedJobs


class HubCommands(JobControl):
    """Mixed into :class:`~tui.backend.hub.Hub`, which provides the state and the background work."""

    sessions: dict[str, Backend]
    drives: dict[str, list[Drive]]
    targets: dict[str, list[JobTarget]]
    tracker: JobTracker
    retries: dict[str, int]
    audit: AuditLog | None
    owned: OwnedJobs | None
    _refreshers: dict[str, asyncio.Task[None]]
    _refresh_dirty: set[str]

    if TYPE_CHECKING:  # the Hub's own

        def note(self, text: str, session: str = "", kind: str = "info", data: Any = None) -> None: ...

        def _emit(self, change: Any) -> None: ...

        def schedule_refresh(self, session: str) -> None: ...

        def _ensure_poller(self, session: str, force: bool = False) -> None: ...

        async def refresh(self, session: str) -> list[Drive]: ...

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
                if not img.pseudo:
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
        sent: dict[str, Any] = {"command": command, "arguments": arguments, "job": job, "drive": drive}
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
            self.note(f"commit anyway: {count(len(plan.override), 'image')} will see changed data", plan.session, "warning")
            if self.audit is not None:
                sess = self.sessions[plan.session]
                self.audit.record(sess.address_text, plan.session, "override-shared-image-refusal",
                                  {"plan": plan.title, "images": plan.override}, drive=plan.drive, job=next(iter(plan.job_ids), None))
        for i, step in enumerate(plan.steps):
            if step.starts_job:
                self._launching(plan, step)
            try:
                await self.execute(plan.session, step.command, step.arguments, drive=plan.drive, job=step.starts_job)
            except ChainTuiError as exc:
                if step.done_already and isinstance(exc, QMPCommandError) and step.done_already[0] in exc.desc:
                    self.note(step.done_already[1], plan.session)
                    continue
                if step.starts_job:
                    self._start_failed(plan.session, step.starts_job, exc)
                if i > 0:
                    self.note(
                        f"step {i + 1} of {len(plan.steps)} failed; steps before it took effect",
                        plan.session,
                        "error",
                    )
                    self.schedule_refresh(plan.session)
                raise
            if step.starts_job:
                started.append(self._started(plan, step.starts_job))
            if step.changes_chain and i + 1 < len(plan.steps):
                await self.refresh(plan.session)
        self.schedule_refresh(plan.session)
        self._ensure_poller(plan.session, force=True)
        return started

    def _launching(self, plan: Plan, step: Step) -> None:
        """The job card a step is about to start, from what is written on the step."""
        assert step.starts_job is not None
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

    def _start_failed(self, session: str, job_id: str, exc: ChainTuiError) -> None:
        """QEMU refused the job (or created it and failed it at once): a failed card says why."""
        reason = exc.desc if isinstance(exc, QMPCommandError) else str(exc)
        job = self.tracker.get(session, job_id)
        if f"'{job_id}'" in reason and "in use" in reason:
            # the id belongs to a job of another client: that job is not ours to mark
            if job is not None and job.launching:
                self.tracker.remove(session, job_id)
        elif job is not None and job.finished:
            # QEMU created the job and failed it at once (events came first)
            job.launching = False
            if job.result != "failed":
                job.outcome = job.result = None
                self.tracker.fail_start(session, job_id, reason)
        else:
            self.tracker.fail_start(session, job_id, f"QEMU refused to start it: {reason}")
        if self.tracker.get(session, job_id) is not None:
            self._emit(JobsChanged([self.tracker.ensure(session, job_id)]))

    def _started(self, plan: Plan, job_id: str) -> Job:
        job = self.tracker.ensure(plan.session, job_id)
        job.launching = False
        job.started_at = time.monotonic()
        if self.owned is not None:
            self.owned.add(self.sessions[plan.session].address_text, plan.session, job.id, drive=job.drive,
                           operation=plan.kind, target=job.target, active_commit=job.active_commit)
        self._emit(JobsChanged([job]))
        return job

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


def _args_text(arguments: dict[str, Any] | None) -> str:
    if not arguments:
        return ""
    import json

    return json.dumps(arguments, ensure_ascii=False)


