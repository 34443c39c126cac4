"""Pictures of every screen (pytest-textual-snapshot), on real QEMU chains.

A picture must come out the same on every run and every machine, so whatever
would differ is pinned, and each test waits on the state it pictures (never on
a sleep):

- The lab lives in a fresh directory per test, ``/tmp/chaintui-`` plus the 8
  random characters of ``mkdtemp`` plus the test's name, on a tmpfs of its own: sizes "used" do not
  depend on the host's file system, and the random part, always 8 characters
  long, cannot move anything on screen. The picture shows it as ``XXXXXXXX``
  (see :func:`hide_lab_dir`); the app is not told anything.
- The log clock is fixed; text cursors do not blink; notifications stay up
  until the picture is taken.
- Job cards: once the real jobs are in the pictured state, QEMU is stopped
  (SIGSTOP) so nothing it says can change them, the cards get fixed progress,
  and QEMU goes on right after the picture.

Update with `make snapshots` and look at the SVGs before committing them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from rich.console import Console
from rich.segment import Segment
from textual import events
from textual.widgets import Input, Markdown

import tui.app as app_module
import tui.backend.jobs as jobs_module
from tui.app import ChainApp
from tui.backend import ops
from tui.backend.hub import Hub
from tui.backend.lab import Lab
from tui.screens.dialogs import ConfirmDialog, PlanDialog
from tui.screens.help import HelpScreen
from tui.screens.picker import PickerScreen
from tui.screens.traffic import TrafficScreen
from tui.widgets import JobsPanel

from .uihelp import FIXED_CLOCK, MiB, graph, main, problem, record_notices, until

LAB_PARENT = "/tmp"  # not $TMPDIR: the lab's path must have the same length on every machine
LAB_PREFIX = "chaintui-"
PLACEHOLDER = "XXXXXXXX"  # mkdtemp's random part is always 8 characters


def hide_lab_dir(text: str, root: str) -> str:
    """``text`` (the screen, lines apart) with the lab directory's random characters shown as XXXXXXXX.

    Both have the same length, so the layout stays exactly what the app drew. A
    path cut or wrapped inside the random part would leak some of it into the
    picture: that is refused, with the place to fix.
    """
    token = root[-len(PLACEHOLDER):]
    text = text.replace(token, PLACEHOLDER)  # also where the screen shows the path's end only
    cut = re.search(re.escape(LAB_PREFIX) + f"(?!{PLACEHOLDER})", text) or re.search(
        "-(?:" + "|".join(re.escape(token[:k]) for k in range(2, len(token))) + ")[…\n]", text
    )  # cut at its right inside the random part, even with "chaintui" itself out of sight
    # a path cut at its left inside the random part: its last 4-7 characters, then "/" (fewer could be chance)
    tails = [token[i:] + "/" for i in range(1, len(token) - 3) if token[i:] + "/" in text]
    if cut or tails:
        where = text[max(0, cut.start() - 30) : cut.end() + 20] if cut else tails
        raise AssertionError(f"the picture shows part of the per-run lab directory {root}: {where!r}")
    return text


def hide_lab_dir_in(segments: list[Segment], root: str) -> list[Segment]:
    """The same for a recorded screen: text replaced cell for cell, styles and boundaries kept."""
    pieces = ["\n" if seg.control else seg.text for seg in segments]
    text = hide_lab_dir("".join(pieces), root)
    out, pos = [], 0
    for seg, piece in zip(segments, pieces):
        out.append(seg if seg.control else Segment(text[pos : pos + len(piece)], seg.style))
        pos += len(piece)
    return out


def test_hide_lab_dir():
    root = "/tmp/chaintui-ab12cd34"
    assert hide_lab_dir(f"│{root}/t/D.qcow2 …ab12cd34/t/q│", root) == "│/tmp/chaintui-XXXXXXXX/t/D.qcow2 …XXXXXXXX/t/q│"
    for leak in [f"{root[:-3]}…", "…2cd34/t/qsd1.qmp", "/tmp/chaintui-ab1\n2cd34/t", "│ntui-ab…│"]:  # cut inside
        with pytest.raises(AssertionError, match="part of the per-run lab directory"):
            hide_lab_dir(leak, root)


class PictureApp(ChainApp):
    """The real app, with a fixed clock, steady cursors and toasts, whose pictures hide the lab's random name."""

    CSS_PATH = str(Path(app_module.__file__).with_name(ChainApp.CSS_PATH))  # Textual looks next to the subclass

    def __init__(self, lab: PictureLab, sockets: list[str]) -> None:
        super().__init__(sockets, hub=Hub(poll_interval=0.05), clock=FIXED_CLOCK)
        self.picture_lab = lab
        self.after_picture: list[Callable[[], None]] = []
        self.markdown_loaded: set[str | None] = set()

    def on_markdown_table_of_contents_updated(self, event: Markdown.TableOfContentsUpdated) -> None:
        self.markdown_loaded.add(event.markdown.id)  # Markdown says so once all its blocks are mounted

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        if isinstance(event.widget, Input):
            event.widget.cursor_blink = False  # the cursor shows, steadily

    def notify(self, message, *, title="", severity="information", timeout=None, markup=True) -> None:  # type: ignore[no-untyped-def, override]
        super().notify(message, title=title, severity=severity, timeout=3600, markup=markup)

    def export_screenshot(self, *, title: str | None = None, simplify: bool = False) -> str:
        root = str(self.picture_lab.dir.parent)
        export_svg = Console.export_svg

        def hidden(console: Console, **kwargs) -> str:  # type: ignore[no-untyped-def]
            console._record_buffer[:] = hide_lab_dir_in(console._record_buffer, root)
            return export_svg(console, **kwargs)

        try:
            with mock.patch.object(Console, "export_svg", hidden):
                return super().export_screenshot(title=title, simplify=simplify)
        finally:
            while self.after_picture:
                self.after_picture.pop()()


