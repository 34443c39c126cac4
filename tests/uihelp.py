"""Helpers for driving the real app (Pilot) against real QEMU."""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path

from tui.app import ChainApp
from tui.backend.hub import Hub
from tui.backend.lab import Lab, LabQemu, MiB
from tui.screens.dialogs import ConfirmDialog, PlanDialog
from tui.screens.main import MainScreen
from tui.widgets import ChainGraph

from .conftest import same, wait_for

FIXED_CLOCK = lambda t: "12:00:00"  # noqa: E731 - stable pictures


@asynccontextmanager
async def running_app(sockets: list[str], size=(120, 40), poll=0.05, first_drive_timeout: float = 20.0,
                      wait_for_drive: bool = True):
    app = ChainApp(sockets, hub=Hub(poll_interval=poll), clock=FIXED_CLOCK)
    record_notices(app)
    async with app.run_test(size=size) as pilot:
        if wait_for_drive:
            await until(pilot, lambda: main(app).query_one("#graph", ChainGraph).drive is not None,
                        timeout=first_drive_timeout, what="a drive on screen")
        else:
            await until(pilot, lambda: app.main_screen is not None and app.main_screen.is_mounted, what="the screen")
        yield app, pilot


def record_notices(app: ChainApp) -> None:
    """Keep what the app tells the operator (``app.notices``: message, severity) through its public notify()."""
    app.notices = []  # type: ignore[attr-defined]
    original = app.notify

    def notify(message, *, title="", severity="information", timeout=None, markup=True):  # type: ignore[no-untyped-def]
        app.notices.append((str(message), severity))  # type: ignore[attr-defined]
        return original(message, title=title, severity=severity, timeout=timeout, markup=markup)

    app.notify = notify  # type: ignore[method-assign]


def main(app: ChainApp) -> MainScreen:
    assert app.main_screen is not None
    return app.main_screen


def graph(app: ChainApp) -> ChainGraph:
    return main(app).query_one("#graph", ChainGraph)


async def until(pilot, predicate, timeout: float = 20.0, what: str = "condition"):
    """:func:`wait_for` with the app running between checks (and widgets that are not there yet)."""

    def value():
        try:
            return predicate()
        except Exception:  # noqa: BLE001 - widgets may not be there yet
            return None

    return await wait_for(value, timeout, what, pause=lambda: pilot.pause(0.03))


async def showing(pilot, read, expected, timeout: float = 20.0) -> None:
    """Wait until ``read()`` gives ``expected`` (a dialog revalidates on a message, not at once)."""
    try:
        await until(pilot, lambda: read() == expected, timeout, what=repr(expected))
    except AssertionError:
        got = read()
        assert got == expected, f"shows {got!r}, not {expected!r}"


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.pause(0.02)


async def dialog(pilot, app, kind=PlanDialog):
    dlg = await until(pilot, lambda: isinstance(app.screen, kind) and app.screen, what=kind.__name__)
    if isinstance(dlg, PlanDialog):
        await checked(pilot, dlg)
    return dlg


async def checked(pilot, dlg: PlanDialog) -> None:
    """Wait until the dialog has checked what its fields hold now (checks run off the UI loop)."""
    await until(pilot, lambda: not dlg.checking and dlg.checked_values == dlg.values(), what="the dialog's check")


def problem(dlg: PlanDialog, field: str = "target") -> str:
    """The problem the dialog shows about ``field``: the result box's ✗ line while that field's label is marked red, else ""."""
    if not dlg.query_one(f"#label-{field}").has_class("-problem"):
        return ""
    return str(dlg.query_one("#problem").render())


async def highlight(pilot, app, label: str) -> None:
    """Move the cursor to an image with the arrow keys, as an operator would."""
    g = graph(app)
    labels = [i.label for i in g.drive.images]
    target = labels.index(label)
    await press(pilot, "end")
    for _ in range(len(labels) - 1 - target):
        await press(pilot, "up")
    assert g.highlighted.label == label


async def chain(app: ChainApp, session: str | None = None, drive: str = "drive0") -> list[str]:
    hub = app.hub
    session = session or next(iter(hub.sessions))
    await hub.refresh(session)
    return [i.label for i in hub.drive(session, drive).images]


def job(app: ChainApp, job_id: str):
    return next(j for j in app.hub.tracker.jobs.values() if j.id == job_id)


def start_lab(lab: Lab, n: int = 4, kind: str = "qsd", prefix: str = "", size: int = 64 * MiB) -> tuple[list[Path], Path, LabQemu]:
    paths = lab.make_chain(n, size, prefix=prefix, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], kind=kind, named_nodes=(kind == "qsd"))
    return paths, ref, q


@asynccontextmanager
async def chain_in_ui(lab: Lab, **kw):  # type: ignore[no-untyped-def]
    """A chain served by QEMU (:func:`start_lab`) and the app on it; afterwards QEMU stops and what
    the guest sees is compared with the copy made first (``qemu-img compare``)."""
    paths, ref, q = start_lab(lab, **kw)
    async with running_app([str(q.qmp)]) as (app, pilot):
        yield app, pilot, paths, q
    q.stop()
    same(lab, paths[-1], ref)


__all__ = ["ConfirmDialog", "PlanDialog", "same"]
