"""The application: wires the hub (QEMU side) to the screens.

Backend changes arrive through :meth:`ChainApp.on_hub_change` and go to the
main screen as Textual messages.  Operations and job commands run in workers;
one handler turns any failure into a notification and a log line, so no
traceback reaches the screen.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable
from typing import Any

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.driver import Driver
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from .backend.audit import AuditLog
from .backend.errors import ChainTuiError, ConnectFailed
from .backend.hub import DrivesChanged, Hub, JobsChanged, LogEntry, SessionChanged
from .backend.jobs import Job
from .backend.lab import Lab
from .backend.state import OwnedJobs
from .backend.fmt import clock_text, count, human_size
from .backend.plan import Plan
from .backend.usage import Usage
from .keys import MAIN_KEYS, Key
from .quiet_gc import CHECK_EVERY, QuietCollector
from .messages import DrivesUpdated, JobsUpdated, LogAppended, SessionUpdated, UsageUpdated
from .screens.dialogs import ConfirmDialog
from .screens.main import MainScreen

log = logging.getLogger(__name__)


class ChainApp(App[int]):
    TITLE = "chaintui"
    CSS_PATH = "app.tcss"

    def __init__(
        self,
        sockets: list[str | tuple[str, str | None]],
        *,
        lab: Lab | None = None,
        hub: Hub | None = None,
        clock: Callable[[float], str] | None = None,
        watch_css: bool = False,
        keymap: dict[str, str] | None = None,
    ) -> None:
        super().__init__(watch_css=watch_css)
        self.sockets = list(sockets)
        self.lab = lab
        self.hub = hub or Hub(audit=AuditLog(), owned=OwnedJobs())
        self.clock = clock or clock_text
        self.collector = QuietCollector()  # full garbage collections when no key comes
        self.main_screen: MainScreen | None = None
        self.usage = Usage(self.hub, _image_dirs())
        self.usage.subscribe(self._on_usage_change)
        # binding id (tui/keys.py) -> keys, from config.toml's [keymap]
        self.keymap = dict(_keymap() if keymap is None else keymap)
        if self.keymap:
            self.set_keymap(self.keymap)

    def get_driver_class(self) -> type[Driver]:
        """Textual's terminal driver, with an input thread that sleeps at idle (see :mod:`tui.driver`)."""
        driver = super().get_driver_class()
        if (driver.__module__, driver.__name__) == ("textual.drivers.linux_driver", "LinuxDriver"):
            from .driver import QuietLinuxDriver  # noqa: PLC0415 - Linux/macOS only (termios)

            return QuietLinuxDriver
        return driver

    # -- wiring ----------------------------------------------------------
    def on_mount(self) -> None:
        # Everything built so far lives as long as the app: keep it out of the
        # garbage collector's full passes, which otherwise stall the screen now and then.
        gc.collect()
        gc.freeze()
        self.hub.subscribe(self.on_hub_change)
        self.main_screen = MainScreen()
        self.push_screen(self.main_screen)
        # the main screen's widgets too, once they exist: a full pass over them took 20-60 ms,
        # a key typed meanwhile waited that long (typing_bench.py)
        self.call_after_refresh(_freeze_long_lived)
        self.collector.start()
        self.set_interval(CHECK_EVERY, self.collector.tick)
        for sock in self.sockets:
            address, name = sock if isinstance(sock, tuple) else (sock, None)
            self.run_worker(self.hub.connect(address, name), exit_on_error=False, group="connect")

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self.collector.note_input()
        await super().on_event(event)

    def on_hub_change(self, change: Any) -> None:
        """A change of the hub becomes a message carrying what changed, for the main screen (and a dialog on top)."""
        screen = self.main_screen
        if screen is None or not screen.is_mounted:
            return
        if isinstance(change, JobsChanged):
            screen.post_message(self.jobs_updated(change.jobs, change.urgent))
        elif isinstance(change, DrivesChanged):
            message = self.drives_updated(change.session)
            screen.post_message(message)
            if self.screen is not screen:
                self.screen.post_message(self.drives_updated(change.session))
        elif isinstance(change, SessionChanged):
            screen.post_message(self.session_updated(change.session))
        elif isinstance(change, LogEntry):
            screen.post_message(LogAppended(change))

    def jobs_updated(self, changed: Iterable[Job] = (), urgent: bool = True) -> JobsUpdated:
        return JobsUpdated(tuple(self.hub.tracker.ordered()), tuple(changed), urgent)

    def drives_updated(self, session: str) -> DrivesUpdated:
        return DrivesUpdated(session, tuple(self.hub.drives.get(session, ())))

    def session_updated(self, session: Any) -> SessionUpdated:
        names = list(self.hub.sessions)
        watched = self.hub.sessions.get(session.name) is session
        order = names.index(session.name) if watched else len(names)
        return SessionUpdated(session.name, session, watched, self.hub.retries.get(session.name), order)

    def send_snapshot(self, screen: Screen[Any]) -> None:
        """Everything the hub knows now, as messages (a screen that just mounted starts from it)."""
        for session in list(self.hub.sessions.values()):
            screen.post_message(self.session_updated(session))
            screen.post_message(self.drives_updated(session.name))
        screen.post_message(self.jobs_updated())

    def _on_usage_change(self) -> None:
        if self.main_screen is not None and self.screen is not self.main_screen:
            self.screen.post_message(UsageUpdated())

    async def on_unmount(self) -> None:
        self.hub.unsubscribe(self.on_hub_change)
        await self.hub.close()

    # -- actions the screens ask for -------------------------------------
    def launch(self, plan: Plan) -> None:
        async def run() -> None:
            jobs = await self.hub.run_plan(plan)
            what = ", ".join(j.id for j in jobs) or plan.title
            after = plan.after if len(plan.after) <= 100 else "… " + plan.after[-98:]  # a 30-image chain fills a toast
            self.notify(f"{what}: {after}", title=plan.title)

        self.run_worker(run(), exit_on_error=False, group="ops")

    def job_command(self, command: str, job: Job, *args: Any) -> None:
        method = getattr(self.hub, command)

        async def run() -> None:
            result = await method(job.session, job.id, *args)
            if command == "toggle_pause":
                self.notify(f"{job.id} {'paused' if result else 'resumed'}")
            elif command == "set_speed":
                limit = f"{human_size(args[0])}/s" if args[0] else "none"
                self.notify(f"{job.id}: speed limit {limit}")
            elif command == "complete":
                self.notify(f"{job.id}: finishing (pivot)")
            elif command == "cancel":
                self.notify(f"{job.id}: cancelling")
            elif command == "delete_incomplete_target":
                self.notify(f"{job.id}: deleted {result}")
            elif command == "write_blocking":
                self.notify(f"{job.id}: copy mode write-blocking")

        self.run_worker(run(), exit_on_error=False, group="jobs")

    def refresh_chains(self) -> None:
        """Re-read every chain from QEMU (r)."""
        self.run_worker(self.hub.refresh_all(), exit_on_error=False, group="refresh")

    def add_endpoint(self, address: str) -> None:
        async def run() -> None:
            session = await self.hub.add_at_run_time(address)
            self.notify(f"Added {session.name} ({session.address_text})", title="QEMU added")

        self.run_worker(run(), exit_on_error=False, group="add")

    def remove_endpoint(self, name: str) -> None:
        async def run() -> None:
            await self.hub.remove(name)
            self.notify(f"Removed {name}: no longer watched")

        self.run_worker(run(), exit_on_error=False, group="add")

    def dismiss_finished(self, kept: int) -> None:
        """Dismiss every job that completed (D); ``kept`` failed/cancelled/lost ones stay."""

        async def run() -> None:
            gone = await self.hub.dismiss_finished()
            extra = f"; {kept} failed/cancelled/lost kept: dismiss each with d" if kept else ""
            self.notify(f"Dismissed {count(len(gone), 'finished job')}{extra}")

        self.run_worker(run(), exit_on_error=False, group="jobs")

    def open_graph(self, drive: tuple[str, str] | None) -> None:
        from .screens.graph import GraphScreen

        self.push_screen(GraphScreen(drive))

    def cleanup(self) -> None:
        """Offer to delete the images that left a chain; checks and deletion run in workers."""
        from .screens.cleanup import CleanupDialog

        candidates = self.usage.candidates()
        if not candidates:
            self.notify("Nothing to clean up: no image has left a chain since chaintui started", title="Clean up")
            return

        async def run() -> None:
            checked = await self.usage.check(candidates)

            def answer(ok: bool | None) -> None:
                if ok:
                    self.run_worker(delete([c for c in checked if c.deletable]), exit_on_error=False, group="cleanup")

            self.push_screen(CleanupDialog(checked), answer)

        async def delete(chosen) -> None:  # type: ignore[no-untyped-def]
            deleted, refused = await self.usage.delete(chosen)
            freed = human_size(sum(c.size for c in deleted))
            text = f"deleted {count(len(deleted), 'image')}, freed {freed}"
            if refused:
                text += "; kept " + ", ".join(f"{c.path} ({'; '.join(c.reasons)})" for c in refused)
            self.notify(text, title="Clean up", severity="warning" if refused else "information")

        self.run_worker(run(), exit_on_error=False, group="cleanup")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if isinstance(error, ChainTuiError):
            if event.worker.group == "add":
                self.notify(str(error), title="Not added", severity="error", timeout=8)
                return
            if event.worker.group == "connect" and not isinstance(error, ConnectFailed):
                return  # the session shows it, and keeps retrying
            if event.worker.group == "connect":
                self.hub.note(str(error), kind="error")
            self.notify(str(error), title="QEMU said" if "QMPCommandError" in type(error).__name__ else "Not done", severity="error", timeout=8)
        else:
            log.error("internal error", exc_info=error)
            self.hub.note(f"internal error: {type(error).__name__}: {error}", kind="error")
            self.notify(f"Internal error: {type(error).__name__}: {error}", severity="error", timeout=8)

    async def action_quit(self) -> None:
        """ctrl+q (Textual's own quit key) asks too, like q."""
        self.request_quit()

    async def action_help_quit(self) -> None:
        """ctrl+c quits too (asking first while our jobs run), as operators expect."""
        self.request_quit()

    def request_quit(self) -> None:
        # a lost job's QEMU does not answer: nobody can say it still runs (seen: the dialog said a job
        # of a killed QEMU 'still runs' and 'goes on inside QEMU')
        ours = [j for j in self.hub.tracker.jobs.values() if j.started_by_us and j.active and not j.lost]
        if not ours:
            self.exit(0)
            return
        names = ", ".join(j.id for j in ours[:5]) + (" ..." if len(ours) > 5 else "")
        body = (
            f"{len(ours)} job{'s' if len(ours) > 1 else ''} chaintui started still run{'s' if len(ours) == 1 else ''}: "
            f"{names}.\nThey go on inside QEMU after chaintui quits; run chaintui again to see them."
        )
        if self.lab is not None:
            body += "\nThis is the demo: quitting stops its QEMU, and the jobs with it."
        self.push_screen(ConfirmDialog("Quit chaintui?", body, yes="Quit", no="Stay"), lambda ok: ok and self.exit(0))

    # -- command palette -------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own "Keys" panel would list the keys a second time next to our Help
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        if not isinstance(screen, MainScreen):
            return
        for key in MAIN_KEYS:  # tui/keys.py, with the keys as the [keymap] of config.toml moved them
            if key.palette and screen.check_action(key.action, ()):
                yield SystemCommand(
                    f"{key.description} ({self.key_text(key)})", key.tooltip, lambda a=key.action: screen.run_action(a)
                )

    def key_text(self, key: Key) -> str:
        """How the key of a binding is shown now (after the operator's keymap)."""
        mapped = self.keymap.get(key.id)
        if mapped is None:
            return key.key_display or key.key
        return ",".join(self.get_key_display(Binding(k.strip(), key.action)) for k in mapped.split(","))


def _keymap() -> dict[str, str]:
    from .config import ConfigError, load_keymap

    try:
        return load_keymap()
    except ConfigError:
        return {}  # a bare chaintui reports a broken config file already


def _image_dirs() -> list[str]:
    from .config import ConfigError, load_image_dirs

    try:
        return load_image_dirs()
    except ConfigError:
        return []  # a bare chaintui reports a broken config file already


def _freeze_long_lived() -> None:
    """Move what exists now (the app, its main screen) out of the collector's full passes."""
    gc.collect()
    gc.freeze()
