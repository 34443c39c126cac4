"""The main screen's job keys (f x p + - u w t d D): they act on the picked job only, and say why not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from ..backend.jobs import Job
from ..widgets import DrivesPanel, JobsPanel
from .dialogs import ConfirmDialog

if TYPE_CHECKING:
    from .main import MainScreen

    _Base = MainScreen
else:
    _Base = object


class JobKeys(_Base):
    """Mixed into :class:`~tui.screens.main.MainScreen`: keys on the highlighted (or the selected drive's) job."""

    def target_job(self) -> Job | None:
        """The highlighted job card (jobs panel focused), else the selected drive's newest job, never another's."""
        panel = self.query_one("#jobs", JobsPanel)
        if self.focused is panel or (self.focused is not None and panel in self.focused.ancestors):
            return panel.highlighted
        drive = self.selected_drive()
        if drive is None:
            return None
        mine = [j for j in self.jobs if (j.session, j.drive) == drive.key]
        mine.sort(key=lambda j: j.started_at)
        live = [j for j in mine if not j.finished]
        return (live or mine)[-1] if mine else None

    def _job_or_say(self, sends: bool = False) -> Job | None:
        job = self.target_job()
        if job is None:
            sel = self.query_one("#drives", DrivesPanel).selected
            panel = self.query_one("#jobs", JobsPanel)
            if self.focused is panel:
                self.notify("No job in the jobs panel", severity="warning")
            elif sel is None:
                self.notify("No drive selected: pick a drive, or a card in the jobs panel (tab)", severity="warning")
            else:
                self.notify(
                    f"No job on {sel[1]} @ {sel[0]}: to act on another drive's job, highlight its card in the jobs panel (tab)",
                    severity="warning",
                )
            return None
        if sends and not job.finished:
            why = self.chain_app.hub.unreachable(job)
            if why:
                self.notify(why, title=f"{job.id} cannot be reached", severity="error", timeout=8)
                return None
        return job

    # -- job control -----------------------------------------------------
    def _live_job_or_say(self, after_end: str = "") -> Job | None:
        """The picked job if it still runs in a QEMU we reach; else None, having said why."""
        job = self._job_or_say(sends=True)
        if job is not None and job.finished:
            self.notify(f"{job.id} has already ended: {job.outcome}{after_end}", severity="warning")
            return None
        return job

    def action_finish(self) -> None:
        job = self._live_job_or_say()
        if job is None:
            return
        if not job.ready:
            self.notify(
                f"{job.id} is not ready ({job.state_text}, {job.percent}). Only a mirror or an active commit "
                "that has caught up can be finished; a stream or intermediate commit ends by itself.",
                title="Not ready",
                severity="warning",
            )
            return
        if job.type == "mirror":
            body = (
                f"The drive [b]{escape(job.drive or '?')}[/b] switches to the target "
                f"[b]{escape(job.target or '?')}[/b]; the guest writes there from now on. "
                "The source images stay on disk, unused."
            )
        else:
            body = f"The drive [b]{escape(job.drive or '?')}[/b] switches to the base of the commit; the images above it are dropped from the chain."
        self.app.push_screen(
            ConfirmDialog(f"Finish {job_name(job)}?", body, yes="Finish (pivot)", no="Keep running"),
            lambda ok: ok and self.chain_app.job_command("complete", job),
        )

    def action_cancel_job(self) -> None:
        job = self._live_job_or_say(". Press d to dismiss it.")
        if job is None:
            return
        if job.ready and job.type == "mirror":
            body = (
                f"The mirror stops; the drive stays on its source and [b]{escape(job.target or 'the target')}[/b] "
                "is left as a consistent copy of this moment."
            )
        elif job.ready:
            body = "The active commit stops; the drive stays on its current active image. Data already written into the base stays there."
        else:
            body = (
                f"The {job.type} job stops before it has finished; the chain stays as it is now. "
                "Data already copied stays where it was copied; nothing the guest sees changes."
            )
            if job.type == "mirror" and job.target:
                body += (
                    f"\nThe incomplete target [b]{escape(job.target)}[/b] stays on disk: it is not a usable copy. "
                    "Delete it yourself once the job has ended."
                )
        self.app.push_screen(
            ConfirmDialog(f"Cancel {job_name(job)}?", body, yes="Cancel job", no="Keep running"),
            lambda ok: ok and self.chain_app.job_command("cancel", job),
        )

    def action_pause(self) -> None:
        job = self._job_or_say(sends=True)
        if job is not None:
            self.chain_app.job_command("toggle_pause", job)

    def _limited_job_or_say(self) -> Job | None:
        """The picked job, when it has a speed limit to change (+ and u)."""
        job = self._job_or_say(sends=True)
        if job is not None and job.speed == 0:
            self.notify(f"{job.id} has no speed limit already", severity="information")
            return None
        return job

    def action_faster(self) -> None:
        job = self._limited_job_or_say()
        if job is not None:
            self.chain_app.job_command("set_speed", job, job.speed * 2)

    def action_slower(self) -> None:
        job = self._job_or_say(sends=True)
        if job is None:
            return
        base = job.speed or int(job.rate) or 64 << 20
        self.chain_app.job_command("set_speed", job, max(4096, base // 2))

    def action_unlimit(self) -> None:
        job = self._limited_job_or_say()
        if job is not None:
            self.chain_app.job_command("set_speed", job, 0)

    def action_write_blocking(self) -> None:
        job = self._job_or_say(sends=True)
        if job is not None:
            self.chain_app.job_command("write_blocking", job)

    def action_traffic(self) -> None:
        job = self._job_or_say()
        if job is None:
            return
        from .traffic import TrafficScreen, job_traffic

        lines = job_traffic(self.chain_app.hub.log, job.session, job.id, self.chain_app.clock)
        self.app.push_screen(TrafficScreen(f"QMP traffic of {job.id} on {job.session} — escape closes", lines))

    def action_dismiss(self) -> None:
        job = self._job_or_say()
        if job is None:
            return
        if not job.finished:
            self.notify(f"{job.id} is still {job.state_text}; cancel it (x) or wait for it to end", severity="warning")
            return
        leftover = self.chain_app.hub.incomplete_target(job)
        if leftover is None:
            self.chain_app.job_command("dismiss", job)
            return
        body = (
            f"The mirror was cancelled before it was in sync: [b]{escape(leftover)}[/b] is an incomplete copy, "
            "of no use as a disk. Delete the file, or keep it?"
        )

        def answer(delete: bool | None) -> None:
            self.chain_app.job_command("delete_incomplete_target" if delete else "dismiss", job)

        self.app.push_screen(
            ConfirmDialog(f"Delete the incomplete target of {job_name(job)}?", body, yes="Delete file", no="Keep file"),
            answer,
        )

    def action_dismiss_all(self) -> None:
        done = [j for j in self.jobs if j.finished and j.succeeded]
        kept = [j for j in self.jobs if j.ended_badly]
        if not done:
            extra = f"; {len(kept)} failed/cancelled/lost stay until dismissed one by one (d)" if kept else ""
            self.notify(f"No finished job to dismiss{extra}", severity="information")
            return
        self.chain_app.dismiss_finished(len(kept))



def job_name(job: Job) -> str:
    """A job as confirmations name it: id, drive and QEMU."""
    return f"{job.id} on {job.drive or '?'} @ {job.session}"
