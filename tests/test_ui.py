"""Every keystroke path of the UI, driven by Pilot against real QEMU.

Each test checks the resulting chain through QMP and, where a job ran, the
data with qemu-img compare once QEMU has closed the images.
"""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.geometry import Region
from textual.widgets import Input

from tui.screens.help import HelpScreen
from tui.widgets import JobsPanel

from .uihelp import (
    ConfirmDialog,
    MiB,
    chain,
    chain_in_ui,
    checked,
    dialog,
    graph,
    highlight,
    job,
    main,
    press,
    problem,
    running_app,
    same,
    start_lab,
    until,
)


async def test_keys_move_along_the_chain(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        g = graph(app)
        assert g.highlighted.label == "D.qcow2"  # the active image first
        await press(pilot, "home")
        assert g.highlighted.label == "A.qcow2"
        await press(pilot, "down", "j")
        assert g.highlighted.label == "C.qcow2"
        await press(pilot, "k")
        assert g.highlighted.label == "B.qcow2"
        await press(pilot, "end")
        assert g.highlighted.label == "D.qcow2"
        details = str(main(app).query_one("#details").render())
        assert str(paths[-1]) in details and "C.qcow2" in details
        await press(pilot, "tab")
        assert isinstance(app.focused, JobsPanel)
        await press(pilot, "shift+tab", "shift+tab")
        assert app.focused.id == "drives"


def painted(widget) -> list[str]:  # type: ignore[no-untyped-def]
    """The widget's lines as the screen has them (through Textual's line caches, as a frame draws them)."""
    return [strip.text for strip in widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))]


async def test_details_line_follows_the_highlight(lab):
    """Up through a chain taller than the graph: after each key the details line names the highlighted
    image, and the graph as painted has one cursor box, on that image (only the boxes that changed are
    repainted while the view does not scroll, the whole view when it does)."""
    paths, ref, q = start_lab(lab, n=12, size=16 * MiB)
    async with running_app([str(q.qmp)]) as (app, pilot):
        g = graph(app)
        details = main(app).query_one("#details")
        await until(pilot, lambda: str(paths[-1]) in str(details.render()), what="the active image's details")
        assert g.virtual_size.height > g.size.height  # the view scrolls on the way up
        for i in range(len(paths) - 2, -1, -1):
            await press(pilot, "up")
            img = g.highlighted
            assert img.label == paths[i].name
            await until(pilot, lambda: f"{img.filename} · " in str(details.render()), what=f"details of {img.label}")
            lines = painted(g)
            cursor = [n for n, line in enumerate(lines) if "▶" in line]
            assert len(cursor) == 1 and sum("┏" in line for line in lines) == 1, "\n".join(lines)
            assert f" {img.label} " in lines[cursor[0] - 1] and "┏" in lines[cursor[0] - 1], "\n".join(lines)
        assert "no backing file" in str(details.render())


@pytest.mark.parametrize("kind", ["qsd", "system"])
async def test_merge_with_picked_base(lab, kind):
    async with chain_in_ui(lab, kind=kind) as (app, pilot, paths, q):
        await highlight(pilot, app, "B.qcow2")
        await press(pilot, "s")
        dlg = await dialog(pilot, app)
        preview = str(dlg.query_one("#preview").render())
        assert "[A.qcow2] -> [B.qcow2] -> [C.qcow2] -> [D.qcow2]" in preview
        assert "[A.qcow2] -> [B.qcow2] -> [D.qcow2]" in preview
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "stream-drive0-1"), what="job")
        await until(pilot, lambda: j.finished, what="job end")
        assert j.outcome == "completed"
        assert await chain(app) == ["A.qcow2", "B.qcow2", "D.qcow2"]
        await until(pilot, lambda: [i.label for i in graph(app).drive.images] == ["A.qcow2", "B.qcow2", "D.qcow2"])


async def test_flatten_on_active_image(lab):
    async with chain_in_ui(lab) as (app, pilot, paths, q):
        await press(pilot, "end", "s")
        dlg = await dialog(pilot, app)
        assert "Flatten" in str(dlg.query_one("#intro").render())
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "stream-drive0-1"))
        await until(pilot, lambda: j.finished)
        assert await chain(app) == ["D.qcow2"]


