"""The main screen: drives, the chain graph, job cards, the event log."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Checkbox, Footer, Header, Input, Select, Static

from ..backend import ops
from ..backend.chain import Drive
from ..backend.errors import ValidationError
from ..backend.jobs import Job
from ..backend.usage import describe_dependents, drive_keys, image_key, shared_with_others
from ..keys import main_bindings
from ..messages import DrivesUpdated, JobsUpdated, LogAppended, SessionUpdated
from ..widgets import ChainGraph, DrivesPanel, EventLog, JobsPanel
from ..widgets.path_input import PathInput
from .dialogs import AddEndpointDialog, ConfirmDialog, PlanDialog
from .help import HelpScreen

if TYPE_CHECKING:
    from ..app import ChainApp

DRIVE_ACTIONS = {"stream", "commit", "mirror", "copy", "snapshot", "close_leftover"}
JOB_ACTIONS = {
    "finish", "cancel_job", "pause", "faster", "slower", "dismiss", "unlimit", "write_blocking", "traffic", "dismiss_all",
}
# keys that send a command to the job's QEMU (refused, with the reason, while it is lost)
SENDS = {"finish", "cancel_job", "pause", "faster", "slower", "unlimit", "write_blocking"}


class MainScreen(Screen[None]):
    BINDINGS = main_bindings()  # tui/keys.py: the one table of keys
    AUTO_FOCUS = "#graph"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    @property
    def chain_app(self) -> ChainApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield DrivesPanel(id="drives")
            with Vertical(id="chain-box"):
                yield ChainGraph(id="graph")
                yield Static("", id="details")
        yield JobsPanel(id="jobs")
        yield EventLog(id="log", clock=self.chain_app.clock)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#drives", DrivesPanel).border_title = "Drives"
        self.query_one("#jobs", JobsPanel).border_title = "Jobs"
        self.query_one("#log", EventLog).border_title = "Event log"
        self.query_one("#chain-box").border_title = "Chain"
        self.update_drives()
        self.update_jobs()
        for entry in self.chain_app.hub.log:
            self.query_one("#log", EventLog).add(entry)

    # -- backend changes -------------------------------------------------
    def on_session_updated(self, message: SessionUpdated) -> None:
        self.update_drives()

    def on_drives_updated(self, message: DrivesUpdated) -> None:
        self.update_drives()
        for screen in self.app.screen_stack:
            if isinstance(screen, PlanDialog) and screen.is_mounted:
                screen.revalidate()  # the plan is re-built from the chain as QEMU has it now

    PROGRESS_INTERVAL = 0.5  # progress is redrawn at most this often (state changes at once)

    def on_jobs_updated(self, message: JobsUpdated) -> None:
        now = time.monotonic()
        last = getattr(self, "_jobs_drawn", 0.0)
        if message.urgent or now - last >= self.PROGRESS_INTERVAL:
            self.update_jobs()
        elif not getattr(self, "_jobs_timer", False):
            self._jobs_timer = True
            self.set_timer(last + self.PROGRESS_INTERVAL - now, self._flush_jobs)

    def _flush_jobs(self) -> None:
        self._jobs_timer = False
        self.update_jobs()

    def on_log_appended(self, message: LogAppended) -> None:
        self.query_one("#log", EventLog).add(message.entry)
        if message.entry.kind == "warning":
            self.notify(message.entry.text, title=message.entry.session or "Warning", severity="warning", timeout=10)

    def update_drives(self) -> None:
        hub = self.chain_app.hub
        counts: dict[tuple[str, str], int] = {}
        for job in hub.tracker.jobs.values():
            if job.drive and job.running:
                counts[(job.session, job.drive)] = counts.get((job.session, job.drive), 0) + 1
        panel = self.query_one("#drives", DrivesPanel)
        panel.show(list(hub.sessions.values()), hub.drives, counts, hub.retries)
        self.query_one("#graph", ChainGraph).set_drive(self.selected_drive())
        self._update_title()
        self._refresh_keys()

    def update_jobs(self) -> None:
        self._jobs_drawn = time.monotonic()
        hub = self.chain_app.hub
        jobs = hub.tracker.ordered()
        panel = self.query_one("#jobs", JobsPanel)
        panel.show(jobs)
        running = sum(1 for j in jobs if j.running)
        lost = sum(1 for j in jobs if j.lost and not j.finished)
        bad = sum(1 for j in jobs if j.ended_badly)
        title = f"Jobs ({running} running"
        title += f", {lost} lost" if lost else ""
        title += f", {bad} failed/cancelled" if bad else ""
        title += ")"
        if panel.border_title != title:
            panel.border_title = title
        self._update_title()
        self._refresh_keys()

    def _update_title(self) -> None:
        hub = self.chain_app.hub
        running = sum(1 for j in hub.tracker.jobs.values() if j.running)
        title = f"{len(hub.sessions)} QEMU · {len(hub.all_drives())} drives · {running} jobs"
        if self.sub_title != title:
            self.sub_title = title

    def _refresh_keys(self) -> None:
        """Re-check the footer only when what decides it changed (rebuilding it is costly)."""
        state = (self.selected_drive() is not None, bool(self.chain_app.hub.tracker.jobs))
        if state != getattr(self, "_keys_state", None):
            self._keys_state = state
            self.refresh_bindings()

    def selected_drive(self) -> Drive | None:
        sel = self.query_one("#drives", DrivesPanel).selected
        if sel is None:
            return None
        for d in self.chain_app.hub.drives.get(sel[0], []):
            if d.name == sel[1]:
                return d
        return None

    def on_drives_panel_drive_selected(self, message: DrivesPanel.DriveSelected) -> None:
        self.query_one("#graph", ChainGraph).set_drive(self.selected_drive())
        self._refresh_keys()

    def on_chain_graph_highlighted(self, message: ChainGraph.Highlighted) -> None:
        img = message.image
        drive = message.graph.drive
        details = self.query_one("#details", Static)
        box = self.query_one("#chain-box")
        if drive is None or img is None:
            details.update("")
            box.border_title = "Chain"
            return
        box.border_title = f"Chain of {drive.name} on {drive.session} · {len(drive.images)} images"
        backing = f" · backing file: {img.backing_file}" if img.backing_file else " · no backing file"
        details.update(f"[b]{escape(img.filename)}[/b]{escape(backing)}")

    # -- helpers ---------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DRIVE_ACTIONS:
            return True if self.selected_drive() is not None else None
        if action in JOB_ACTIONS:
            return True if self.chain_app.hub.tracker.jobs else None
        return True

    def _drive_or_say(self) -> Drive | None:
        drive = self.selected_drive()
        if drive is None:
            self.notify("No drive selected", severity="warning")
        elif not self.chain_app.hub.sessions[drive.session].connected:
            self.notify(f"{drive.session} is not connected", severity="error")
            return None
        return drive

    def _highlighted_image(self, drive: Drive):  # type: ignore[no-untyped-def]
        return self.query_one("#graph", ChainGraph).highlighted or drive.active

    def target_job(self) -> Job | None:
        """The highlighted job card (jobs panel focused), else the selected drive's newest job, never another's."""
        panel = self.query_one("#jobs", JobsPanel)
        if self.focused is panel or (self.focused is not None and panel in self.focused.ancestors):
            return panel.highlighted
        drive = self.selected_drive()
        if drive is None:
            return None
        mine = [j for j in self.chain_app.hub.tracker.jobs.values() if (j.session, j.drive) == drive.key]
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

    def _now(self, drive: Drive) -> Drive:
        """The drive as QEMU has it now (a dialog re-validates against it when the chain changes)."""
        return self.chain_app.hub.drive(drive.session, drive.name)

    def _labels_now(self, drive: Drive) -> tuple[str, ...]:
        try:
            return tuple(img.label for img in self._now(drive).images)
        except ValidationError:
            return ()  # gone

    def _speed_input(self, value: str = "") -> Input:
        return Input(value=value, placeholder="unlimited (e.g. 10M, 512K)")

    def _open(self, dialog: PlanDialog) -> None:
        drive = self.selected_drive()  # the drive every operation dialog is about
        if drive is not None:
            dialog.chain_now = lambda: self._labels_now(drive)

        def done(plan: ops.Plan | None) -> None:
            if plan is not None:
                self.chain_app.launch(plan)

        self.app.push_screen(dialog, done)

    # -- operations ------------------------------------------------------
    def action_stream(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        if len(drive.images) < 2:
            self.notify(f"{drive.name} has a single image ({drive.active.label}), no backing file: nothing to merge",
                        title="Merge", severity="warning")
            return
        img = self._highlighted_image(drive)
        base = None if img.node_name == drive.active.node_name else img.node_name
        job_id = self.chain_app.hub.new_job_id("stream", drive)
        graph = self.chain_app.usage.graph()  # what the last scan found: the note is informational
        shared = describe_dependents(graph, shared_with_others(graph, drive, drive_keys(drive)[0]))
        self._open(
            PlanDialog(
                f"Merge (block-stream) on {drive.name}",
                lambda v: self.chain_app.hub.planner(drive).plan_stream(self._now(drive), base, v["speed"], job_id, shared=shared),
                [("speed", "Speed limit", self._speed_input())],
                intro=(
                    f"New base: [b]{escape(img.label)}[/b]" if base else "Flatten: no base, everything is pulled up"
                ),
            )
        )

    def action_commit(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        img = self._highlighted_image(drive)
        index = drive.index_of(img.node_name)
        if index == len(drive.images) - 1:
            self.notify(
                "Highlight the image to commit into: it must be below the active image",
                title="Commit",
                severity="warning",
            )
            return
        usage = self.chain_app.usage

        async def open_dialog() -> None:
            # every overlay of the base, live or on disk, is known before the dialog opens
            scan = asyncio.ensure_future(usage.ensure())
            done, _ = await asyncio.wait({scan}, timeout=0.5)
            if not done:
                self.notify(f"Reading the image files next to the chains first ({usage.state.text})…", title="Commit")
            await scan
            graph = usage.graph()
            shared = describe_dependents(graph, shared_with_others(graph, drive, image_key(drive.session, img)))
            self._open_commit(drive, img, index, shared)

        self.chain_app.run_worker(open_dialog(), exit_on_error=False, group="usage")

    def _open_commit(self, drive: Drive, img, index: int, shared: list[str]) -> None:  # type: ignore[no-untyped-def]
        tops = [(i.label + (" (active)" if i is drive.active else ""), i.node_name) for i in drive.images[index + 1 :]]
        top_select: Select[str] = Select(list(reversed(tops)), value=drive.active.node_name, allow_blank=False)
        job_id = self.chain_app.hub.new_job_id("commit", drive)
        fields = [("top", "Top", top_select), ("speed", "Speed limit", self._speed_input())]
        if shared:
            n = len(shared)
            fields.append(("override", "Shared base", Checkbox(f"commit anyway: these {n} images will see changed data")))
        self._open(
            PlanDialog(
                f"Commit (block-commit) into {img.label}",
                lambda v: self.chain_app.hub.planner(drive).plan_commit(
                    self._now(drive), img.node_name, v["top"], v["speed"], job_id, shared=shared, override=bool(v.get("override"))
                ),
                fields,
                intro=f"Base: [b]{escape(img.label)}[/b]; the images above it up to the top are written into it",
                focus="speed",
            )
        )

    def _target_fields(self, drive: Drive, suffix: str, formats: list[str]) -> list:  # type: ignore[type-arg]
        # the default format follows the source: a raw disk stays raw
        default = drive.active.format if drive.active.format in formats else formats[0]
        ext = "raw" if default == "raw" else "qcow2"
        target = PathInput(value=ops.suggest_target(drive, suffix, ext), placeholder="/path/to/new-image.qcow2")
        labels = {
            "qcow2": "qcow2: thin, can have a backing file",
            "raw": "raw: no backing file, thin only where the file system supports it",
        }
        fmt: Select[str] = Select([(labels.get(f, f), f) for f in formats], value=default, allow_blank=False)
        return [("target", "Target", target), ("format", "Format", fmt)]

    def action_mirror(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        job_id = self.chain_app.hub.new_job_id("mirror", drive)
        in_use = self.chain_app.hub.files_in_use(except_drive=drive)
        sync: Select[str] = Select([("full: the whole chain", "full"), ("top: the active image only", "top")], value="full", allow_blank=False)
        mode: Select[str] = Select(
            [("create a new file", "absolute-paths"), ("reuse an existing image", "existing")],
            value="absolute-paths",
            allow_blank=False,
        )
        copy_mode: Select[str] = Select(
            [("background: converges if copying outruns the guest", "background"),
             ("write-blocking: guest writes wait for the target, always converges", "write-blocking")],
            value="background",
            allow_blank=False,
        )
        fields = self._target_fields(drive, "mirror", ["qcow2", "raw"]) + [
            ("sync", "Sync", sync),
            ("mode", "Target file", mode),
            ("copy_mode", "Copy mode", copy_mode),
            ("speed", "Speed limit", self._speed_input()),
        ]
        self._open(
            PlanDialog(
                f"Mirror (live migration) of {drive.name}",
                lambda v: self.chain_app.hub.planner(drive).plan_mirror(
                    self._now(drive), v["target"], v["format"], v["sync"], v["speed"], job_id, mode=v["mode"] or "absolute-paths",
                    copy_mode=None if v["copy_mode"] in (None, "background") else v["copy_mode"],
                    in_use=in_use,
                ),
                fields,
                intro="The job goes [b]ready[/b] when the copy has caught up: then [b]f[/b] pivots to the "
                "target, [b]x[/b] keeps the source and leaves the target a consistent copy.",
            )
        )

    def action_copy(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        hub = self.chain_app.hub
        job_id = hub.new_job_id("copy", drive)
        in_use = hub.files_in_use(except_drive=drive)
        method: Select[str] = Select(
            [("snapshot + stream (drive moves to the copy)", "stream"), ("full mirror (raw allowed)", "mirror")],
            value="stream",
            allow_blank=False,
        )
        fields = self._target_fields(drive, "copy", ["qcow2", "raw"])
        fields.insert(1, ("method", "Method", method))
        fields.append(("speed", "Speed limit", self._speed_input()))
        self._open(
            PlanDialog(
                f"Live copy of {drive.name}",
                lambda v: self.chain_app.hub.planner(drive).plan_copy(
                    self._now(drive), v["target"], v["method"], v["format"], v["speed"], job_id,
                    hub.new_node_name(v["target"] or "copy", drive), in_use=in_use,
                ),
                fields,
                intro="Snapshot + stream: the destination becomes the active image and then stands alone. "
                "Full mirror: goes ready, then [b]x[/b] keeps the source with a consistent copy.",
            )
        )

    def action_snapshot(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        hub = self.chain_app.hub
        target = PathInput(value=ops.suggest_target(drive, "snap"), placeholder="/path/to/overlay.qcow2")
        in_use = hub.files_in_use(except_drive=drive)
        self._open(
            PlanDialog(
                f"External snapshot of {drive.name}",
                lambda v: self.chain_app.hub.planner(drive).plan_snapshot(
                    self._now(drive), v["target"], hub.new_node_name(v["target"] or "snap", drive), in_use=in_use
                ),
                [("target", "New image", target)],
                intro="A new, empty qcow2 image becomes the active image.",
                confirm_label="Snapshot",
            )
        )

    def action_close_leftover(self) -> None:
        """blockdev-del of nodes an earlier job left open on the selected drive (with a confirmation)."""
        drive = self._drive_or_say()
        if drive is None:
            return
        if not drive.leftovers:
            self.notify(f"No leftover nodes on {drive.name} @ {drive.session}", severity="information")
            return
        leftover = drive.leftovers[0]
        address = self.chain_app.hub.sessions[drive.session].address_text
        try:
            plan = ops.plan_close_leftover(drive, leftover, address)
        except ValidationError as exc:
            self.notify(exc.message, title="Cannot close", severity="warning")
            return
        body = "\n".join(escape(m) for m in plan.moves) + "\n\n" + "\n".join(
            f"[dim]QMP[/dim] {escape(line)}" for line in plan.qmp_json().splitlines()
        )
        self.app.push_screen(
            ConfirmDialog(f"Close {', '.join(leftover.nodes)} on {drive.name} @ {drive.session}?", body,
                          yes="Close (blockdev-del)", no="Keep open"),
            lambda ok: ok and self.chain_app.launch(plan),
        )

    # -- job control -----------------------------------------------------
    def action_finish(self) -> None:
        job = self._job_or_say(sends=True)
        if job is None:
            return
        if job.finished:
            self.notify(f"{job.id} has already ended: {job.outcome}", severity="warning")
            return
        if not job.ready:
            self.notify(
                f"{job.id} is not ready ({job.state_text}, {job.progress:.0%}). Only a mirror or an active commit "
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
        job = self._job_or_say(sends=True)
        if job is None:
            return
        if job.finished:
            self.notify(f"{job.id} has already ended: {job.outcome}. Press d to dismiss it.", severity="warning")
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

    def action_faster(self) -> None:
        job = self._job_or_say(sends=True)
        if job is None:
            return
        if job.speed == 0:
            self.notify(f"{job.id} has no speed limit already", severity="information")
            return
        self.chain_app.job_command("set_speed", job, job.speed * 2)

    def action_slower(self) -> None:
        job = self._job_or_say(sends=True)
        if job is None:
            return
        base = job.speed or int(job.rate) or 64 << 20
        self.chain_app.job_command("set_speed", job, max(4096, base // 2))

    def action_unlimit(self) -> None:
        job = self._job_or_say(sends=True)
        if job is None:
            return
        if job.speed == 0:
            self.notify(f"{job.id} has no speed limit already", severity="information")
            return
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
        hub = self.chain_app.hub
        done = [j for j in hub.tracker.jobs.values() if j.finished and j.succeeded]
        kept = [j for j in hub.tracker.jobs.values() if j.ended_badly]
        if not done:
            extra = f"; {len(kept)} failed/cancelled/lost stay until dismissed one by one (d)" if kept else ""
            self.notify(f"No finished job to dismiss{extra}", severity="information")
            return

        async def run() -> None:
            gone = await hub.dismiss_finished()
            extra = f"; {len(kept)} failed/cancelled/lost kept: dismiss each with d" if kept else ""
            self.notify(f"Dismissed {len(gone)} finished job{'s' if len(gone) != 1 else ''}{extra}")

        self.chain_app.run_worker(run(), exit_on_error=False, group="jobs")

    # -- QEMU processes ----------------------------------------------------
    def action_add_endpoint(self) -> None:
        hub = self.chain_app.hub

        def done(address: str | None) -> None:
            if not address:
                return

            async def run() -> None:
                session = await hub.add_at_run_time(address)
                self.notify(f"Added {session.name} ({session.address_text})", title="QEMU added")

            self.chain_app.run_worker(run(), exit_on_error=False, group="add")

        self.app.push_screen(AddEndpointDialog(), done)

    def action_remove_endpoint(self) -> None:
        sel = self.query_one("#drives", DrivesPanel).selected
        hub = self.chain_app.hub
        if sel is None or sel[0] not in hub.sessions:
            self.notify("No QEMU selected: pick one of its drives in the drives panel", severity="warning")
            return
        name = sel[0]
        sess = hub.sessions[name]
        ours = [j for j in hub.tracker.for_session(name) if j.started_by_us and not j.finished]
        body = (
            f"chaintui stops watching [b]{escape(name)}[/b] ({escape(sess.address_text)}). QEMU keeps running; "
            "nothing is sent to it."
        )
        if ours:
            body += f"\n{len(ours)} job(s) chaintui started there go on inside QEMU: {escape(', '.join(j.id for j in ours))}."

        async def run() -> None:
            await hub.remove(name)
            self.notify(f"Removed {name}: no longer watched")

        self.app.push_screen(
            ConfirmDialog(f"Stop watching {name}?", body, yes="Remove", no="Keep"),
            lambda ok: ok and self.chain_app.run_worker(run(), exit_on_error=False, group="add"),
        )

    # -- other -----------------------------------------------------------
    def action_toggle_log(self) -> None:
        log = self.query_one("#log", EventLog)
        log.display = not log.display

    def action_graph(self) -> None:
        drive = self.selected_drive()
        self.chain_app.open_graph(drive.key if drive is not None else None)

    def action_cleanup(self) -> None:
        self.chain_app.cleanup()

    def action_refresh(self) -> None:
        self.chain_app.run_worker(self.chain_app.hub.refresh_all(), exit_on_error=False, group="refresh")

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.chain_app.request_quit()



def job_name(job: Job) -> str:
    """A job as confirmations name it: id, drive and QEMU."""
    return f"{job.id} on {job.drive or '?'} @ {job.session}"
