"""The main screen: drives, the chain graph, job cards, the event log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

from ..backend.chain import Drive, unattached
from ..backend.fmt import count
from ..backend.jobs import Job
from ..keys import main_bindings
from ..messages import DrivesUpdated, JobsUpdated, LogAppended, SessionUpdated
from ..widgets import ChainGraph, DetailsLine, DrivesPanel, EventLog, JobsPanel
from .dialogs import AddEndpointDialog, ConfirmDialog, PlanDialog
from .help import HelpScreen
from .job_keys import JobKeys, job_name
from .operations import OperationKeys

if TYPE_CHECKING:
    from ..app import ChainApp

DRIVE_ACTIONS = {"stream", "commit", "mirror", "copy", "snapshot", "close_leftover"}
JOB_ACTIONS = {
    "finish", "cancel_job", "pause", "faster", "slower", "dismiss", "unlimit", "write_blocking", "traffic", "dismiss_all",
}
# keys that send a command to the job's QEMU (refused, with the reason, while it is lost)
SENDS = {"finish", "cancel_job", "pause", "faster", "slower", "unlimit", "write_blocking"}


class MainScreen(OperationKeys, JobKeys, Screen[None]):
    """Layout, the backend's changes (from messages), selection; the keys live in operations.py and job_keys.py."""

    BINDINGS = main_bindings()  # tui/keys.py: the one table of keys
    AUTO_FOCUS = "#graph"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (32, "-tall")]

    def __init__(self) -> None:
        super().__init__()
        # what the hub last told this screen (messages carry it): QEMUs, their drives, every job
        self.sessions: dict[str, Any] = {}
        self.session_order: dict[str, int] = {}
        self.retries: dict[str, int] = {}
        self.drives: dict[str, tuple[Drive, ...]] = {}
        self.jobs: tuple[Job, ...] = ()

    @property
    def chain_app(self) -> ChainApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="top"):
            yield DrivesPanel(id="drives")
            with Vertical(id="chain-box"):
                yield ChainGraph(id="graph")
                yield DetailsLine("", id="details")
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
        for entry in self.chain_app.hub.log:  # what was said before this screen existed
            self.query_one("#log", EventLog).add(entry)
        self._fit_footer()
        self.chain_app.send_snapshot(self)

    def on_resize(self) -> None:
        self._fit_footer()

    def _fit_footer(self) -> None:
        """Under 120 columns the footer drops its padding and the palette hint, to show more keys."""
        footer = self.query_one(Footer)
        narrow = self.size.width < 120
        footer.compact = narrow
        footer.show_command_palette = not narrow

    # -- backend changes -------------------------------------------------
    def on_session_updated(self, message: SessionUpdated) -> None:
        if message.watched:
            self.sessions[message.name] = message.session
            self.session_order.setdefault(message.name, message.order)
            self.sessions = dict(sorted(self.sessions.items(), key=lambda kv: self.session_order.get(kv[0], 0)))
        else:
            self.sessions.pop(message.name, None)
            self.session_order.pop(message.name, None)
            self.drives.pop(message.name, None)
        if message.retries is None:
            self.retries.pop(message.name, None)
        else:
            self.retries[message.name] = message.retries
        self.update_drives()

    def on_drives_updated(self, message: DrivesUpdated) -> None:
        if message.drives:
            self.drives[message.session] = message.drives
        else:
            self.drives.pop(message.session, None)
        self.update_drives()
        for screen in self.app.screen_stack:
            if isinstance(screen, PlanDialog) and screen.is_mounted:
                screen.revalidate()  # the plan is re-built from the chain as QEMU has it now

    PROGRESS_INTERVAL = 0.15  # progress is redrawn at most this often (state changes at once): every 0.2 s poll tick

    def on_jobs_updated(self, message: JobsUpdated) -> None:
        self.jobs = message.jobs
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
        counts: dict[tuple[str, str], int] = {}
        for job in self.jobs:
            if job.drive and job.running:
                counts[(job.session, job.drive)] = counts.get((job.session, job.drive), 0) + 1
        panel = self.query_one("#drives", DrivesPanel)
        drives = {name: list(d) for name, d in self.drives.items()}
        panel.show(list(self.sessions.values()), drives, counts, self.retries)
        graph = self.query_one("#graph", ChainGraph)
        graph.set_drive(self.selected_drive())
        if graph.drive is not None:  # a QEMU lost or back: said on the chain as well
            self._chain_title(graph.drive)
        self._update_title()
        self._refresh_keys()

    def update_jobs(self) -> None:
        self._jobs_drawn = time.monotonic()
        jobs = list(self.jobs)
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
        running = sum(1 for j in self.jobs if j.running)
        # a VM's root that no device uses (a chain left open before chaintui came) is not one of its drives
        loose = [d for name in self.sessions for d in self.drives.get(name, ()) if unattached(d, self.drives[name])]
        drives = sum(len(self.drives.get(name, ())) for name in self.sessions) - len(loose)
        down = sum(1 for s in self.sessions.values() if not s.connected)
        title = f"{len(self.sessions)} QEMU" + (f" ({down} not connected)" if down else "")
        title += f" · {count(drives, 'drive')}" + (f" (+{len(loose)} detached)" if loose else "")
        title += f" · {count(running, 'job')}"
        if self.sub_title != title:
            self.sub_title = title

    def _refresh_keys(self) -> None:
        """Re-check the footer only when what decides it changed (rebuilding it is costly)."""
        state = (self.selected_drive() is not None, bool(self.jobs))
        if state != getattr(self, "_keys_state", None):
            self._keys_state = state
            self.refresh_bindings()

    def selected_drive(self) -> Drive | None:
        sel = self.query_one("#drives", DrivesPanel).selected
        if sel is None:
            return None
        for d in self.drives.get(sel[0], ()):
            if d.name == sel[1]:
                return d
        return None

    def on_drives_panel_drive_selected(self, message: DrivesPanel.DriveSelected) -> None:
        self.query_one("#graph", ChainGraph).set_drive(self.selected_drive())
        self._refresh_keys()

    def _chain_title(self, drive: Drive) -> None:
        """The chain box's title: which drive of which QEMU, and whether this is the chain as last seen."""
        sess = self.sessions.get(drive.session)
        title = f"Chain of {drive.name} on {drive.session} · {count(len(drive.images), 'image')}"
        if unattached(drive, self.drives.get(drive.session, ())):
            title += " · detached: no device uses it"
        if sess is not None and not sess.connected:
            title += f" · ✗ {sess.state.value}: as last seen"
        elif any(img.partial for img in drive.images):
            title += " · reading details from QEMU…"
        box = self.query_one("#chain-box")
        if box.border_title != title:
            box.border_title = title

    def on_chain_graph_highlighted(self, message: ChainGraph.Highlighted) -> None:
        img = message.image
        drive = message.graph.drive
        details = self.query_one("#details", DetailsLine)
        box = self.query_one("#chain-box")
        # one line of fixed height, drawn in the graph's frame (widgets/details_line.py)
        if drive is None or img is None:
            details.show("")
            if box.border_title != "Chain":
                box.border_title = "Chain"
            return
        self._chain_title(drive)
        if img.provisional:  # never shown like a name QEMU gave
            details.show(f"[i]{escape(img.filename)}[/i] · unconfirmed: matched from the files QEMU has open · "
                         f"node {escape(img.node_name)}")
        elif img.partial:
            details.show(f"node {escape(img.node_name)} · file name not known yet")
        else:
            backing = f" · backing file: {img.backing_file}" if img.backing_file else " · no backing file"
            details.show(f"[b]{escape(img.filename)}[/b]{escape(backing)}")

    # -- helpers ---------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in DRIVE_ACTIONS:
            return True if self.selected_drive() is not None else None
        if action in JOB_ACTIONS:
            return True if self.jobs else None
        return True

    def _drive_or_say(self) -> Drive | None:
        drive = self.selected_drive()
        if drive is None:
            self.notify("No drive selected", severity="warning")
        elif drive.session not in self.sessions or not self.sessions[drive.session].connected:
            sess = self.sessions.get(drive.session)
            why = f" ({sess.last_error})" if sess is not None and sess.last_error else ""
            self.notify(f"{drive.session} is not connected{why}: nothing was sent", severity="error")
            return None
        elif any(img.partial for img in drive.images):  # file names unknown or unconfirmed: nothing to plan on
            self.notify(f"Still reading the details of {drive.name} from {drive.session}: try again when they are shown",
                        severity="warning")
            return None
        return drive

    def _highlighted_image(self, drive: Drive):  # type: ignore[no-untyped-def]
        return self.query_one("#graph", ChainGraph).highlighted or drive.active

    # -- QEMU processes ----------------------------------------------------
    def action_add_endpoint(self) -> None:
        self.app.push_screen(AddEndpointDialog(), lambda address: address and self.chain_app.add_endpoint(address))

    def action_remove_endpoint(self) -> None:
        sel = self.query_one("#drives", DrivesPanel).selected
        if sel is None or sel[0] not in self.sessions:
            self.notify("No QEMU selected: pick one of its drives in the drives panel", severity="warning")
            return
        name = sel[0]
        ours = [j for j in self.jobs if j.session == name and j.started_by_us and not j.finished]
        body = (
            f"chaintui stops watching [b]{escape(name)}[/b] ({escape(self.sessions[name].address_text)}). "
            "QEMU keeps running; nothing is sent to it."
        )
        if ours:
            body += f"\n{len(ours)} job(s) chaintui started there go on inside QEMU: {escape(', '.join(j.id for j in ours))}."
        self.app.push_screen(
            ConfirmDialog(f"Stop watching {name}?", body, yes="Remove", no="Keep"),
            lambda ok: ok and self.chain_app.remove_endpoint(name),
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
        self.chain_app.refresh_chains()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.chain_app.request_quit()


__all__ = ["MainScreen", "job_name"]