async def test_commit_intermediate(lab):
    async with chain_in_ui(lab) as (app, pilot, paths, q):
        await press(pilot, "home", "c")
        dlg = await dialog(pilot, app)
        # choose the top with the keyboard: focus the select, open it, pick C
        await press(pilot, "shift+tab")
        await press(pilot, "enter", "down", "enter")
        assert dlg.values()["top"] == "C"
        await checked(pilot, dlg)
        assert "[A.qcow2] -> [D.qcow2]" in str(dlg.query_one("#preview").render())
        await press(pilot, "ctrl+s")
        j = await until(pilot, lambda: job(app, "commit-drive0-1"))
        await until(pilot, lambda: j.finished)
        assert j.outcome == "completed"
        assert await chain(app) == ["A.qcow2", "D.qcow2"]


async def test_active_commit_then_finish(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await highlight(pilot, app, "B.qcow2")
        await press(pilot, "c")
        dlg = await dialog(pilot, app)
        assert dlg.title_text.startswith("Commit")
        assert "Active commit: the job goes ready" in str(dlg.query_one("#preview").render())
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "commit-drive0-1"))
        await until(pilot, lambda: j.ready, what="ready")
        q.write(20 * (1 << 20), 65536, 0x4E)
        lab.fill(ref, 20 * (1 << 20), 65536, 0x4E)
        await press(pilot, "f")
        confirm = await dialog(pilot, app, ConfirmDialog)
        assert "switches to the base" in str(confirm.query_one("#confirm-body").render())
        await press(pilot, "enter")
        await until(pilot, lambda: j.finished, what="pivot")
        assert j.outcome == "completed: drive switched to the base"
        assert await chain(app) == ["A.qcow2", "B.qcow2"]
    q.stop()
    same(lab, paths[1], ref)


async def test_mirror_then_finish(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "m")
        dlg = await dialog(pilot, app)
        target = dlg.values()["target"]
        assert target == str(lab.dir / "D-mirror.qcow2")
        assert app.focused is dlg.query_one("#field-target")
        await press(pilot, "enter")  # enter in the target field starts with the defaults
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        await until(pilot, lambda: j.ready, what="ready")
        await press(pilot, "f")
        confirm = await dialog(pilot, app, ConfirmDialog)
        assert target in str(confirm.query_one("#confirm-body").render())
        await press(pilot, "y")
        await until(pilot, lambda: j.finished)
        assert await chain(app) == ["D-mirror.qcow2"]
    q.stop()
    same(lab, target, ref)


async def test_mirror_cancel_after_ready_keeps_source(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "m")
        dlg = await dialog(pilot, app)
        target = dlg.values()["target"]
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        await until(pilot, lambda: j.ready)
        await press(pilot, "x")
        confirm = await dialog(pilot, app, ConfirmDialog)
        assert "consistent copy" in str(confirm.query_one("#confirm-body").render())
        await press(pilot, "enter")
        await until(pilot, lambda: j.finished)
        assert j.outcome.startswith("cancelled after ready")
        assert await chain(app) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
    q.stop()
    same(lab, paths[-1], ref)
    same(lab, target, ref)


async def test_copy_snapshot_and_stream(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "y")
        dlg = await dialog(pilot, app)
        target = dlg.values()["target"]
        assert dlg.values()["method"] == "stream"
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "copy-drive0-1"))
        await until(pilot, lambda: j.finished)
        assert await chain(app) == ["D-copy.qcow2"]
    q.stop()
    same(lab, target, ref)
    same(lab, paths[-1], ref)


async def test_copy_full_mirror_raw(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "y")
        dlg = await dialog(pilot, app)
        dlg.query_one("#field-method").value = "mirror"
        dlg.query_one("#field-format").value = "raw"
        target_input = dlg.query_one("#field-target", Input)
        target_input.value = str(lab.dir / "copy.raw")
        await until(pilot, lambda: "thin provisioning" in str(dlg.query_one("#preview").render()), what="the raw warning")
        target_input.focus()
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "copy-drive0-1"))
        await until(pilot, lambda: j.ready)
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
    q.stop()
    same(lab, lab.dir / "copy.raw", ref)
    same(lab, paths[-1], ref)