class PictureLab(Lab):
    stopped: list[int]

    def freeze_qemu(self, app: PictureApp) -> None:
        """Stop every QEMU of this lab (SIGSTOP) until the picture is taken."""
        for q in self.processes:
            if q.alive:
                os.kill(q.proc.pid, signal.SIGSTOP)
                self.stopped.append(q.proc.pid)
        app.after_picture.append(self.thaw_qemu)

    def thaw_qemu(self) -> None:
        while self.stopped:
            try:
                os.kill(self.stopped.pop(), signal.SIGCONT)
            except ProcessLookupError:
                pass


@pytest.fixture
def picture_lab(request):
    root = Path(tempfile.mkdtemp(prefix=LAB_PREFIX, dir=LAB_PARENT))
    assert len(root.name) == len(LAB_PREFIX) + len(PLACEHOLDER)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1g,mode=0700", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        root.rmdir()
        pytest.fail(f"the pictures' lab needs a tmpfs of its own (run the tests as root): {mounted.stderr.strip()}",
                    pytrace=False)
    try:
        # the test's name first, as a buffer: a path cut at its left end on screen keeps the random part out of sight
        with PictureLab(root=root / request.node.name) as lab:
            lab.stopped = []
            try:
                yield lab
            finally:
                lab.thaw_qemu()
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def make_app(lab: PictureLab, n: int = 4, drives: int = 1) -> PictureApp:
    tops = []
    for i in range(drives):
        paths = lab.make_chain(n, 64 * MiB, prefix="" if i == 0 else f"vm{i}-", absolute=True, data=n < 20)
        tops.append(paths[-1])
    q = lab.start(tops, named_nodes=True)
    app = PictureApp(lab, [str(q.qmp)])
    record_notices(app)  # what the app told the operator: app.notices
    return app


def session(app: ChainApp) -> str:
    return next(iter(app.hub.sessions))


async def ready(pilot, drives: int = 1) -> None:
    """Every drive read in full (no image still being detailed) and drawn."""
    app = pilot.app

    def done() -> bool:
        d = graph(app).drive
        listed = app.hub.drives.get(session(app), [])
        return d is not None and len(listed) == drives and not any(i.partial for dr in listed for i in dr.images) \
            and not any(i.partial for i in d.images)

    await until(pilot, done, what="chains read in full")
    await app.hub.settle(session(app))
    await pilot.pause()  # messages already posted (drives, log lines) are handled


