"""Job control through the hub: cancel, finish, pause, resume, speed, write-blocking, dismiss.

:class:`JobControl` is mixed into :class:`~tui.backend.hub_commands.HubCommands`: it checks a
job can be reached and is in a state the command applies to, asks the job's backend for the
step (:mod:`tui.backend.qmp_control`, :mod:`tui.backend.libvirt_plans`), sends it through
:meth:`~tui.backend.hub_commands.HubCommands.execute` and updates the job card.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from .changes import JobsChanged
from .errors import ChainTuiError, NotConnected, QMPCommandError, ValidationError
from .fmt import count
from .job_tracker import JobTracker
from .jobs import ENDED_STATES, Job

if TYPE_CHECKING:
    from .backend import Backend
    from .chain import JobTarget
    from .plan import Step


class JobControl:
    """Mixed into the hub (through :class:`~tui.backend.hub_commands.HubCommands`), which sends."""

    sessions: dict[str, Backend]
    targets: dict[str, list[JobTarget]]
    tracker: JobTracker
    retries: dict[str, int]

    if TYPE_CHECKING:  # the hub's own

        def note(self, text: str, session: str = "", kind: str = "info", data: Any = None) -> None: ...

        def _emit(self, change: Any) -> None: ...

        def _ensure_poller(self, session: str, force: bool = False) -> None: ...

        async def refresh(self, session: str) -> Any: ...

        def files_in_use(self, except_drive: Any = None) -> dict[str, str]: ...

        async def execute(self, session: str, command: str, arguments: dict[str, Any] | None = None,
                          drive: str | None = None, job: str | None = None) -> Any: ...

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
            again = f", retried {count(tries, 'time')}" if tries else ""
            return (
                f"{job.id} is lost: the connection to {job.session} is gone ({sess.last_error or sess.state.value}"
                f"{again}); nothing can reach the job until QEMU answers again"
            )
        return ""

    def _changed(self, job: Job) -> None:
        """A job command took effect: the card shows it now, not at the next poll."""
        job._touch()
        self._emit(JobsChanged([job]))

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
                f"Job {job_id} is not ready yet ({job.status}, {job.percent}): "
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
        self._changed(job)

    async def resume(self, session: str, job_id: str) -> None:
        job = self._live_job(session, job_id)
        await self._job_step(job, self._control(session).resume(job))
        job.user_paused = False
        self._changed(job)
        self._ensure_poller(session, force=True)

    async def toggle_pause(self, session: str, job_id: str) -> bool:
        """Pause a running job or resume a paused one; True when now paused."""
        job = self._job(session, job_id)
        if job.user_paused or job.stopped_on_error:
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
        self._changed(job)

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