async def test_snapshot(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "n")
        dlg = await dialog(pilot, app)
        assert dlg.values()["target"].endswith("D-snap.qcow2")
        await press(pilot, "enter")
        await until(pilot, lambda: [i.label for i in graph(app).drive.images][-1] == "D-snap.qcow2", what="new top")
        assert graph(app).highlighted.label == "D-snap.qcow2"
        q.write(0, 65536, 0x51)
        lab.fill(ref, 0, 65536, 0x51)
    q.stop()
    same(lab, lab.dir / "D-snap.qcow2", ref)


async def test_pause_resume_speed_cancel_dismiss(lab):
    async with chain_in_ui(lab) as (app, pilot, paths, q):
        await press(pilot, "end", "s")
        await dialog(pilot, app)
        await pilot.press(*"64K")
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "stream-drive0-1"))
        await until(pilot, lambda: j.status == "running")
        await press(pilot, "tab")  # to the jobs panel: keys act on the highlighted card
        assert isinstance(app.focused, JobsPanel) and app.focused.highlighted is j
        await press(pilot, "p")
        await until(pilot, lambda: j.paused and j.user_paused, what="paused")
        await press(pilot, "p")
        await until(pilot, lambda: not j.paused, what="resumed")
        await press(pilot, "plus")
        await until(pilot, lambda: j.speed == 128 * 1024, what="doubled")
        await press(pilot, "minus", "minus")
        await until(pilot, lambda: j.speed == 32 * 1024, what="halved twice")
        [info] = await app.hub.sessions[j.session].execute("query-block-jobs")
        assert info["speed"] == 32 * 1024
        await press(pilot, "t")  # the job's raw QMP traffic
        from tui.screens.traffic import TrafficScreen

        traffic = await dialog(pilot, app, TrafficScreen)
        assert any('"execute": "block-stream"' in line for line in traffic.lines)
        assert any('"execute": "block-job-pause"' in line for line in traffic.lines)
        assert any('"event": "JOB_STATUS_CHANGE"' in line and '"paused"' in line for line in traffic.lines)
        await press(pilot, "escape")
        await press(pilot, "d")  # not finished: refused with a reason
        await press(pilot, "x")
        await dialog(pilot, app, ConfirmDialog)
        await press(pilot, "enter")
        await until(pilot, lambda: j.finished)
        assert j.outcome == "cancelled"
        await press(pilot, "d")
        await until(pilot, lambda: app.hub.tracker.get(j.session, j.id) is None, what="dismissed")
        assert not main(app).query_one("#jobs", JobsPanel).order
        assert await chain(app) == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]


async def test_finish_before_ready_says_why(lab):
    async with chain_in_ui(lab) as (app, pilot, paths, q):
        await press(pilot, "end", "s")
        await dialog(pilot, app)
        await pilot.press(*"64K")
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "stream-drive0-1"))
        await press(pilot, "f")
        await until(pilot, lambda: any("is not ready" in m for m, _ in app.notices))
        assert not isinstance(app.screen, ConfirmDialog)
        await app.hub.set_speed(j.session, j.id, 0)
        await until(pilot, lambda: j.finished)


async def test_dialog_validation_before_sending(lab):
    paths, ref, q = start_lab(lab)
    exists = lab.dir / "taken.qcow2"
    exists.write_bytes(b"keep me")
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "m")
        dlg = await dialog(pilot, app)
        field = dlg.query_one("#field-target", Input)
        for value, message in [
            (str(exists), "already exists"),
            (str(lab.dir / "nodir" / "x.qcow2"), "does not exist"),
            ("", "Target path is empty"),
            (str(paths[1]), "an image of its backing chain"),
        ]:
            field.value = value
            await until(pilot, lambda: message in problem(dlg, "target"), what=message)
            assert dlg.query_one("#confirm").disabled
        field.value = str(lab.dir / "ok.qcow2")
        dlg.query_one("#field-speed", Input).value = "fast"
        await until(pilot, lambda: "not a number" in problem(dlg, "speed"), what="speed refused")
        assert problem(dlg, "target") == ""  # only the field at fault is marked
        field.focus()
        await press(pilot, "enter")  # refused: still open
        assert app.screen is dlg
        await press(pilot, "escape")
        assert app.screen is main(app)
        assert not app.hub.tracker.jobs
    assert exists.read_bytes() == b"keep me"
    assert not (lab.dir / "ok.qcow2").exists()


