"""Job control over QMP: the one place the job commands' QMP is built."""

from __future__ import annotations

from typing import Any

from .errors import ValidationError
from .jobs import Job
from .plan import Step


def _step(command: str, arguments: dict[str, Any], **kw: Any) -> Step:
    return Step(command, arguments, **kw)


class QmpControl:
    """Implements :class:`~tui.backend.backend.JobControl` for a QEMU reached over QMP."""

    def cancel(self, job: Job, force: bool) -> Step:
        args: dict[str, Any] = {"device": job.id}
        if force or job.user_paused or job.stopped_on_error:
            args["force"] = True
        return _step("block-job-cancel", args)

    def complete(self, job: Job) -> Step:
        return _step("block-job-complete", {"device": job.id})

    def pause(self, job: Job) -> Step:
        return _step("block-job-pause", {"device": job.id})

    def resume(self, job: Job) -> Step:
        return _step("block-job-resume", {"device": job.id})

    def set_speed(self, job: Job, speed: int) -> Step:
        return _step("block-job-set-speed", {"device": job.id, "speed": int(speed)})

    def write_blocking(self, job: Job) -> Step:
        if job.type != "mirror":
            raise ValidationError(f"Job {job.id} is a {job.type} job: only a mirror has a copy mode", "job")
        return _step(
            "block-job-change", {"id": job.id, "type": "mirror", "copy-mode": "write-blocking"},
            explain={"CommandNotFound": (
                "This QEMU cannot switch a running mirror to write-blocking (block-job-change needs QEMU 8.2 "
                "or newer): raise or lift the speed limit, or cancel and start the mirror again with "
                "copy mode write-blocking")},
        )

    def dismiss(self, job: Job) -> Step | None:
        if job.status == "concluded":
            return _step("job-dismiss", {"id": job.id})
        return None