async def opened(pilot, kind=PlanDialog):
    """The dialog of ``kind`` on top, validated once, its first field focused."""
    app = pilot.app
    dlg = await until(pilot, lambda: isinstance(app.screen, kind) and app.screen.is_mounted and app.screen, what=kind.__name__)
    if kind is PlanDialog:
        await until(pilot, lambda: (dlg.plan or dlg.error) is not None and not dlg.checking and dlg.focused is not None,
                    what="dialog ready")
    return dlg


def pressing(*keys: str, kind=PlanDialog, highlighted: str | None = None):
    """A run_before: wait for the chain, press ``keys``, wait for what they open."""

    async def before(pilot) -> None:
        await ready(pilot)
        await pilot.press(*keys)
        if highlighted is not None:
            await until(pilot, lambda: graph(pilot.app).highlighted.label == highlighted, what=highlighted)
        if kind is not None:
            await opened(pilot, kind)

    return before


async def quiet(pilot) -> None:
    """Once every running job shows on its drive, stop QEMU and let what it said before reach the screen.

    From here on nothing changes by itself.
    """
    app = pilot.app
    hub = app.hub

    def placed() -> bool:
        running = [j for j in hub.tracker.jobs.values() if not j.finished]
        return all(j.drive and j.id in hub.drive(j.session, j.drive).jobs for j in running)

    await until(pilot, placed, what="every running job on its drive")
    await hub.settle(session(app))
    app.picture_lab.freeze_qemu(app)
    await pilot.pause()


def freeze(job, offset: int, length: int, rate: float, history: list[float], status: str | None = None) -> None:
    job.offset, job.length = offset, length
    if status is not None:  # QEMU's unrequested paused/running blips must not show in a picture
        job.status, job.paused, job.ready = status, False, status == "ready"
    job.samples = deque([(0.0, offset - int(rate)), (1.0, offset)], maxlen=64)
    job.rate_history = deque(history, maxlen=40)
    job.version += 1


def card_text(app: ChainApp, job) -> str:
    return main(app).query_one("#jobs", JobsPanel).text_of(job)


async def with_jobs(pilot) -> None:
    """Three real jobs: a throttled stream, a ready mirror, a completed stream."""
    await ready(pilot, drives=2)
    app: PictureApp = pilot.app
    hub = app.hub
    s = session(app)
    d0, d1 = hub.drive(s, "drive0"), hub.drive(s, "drive1")
    [done] = await hub.run_plan(ops.plan_stream(d1, "vm1-B", 0, "stream-drive1-1"))
    await hub.wait_job(s, done.id, lambda j: j.finished)
    await hub.settle(s)
    [stream] = await hub.run_plan(ops.plan_stream(d0, "B", "64K", "stream-drive0-1"))
    d1 = hub.drive(s, "drive1")
    [mirror] = await hub.run_plan(
        ops.plan_mirror(d1, str(Path(d1.active.filename).with_name("vm1-D-mirror.qcow2")), "qcow2", "full", 0, "mirror-drive1-1")
    )
    await hub.wait_job(s, mirror.id, lambda j: j.ready)
    await hub.wait_job(s, stream.id, lambda j: j.status == "running")
    await quiet(pilot)
    freeze(stream, 24 * MiB, 64 * MiB, 2 * MiB, [1, 2, 3, 2, 4, 5, 4, 6, 7, 6, 8, 7], "running")
    freeze(mirror, 64 * MiB, 64 * MiB, 0, [8, 7, 8, 6, 5, 3, 1, 0], "ready")
    freeze(done, 64 * MiB, 64 * MiB, 0, [])
    main(app).post_message(app.jobs_updated())
    log = main(app).query_one("#log")
    log.clear()
    for entry in [e for e in hub.log if e.kind == "action"][:4]:
        log.add(entry)
    await until(pilot, lambda: "24.0 MiB of 64.0 MiB" in card_text(app, stream) and "in sync" in card_text(app, mirror),
                what="the frozen cards")


def test_main_screen_with_jobs(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab, drives=2), terminal_size=(130, 40), run_before=with_jobs)


def test_main_screen_80x24(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab), terminal_size=(80, 24), run_before=ready)


def test_chain_of_200_images(snap_compare, picture_lab):
    before = pressing("up", "up", kind=None, highlighted="img197.qcow2")
    assert snap_compare(make_app(picture_lab, n=200), terminal_size=(100, 34), run_before=before)