async def test_dialog_result_box_scrolls_at_80x24(lab):
    """At 80x24 the result box (before/after, QMP) is shorter than its text: tab reaches it and scrolls it to the end."""
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)], size=(80, 24)) as (app, pilot):
        await press(pilot, "m")
        dlg = await dialog(pilot, app)
        box, qmp = dlg.query_one("#preview-box"), dlg.query_one("#qmp")
        assert dlg.plan is not None and box.max_scroll_y > 0
        dlg.query_one("#field-speed").focus()
        await press(pilot, "tab")  # the next stop after the last field is the result box
        await until(pilot, lambda: box.has_focus, what="the result box focused")
        screen = dlg.region
        assert screen.contains_region(box.region), "the focused box is scrolled into the dialog's view"
        assert "Before" in str(dlg.query_one("#preview").render())
        await press(pilot, "end")
        await until(pilot, lambda: box.scroll_y == box.max_scroll_y, what="scrolled to the end")
        last_line = qmp.region.bottom - 1
        assert box.content_region.y <= last_line < box.content_region.bottom, "the last QMP line is in the box"
        assert box.has_focus
        await press(pilot, "enter")  # the hint says enter starts: it does from the result box too
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"), what="the mirror started")
        await press(pilot, "tab")
        await press(pilot, "x")
        await press(pilot, "enter")  # cancel it (a target is left, the source is untouched)
        await until(pilot, lambda: j.finished, what="cancelled")
    q.stop()
    same(lab, paths[-1], ref)


async def test_qemu_error_becomes_a_notification(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        # another client starts a job on the drive; the next merge is refused by QEMU itself
        from qemu.qmp import QMPClient

        other = QMPClient("other")
        await other.connect(str(q.spare))
        await other.execute("block-stream", {"job-id": "theirs", "device": "D", "speed": 1024})
        # our model still says idle if we act before the refresh: force that race
        drive = graph(app).drive
        from tui.backend import ops

        app.launch(ops.plan_stream(drive, None, 0, "mine"))
        await until(pilot, lambda: any("is busy" in m for m, _ in app.notices), what="QEMU's error")
        assert any(e.kind == "error" and "is busy" in e.text for e in app.hub.log)
        await other.execute("block-job-cancel", {"device": "theirs"})
        await other.disconnect()
        await until(pilot, lambda: job(app, "theirs").finished)


async def test_quit_asks_while_our_jobs_run(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "end", "s")
        await dialog(pilot, app)
        await pilot.press(*"64K")
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "stream-drive0-1"))
        await press(pilot, "q")
        confirm = await dialog(pilot, app, ConfirmDialog)
        assert "go on inside QEMU" in str(confirm.query_one("#confirm-body").render())
        await press(pilot, "n")
        assert app.is_running and app.screen is main(app)
        await press(pilot, "q", "y")
        await until(pilot, lambda: not app.is_running or app._exit_renderables is not None or app.return_code == 0)
    # the job goes on inside QEMU without chaintui
    from tui.backend.hub import Hub

    hub = Hub()
    s = (await hub.add(str(q.qmp))).name
    await hub.poll(s)
    assert hub.tracker.get(s, j.id).active
    await hub.set_speed(s, j.id, 0)
    await hub.wait_job(s, j.id, lambda x: x.finished)
    await hub.close()
    q.stop()
    same(lab, paths[-1], ref)


