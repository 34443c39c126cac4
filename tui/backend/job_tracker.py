"""Every block job of every session, kept up to date from QMP events and polls.

:class:`JobTracker` is pure bookkeeping: it is fed QMP events and the answers of
``query-block-jobs``/``query-jobs`` with a timestamp, and says which jobs changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .fmt import human_size
from .jobs import ENDED_STATES, Job


@dataclass
class Polled:
    """What a poll changed: the jobs, and whether any changed state (shown at once, not on the next tick)."""

    changed: list[Job]
    urgent: bool

    def add(self, job: Job, urgent: bool = False) -> None:
        self.changed.append(job)
        self.urgent = self.urgent or urgent


class JobTracker:
    """All jobs, keyed by (session name, job id)."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], Job] = {}

    # -- lookups ---------------------------------------------------------
    def get(self, session: str, job_id: str) -> Job | None:
        return self.jobs.get((session, job_id))

    def for_session(self, session: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.session == session]

    def active_for(self, session: str) -> list[Job]:
        return [j for j in self.jobs.values() if j.session == session and j.active]

    def ordered(self) -> list[Job]:
        """Running and ready jobs first, then lost ones, then failed or cancelled ones, then finished ones."""
        return sorted(self.jobs.values(), key=lambda j: (_rank(j), j.started_at))

    def ensure(self, session: str, job_id: str, now: float | None = None) -> Job:
        job = self.jobs.get((session, job_id))
        if job is None:
            job = Job(id=job_id, session=session, started_at=now if now is not None else time.monotonic())
            self.jobs[(session, job_id)] = job
        return job

    def remove(self, session: str, job_id: str) -> Job | None:
        return self.jobs.pop((session, job_id), None)

    # -- inputs ----------------------------------------------------------
    def _finish(self, job: Job, outcome: str, now: float, result: str | None = None) -> None:
        if job.outcome is None:
            if result is None:
                result = outcome.split(":", 1)[0].split(" ", 1)[0]
                result = result if result in ("completed", "failed", "cancelled", "lost") else "unknown"
            job.outcome = outcome
            job.result = result
            job.ended_at = now
            job.lost = False
            job._touch()

    def _vanished(self, job: Job, now: float) -> None:
        """QEMU no longer has a job we knew: say how it ended as far as we can know."""
        if job.error:
            self._finish(job, f"failed: {job.error}", now)
        elif job.lost or job.status == "unknown":
            self._finish(job, "lost: its QEMU went away (killed or restarted) while it ran", now, "lost")
        elif job.cancel_requested:
            self._finish(job, "cancelled", now)
        else:
            self._finish(job, "ended (QEMU did not say how)", now, "unknown")

    def fail_start(self, session: str, job_id: str, error: str, now: float | None = None) -> Job:
        """The command that starts a job failed: keep a failed card that says why."""
        now = time.monotonic() if now is None else now
        job = self.ensure(session, job_id, now)
        job.error = error
        job.launching = False
        job.outcome = None
        self._finish(job, f"failed: {error}", now)
        return job

    def on_event(self, session: str, event: dict[str, Any], now: float | None = None) -> list[Job]:
        """Apply a QMP event; returns the jobs it changed."""
        now = time.monotonic() if now is None else now
        name = event.get("event", "")
        data = event.get("data") or {}
        if name == "JOB_STATUS_CHANGE":
            job = self.ensure(session, data["id"], now)
            job.event_at = now
            status = data.get("status", job.status)
            job.status = status
            if status == "ready":
                job.ready = True
            if status in ("running", "ready"):
                job.paused = False
            job.lost = False
            if status == "null" and job.outcome is None:
                self._vanished(job, now)
            job._touch()
            return [job]
        if name.startswith("BLOCK_JOB_") and "device" in data or name == "BLOCK_JOB_PENDING":
            job_id = data.get("device") or data.get("id")
            if not job_id:
                return []
            job = self.ensure(session, job_id, now)
            job.event_at = now
            if "type" in data:
                job.type = data["type"]
            if "len" in data:
                job.length = int(data["len"])
            if "offset" in data:
                job.offset = int(data["offset"])
                job.samples.append((now, job.offset))
            if "speed" in data:
                job.speed = int(data["speed"])
            if name == "BLOCK_JOB_READY":
                job.ready = True
                job.status = "ready"
            elif name == "BLOCK_JOB_ERROR":
                job.last_error_event = dict(data)
            elif name == "BLOCK_JOB_COMPLETED":
                error = data.get("error")
                if error:
                    job.error = error
                    self._finish(job, f"failed: {error}", now)
                elif job.cancel_requested:
                    self._finish(job, "cancelled after ready: source kept, target is a consistent copy", now)
                elif job.type == "mirror":
                    self._finish(job, "completed: drive switched to the target", now)
                elif job.type == "commit" and job.ready:
                    self._finish(job, "completed: drive switched to the base", now)
                else:
                    self._finish(job, "completed", now)
            elif name == "BLOCK_JOB_CANCELLED":
                self._finish(job, "cancelled", now)
            job._touch()
            return [job]
        return []

    def on_poll(
        self,
        session: str,
        block_jobs: list[dict[str, Any]],
        jobs: list[dict[str, Any]] | None = None,
        now: float | None = None,
        asked_at: float | None = None,
    ) -> Polled:
        """Apply ``query-block-jobs`` (and ``query-jobs``) answers, asked at ``asked_at``: which jobs
        changed, and whether any changed state (not only progress)."""
        now = time.monotonic() if now is None else now
        polled = Polled([], False)
        seen: set[str] = set()
        for info in block_jobs:
            job_id = info.get("device") or info.get("id")
            if not job_id:
                continue
            seen.add(job_id)
            self._apply_block_job(self.ensure(session, job_id, now), info, now, asked_at, polled)
        for info in jobs or []:
            job_id = info.get("id")
            if not job_id:
                continue
            if job_id not in seen:
                self._apply_job_info(session, job_id, info, now, polled)
            seen.add(job_id)
        if jobs is not None:
            # Jobs we knew as active that QEMU no longer has at all: they ended
            # while we were not looking (or the process restarted).  Not those
            # that appeared after the question was asked, or are being started.
            asked = now if asked_at is None else asked_at
            for job in self.for_session(session):
                if job.launching or job.started_at > asked:
                    continue
                if job.id not in seen and job.outcome is None:
                    self._vanished(job, now)
                    polled.add(job, urgent=True)
        return polled

    def _apply_block_job(self, job: Job, info: dict[str, Any], now: float, asked_at: float | None,
                         polled: Polled) -> None:
        """One entry of ``query-block-jobs``."""
        before = (job.offset, job.length, job.status, job.speed, job.paused, job.io_status, job.ready)
        job.type = info.get("type", job.type)
        job.offset = int(info.get("offset", job.offset))
        job.length = int(info.get("len", job.length))
        job.speed = int(info.get("speed", job.speed))
        # an answer to a question asked before the latest event is stale about the state
        fresh = asked_at is None or job.event_at <= asked_at
        if fresh:
            job.ready = bool(info.get("ready", job.ready))
            job.paused = bool(info.get("paused", job.paused))
        job.busy = bool(info.get("busy", job.busy))
        job.io_status = info.get("io-status", job.io_status)
        job.auto_finalize = bool(info.get("auto-finalize", job.auto_finalize))
        job.auto_dismiss = bool(info.get("auto-dismiss", job.auto_dismiss))
        job.lost = False
        if "status" in info and job.outcome is None and fresh:
            job.status = info["status"]
        if info.get("error") and job.error is None:
            job.error = info["error"]
        shown = self._sample(job, before[0], now)  # something a card shows besides `before` changed
        after = (job.offset, job.length, job.status, job.speed, job.paused, job.io_status, job.ready)
        if after != before or shown:
            job._touch()
            polled.add(job, urgent=after[2:] != before[2:])

    @staticmethod
    def _sample(job: Job, offset_before: int, now: float) -> bool:
        """Record progress for rate, sparkline and convergence; True when the card's look changed."""
        job.note_paused(now)
        last = job.samples[-1] if job.samples else None
        rate = job.rate
        # standing still: a sample every half second lets the rate of a stalled job decay; a
        # paused one keeps the rate it ran at (and its card does not change until it moves)
        if last is None or last[1] != job.offset or (now - last[0] > 0.5 and not job.is_paused):
            job.samples.append((now, job.offset))
        shown = False
        if job.needs_convergence and not job.ready and job.outcome is None:
            job.remaining_samples.append((now, job.offset, job.length))
            shown = True  # the convergence trend
        if job.active:
            new_rate = job.rate
            # the sparkline moves while the job moves or its rate (as shown) changes; a paused
            # or stalled job whose card would look the same costs nothing
            if job.offset != offset_before or human_size(new_rate) != human_size(rate):
                job.rate_history.append(new_rate)
                shown = True
        return shown

    def _apply_job_info(self, session: str, job_id: str, info: dict[str, Any], now: float, polled: Polled) -> None:
        """A ``query-jobs`` entry that ``query-block-jobs`` no longer lists (concluded, or about to be)."""
        job = self.get(session, job_id)
        if job is None:
            job = self.ensure(session, job_id, now)
            job.type = info.get("type", job.type)
        job.status = info.get("status", job.status)
        if info.get("error") and job.error is None:
            job.error = info["error"]
        total = info.get("total-progress")
        if total:
            job.length = int(total)
            job.offset = int(info.get("current-progress", job.offset))
        urgent = False
        if job.status == "concluded" and not job.error and not job.lost and job.outcome is None:
            # kept by QEMU (auto-dismiss off) after it ended without an error
            self._finish(job, "cancelled" if job.cancel_requested else "completed", now)
            urgent = True
        elif job.status in ENDED_STATES:
            self._vanished(job, now)
            urgent = True
        job._touch()
        polled.add(job, urgent)

    def on_stopped(self, session: str, why: str, now: float | None = None) -> list[Job]:
        """Its QEMU ended (a libvirt domain shut off): the jobs ended with it, not finished."""
        now = time.monotonic() if now is None else now
        changed = []
        for job in self.for_session(session):
            if job.outcome is None:
                self._finish(job, f"lost: {why} while it ran; the job did not finish", now, "lost")
                changed.append(job)
        return changed

    def on_lost(self, session: str) -> list[Job]:
        """The connection is gone: what the jobs do now is unknown."""
        changed = []
        for job in self.for_session(session):
            if job.outcome is None and not job.lost:
                job.lost = True
                job._touch()
                changed.append(job)
        return changed


def _rank(job: Job) -> int:
    if job.outcome is None:
        return 1 if job.lost else 0
    return 2 if job.ended_badly else 3