def test_chain_of_200_images_home(snap_compare, picture_lab):
    before = pressing("home", "down", kind=None, highlighted="img001.qcow2")
    assert snap_compare(make_app(picture_lab, n=200), terminal_size=(100, 34), run_before=before)


def test_merge_dialog(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab), terminal_size=(110, 40), run_before=pressing("up", "up", "s"))


def test_commit_dialog(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab), terminal_size=(110, 40), run_before=pressing("home", "c"))


def qmp_text(dlg) -> str:
    return str(dlg.query_one("#qmp").render())


def test_mirror_dialog_raw(snap_compare, picture_lab):
    target = str(picture_lab.dir / "D.raw")

    async def before(pilot):
        await ready(pilot)
        await pilot.press("m")
        dlg = await opened(pilot)
        dlg.query_one("#field-format").value = "raw"
        dlg.query_one("#field-target").value = target
        await until(pilot, lambda: f'"target": "{target}"' in qmp_text(dlg) and '"format": "raw"' in qmp_text(dlg),
                    what="the plan for D.raw")

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 44), run_before=before)


def test_mirror_dialog_invalid_target(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        (picture_lab.dir / "taken.qcow2").write_bytes(b"x")
        await pilot.press("m")
        dlg = await opened(pilot)
        dlg.query_one("#field-target").value = str(picture_lab.dir / "taken.qcow2")
        await until(pilot, lambda: "already exists" in problem(dlg, "target"), what="refusal")

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 44), run_before=before)


def test_copy_dialog(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab), terminal_size=(110, 44), run_before=pressing("y"))


def test_snapshot_dialog(snap_compare, picture_lab):
    assert snap_compare(make_app(picture_lab), terminal_size=(110, 36), run_before=pressing("n"))


def test_cancel_confirmation(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        app = pilot.app
        hub = app.hub
        s = session(app)
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive0"), None, "64K", "stream-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.status == "running")
        await quiet(pilot)
        freeze(job, 8 * MiB, 64 * MiB, 64 * 1024, [1, 1, 1], "running")
        main(app).post_message(app.jobs_updated())
        await until(pilot, lambda: "8.0 MiB of 64.0 MiB" in card_text(app, job), what="the frozen card")
        await pilot.press("x")
        await opened(pilot, ConfirmDialog)

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 36), run_before=before)


def test_help_screen(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        await pilot.press("question_mark")
        await opened(pilot, HelpScreen)
        await until(pilot, lambda: "help-text" in pilot.app.markdown_loaded, what="the help text laid out")

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 44), run_before=before)


def test_qemu_error_notification(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        app = pilot.app
        drive = graph(app).drive
        plan = ops.plan_stream(drive, "B", 0, "stream-drive0-1")
        plan.steps[0].arguments["base-node"] = "gone"  # QEMU, not chaintui, refuses this one
        app.launch(plan)
        await until(pilot, lambda: app.notices, what="notification")
        await until(pilot, lambda: any(e.kind == "error" for e in app.hub.log), what="the error logged")
        await pilot.pause()  # the log lines already posted are handled: clearing now is final
        main(app).query_one("#log").clear()

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 32), run_before=before)