async def test_help_and_command_palette(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await press(pilot, "question_mark")
        await dialog(pilot, app, HelpScreen)
        await press(pilot, "escape")
        assert app.screen is main(app)
        await press(pilot, "ctrl+p")
        palette = await dialog(pilot, app, CommandPalette)
        await pilot.press(*"Merge")
        results = palette.query_one(CommandList)

        def merge_highlighted() -> bool:
            index = results.highlighted
            return index is not None and "Merge" in str(results.get_option_at_index(index).prompt)

        await until(pilot, merge_highlighted, what="Merge offered")
        await press(pilot, "enter")
        dlg = await dialog(pilot, app)
        assert dlg.title_text.startswith("Merge")
        await press(pilot, "escape")
        await press(pilot, "l")
        assert not main(app).query_one("#log").display
        await press(pilot, "l")
        assert main(app).query_one("#log").display


async def test_lost_connection_is_shown_and_retried(lab):
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        q.kill()
        drives = main(app).query_one("#drives")
        await until(pilot, lambda: "lost" in str(drives.get_option_at_index(0).prompt), what="lost shown")
        q2 = lab.start(paths[-1], name=q.qmp.stem, named_nodes=True)
        await until(pilot, lambda: "lost" not in str(drives.get_option_at_index(0).prompt), timeout=15, what="back")
        await until(pilot, lambda: graph(app).drive is not None and graph(app).drive.active.label == "D.qcow2")
    q2.stop()


async def test_two_qemus_three_jobs(lab):
    a_paths, a_ref, qa = start_lab(lab, prefix="a")
    b = lab.make_chain(3, 64 * (1 << 20), prefix="b", absolute=True)
    c = lab.make_chain(3, 64 * (1 << 20), prefix="c", absolute=True)
    refs = [lab.flatten(b[-1]), lab.flatten(c[-1])]
    qb = lab.start([b[-1], c[-1]], kind="system", drives=["drive0", "drive1"])
    async with running_app([str(qa.qmp), str(qb.qmp)]) as (app, pilot):
        await until(pilot, lambda: len(app.hub.all_drives()) == 3, what="three drives")
        drives = main(app).query_one("#drives")
        started = []
        for _ in range(3):
            drives.focus()
            await until(pilot, lambda: app.focused is drives, what="the drives list focused")
            sel = drives.selected
            await press(pilot, "tab")  # to the chain graph
            await press(pilot, "end", "s")
            await dialog(pilot, app)
            await pilot.press(*"64K")
            await press(pilot, "enter")
            await until(pilot, lambda: len(app.hub.tracker.jobs) == len(started) + 1)
            started.append(sel)
            drives.focus()
            await press(pilot, "down")
            await until(pilot, lambda: drives.selected != sel or len(started) == 3)
        assert len(set(started)) == 3
        jobs = list(app.hub.tracker.jobs.values())
        await until(pilot, lambda: all(j.status == "running" for j in jobs), what="three running")
        panel = main(app).query_one("#jobs", JobsPanel)
        assert len(panel.order) == 3 and all(panel.text_of(j) for j in jobs)
        for j in jobs:
            await app.hub.set_speed(j.session, j.id, 0)
        await until(pilot, lambda: all(j.finished for j in jobs))
    qa.stop()
    qb.stop()
    same(lab, a_paths[-1], a_ref)
    same(lab, b[-1], refs[0])
    same(lab, c[-1], refs[1])


async def test_theme_switch_repaints_the_chain_graph(lab):
    """The graph caches its lines; a new theme must not leave the old colours on screen."""
    paths, ref, q = start_lab(lab)
    async with running_app([str(q.qmp)]) as (app, pilot):
        g = graph(app)
        before = g.render_line(0)
        colour = g.get_component_rich_style("chain-graph--box").color  # the base's box (the cursor is on the top)
        assert any(s.style and s.style.color == colour for s in before)
        app.theme = "textual-light" if app.theme != "textual-light" else "textual-dark"
        await until(pilot, lambda: g.get_component_rich_style("chain-graph--box").color != colour, what="new theme")
        after = g.render_line(0)
        now = g.get_component_rich_style("chain-graph--box").color
        assert any(s.style and s.style.color == now for s in after)
        assert not any(s.style and s.style.color == colour for s in after)
    q.stop()