def test_job_traffic_screen(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        app = pilot.app
        hub = app.hub
        s = session(app)
        [job] = await hub.run_plan(ops.plan_stream(hub.drive(s, "drive0"), "B", 0, "stream-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.finished)
        # QEMU says everything about a job before it forgets it (query-jobs empty): all events are in
        while await hub.sessions[s].execute("query-jobs"):
            await pilot.pause()
        await hub.settle(s)
        await pilot.pause()
        # the card under the dialog: its last offset is BLOCK_JOB_COMPLETED's or a later query-jobs answer's,
        # whichever came last; the picture shows a fixed one
        freeze(job, 64 * MiB, 64 * MiB, 0, [])
        main(app).post_message(app.jobs_updated())
        await until(pilot, lambda: "100%" in card_text(app, job), what="the frozen card")
        for e in hub.log:  # QEMU's event timestamps: fixed for the picture
            if isinstance(e.data, dict) and "timestamp" in e.data:
                e.data = dict(e.data, timestamp={"seconds": 1795800000, "microseconds": 0})
        # the event log under the dialog: its last lines are QEMU's last events and the chain's new
        # shape, in the order they came (which varies); hidden for the picture
        await pilot.press("l")
        await until(pilot, lambda: not main(app).query_one("#log").display, what="the log hidden")
        await pilot.press("t")
        screen = await opened(pilot, TrafficScreen)
        await until(pilot, lambda: len(screen.query_one("#traffic").lines) >= len(screen.lines), what="traffic shown")

    assert snap_compare(make_app(picture_lab), terminal_size=(116, 30), run_before=before)


def test_not_converging_card(snap_compare, picture_lab, monkeypatch):
    async def before(pilot):
        await ready(pilot)
        app = pilot.app
        hub = app.hub
        s = session(app)
        d = hub.drive(s, "drive0")
        target = str(Path(d.active.filename).with_name("D-mirror.qcow2"))
        [job] = await hub.run_plan(ops.plan_mirror(d, target, "qcow2", "full", "256K", "mirror-drive0-1"))
        await hub.wait_job(s, job.id, lambda j: j.status == "running")
        await quiet(pilot)
        freeze(job, 48 * MiB, 64 * MiB, 256 * 1024, [4, 4, 4, 4, 4, 4], "running")
        job.remaining_samples = deque(
            [(float(t), 40 * MiB + t * 256 * 1024, 56 * MiB + t * 768 * 1024) for t in range(12)], maxlen=400
        )
        job.version += 1
        monkeypatch.setattr(jobs_module, "CONVERGENCE_WINDOW", 10.0)
        main(app).post_message(app.jobs_updated())
        main(app).query_one("#log").clear()
        await until(pilot, lambda: "not converging" in card_text(app, job), what="the flagged card")

    assert snap_compare(make_app(picture_lab), terminal_size=(150, 34), run_before=before)


def test_mirror_dialog_completion(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        (picture_lab.dir / "disks").mkdir()
        (picture_lab.dir / "dist").mkdir()
        await pilot.press("m")
        dlg = await opened(pilot)
        field = dlg.query_one("#field-target")
        field.value = f"{picture_lab.dir}/d"
        field.cursor_position = len(field.value)
        await pilot.press("tab")
        await until(pilot, lambda: "disks/  dist/" in str(dlg.query_one("#resolved-target").render()), what="candidates")

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 46), run_before=before)


def test_target_picker(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        (picture_lab.dir / "archive").mkdir()
        await pilot.press("m")
        await opened(pilot)
        await pilot.press("ctrl+o")
        picker = await opened(pilot, PickerScreen)
        tree = picker.query_one("#picker-tree")
        expected = sorted(["archive", "A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"])
        await until(pilot, lambda: sorted(str(n.label) for n in tree.root.children) == expected, what="the directory read")

    assert snap_compare(make_app(picture_lab), terminal_size=(100, 30), run_before=before)


def test_mirror_dialog_existing_image_refused(snap_compare, picture_lab):
    async def before(pilot):
        await ready(pilot)
        small = picture_lab.dir / "small.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(small), str(32 * MiB)], check=True)
        await pilot.press("m")
        dlg = await opened(pilot)
        dlg.query_one("#field-mode").value = "existing"
        dlg.query_one("#field-target").value = str(small)
        await until(pilot, lambda: "32.0 MiB" in problem(dlg, "target"), what="refusal")

    assert snap_compare(make_app(picture_lab), terminal_size=(110, 46), run_before=before)


def test_mirror_dialog_tight_space(snap_compare, picture_lab):
    mnt = picture_lab.dir / "small-fs"
    mnt.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mnt)], check=True)
    try:
        paths = picture_lab.make_chain(2, 64 * MiB, absolute=True, chunk=int(4.5 * MiB))
        q = picture_lab.start(paths[-1], named_nodes=True)
        app = PictureApp(picture_lab, [str(q.qmp)])

        async def before(pilot):
            await ready(pilot)
            await pilot.press("m")
            dlg = await opened(pilot)
            dlg.query_one("#field-target").value = str(mnt / "B-mirror.qcow2")
            await until(pilot, lambda: "Tight on space" in str(dlg.query_one("#preview").render()), what="warning")

        assert snap_compare(app, terminal_size=(110, 46), run_before=before)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
