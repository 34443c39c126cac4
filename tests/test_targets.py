"""Picking mirror and copy targets: completion, the picker, existing images, space,
images other drives use, the format default — Pilot against real QEMU."""

from __future__ import annotations

import os
import subprocess

import pytest
from textual.widgets import Input

from tui.backend.lab import run
from tui.screens.picker import ImageTree, PickerScreen
from tui.widgets.path_input import completions

from .uihelp import MiB, PlanDialog, checked, dialog, job, press, problem, running_app, same, showing, start_lab, until


async def open_mirror(pilot, app):
    await press(pilot, "m")
    return await dialog(pilot, app, PlanDialog)


def test_completions_pure(tmp_path):
    (tmp_path / "disks").mkdir()
    (tmp_path / "vm-old.qcow2").write_bytes(b"")
    (tmp_path / "vm-new.raw").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert completions(f"{tmp_path}/di") == (f"{tmp_path}/disks/", ["disks/"])
    assert completions(f"{tmp_path}/vm-o") == (f"{tmp_path}/vm-old.qcow2", ["vm-old.qcow2"])
    assert completions(f"{tmp_path}/vm") == (f"{tmp_path}/vm-", ["vm-new.raw", "vm-old.qcow2"])
    assert completions(f"{tmp_path}/no")[1] == []  # text files are not offered


async def test_tab_completes_and_shows_the_resolved_path(lab):
    paths, ref, q = start_lab(lab)
    (lab.dir / "disks").mkdir()
    (lab.dir / "disks" / "archive").mkdir()
    async with running_app([str(q.qmp)]) as (app, pilot):
        dlg = await open_mirror(pilot, app)
        field = dlg.query_one("#field-target", Input)
        field.value = f"{lab.dir}/dis"
        field.cursor_position = len(field.value)
        await press(pilot, "tab")  # the directory is read in a thread: wait for its answer
        await until(pilot, lambda: field.value == f"{lab.dir}/disks/", what="completed")
        assert app.focused is field
        await pilot.press(*"ar")
        await press(pilot, "tab")
        await until(pilot, lambda: field.value == f"{lab.dir}/disks/archive/", what="completed again")
        await pilot.press(*"new.qcow2")
        await until(pilot, lambda: f"→ {lab.dir}/disks/archive/new.qcow2" in str(dlg.query_one("#resolved-target").render()),
                    what="the resolved path")
        # several candidates: completed to the common prefix, and listed
        field.value = f"{lab.dir}/"
        field.cursor_position = len(field.value)
        await press(pilot, "tab")
        await until(pilot, lambda: "A.qcow2" in (listed := str(dlg.query_one("#resolved-target").render()))
                    and "disks/" in listed, what="the candidates listed")
        # relative and ~ paths are shown resolved
        field.value = "~/x.qcow2"
        await until(pilot, lambda: f"→ {os.path.expanduser('~')}/x.qcow2" in str(dlg.query_one("#resolved-target").render()),
                    what="~ resolved")
        # nothing to complete: tab moves on
        field.value = f"{lab.dir}/zzz"
        field.cursor_position = len(field.value)
        await press(pilot, "tab")
        await until(pilot, lambda: app.focused is not field, what="tab moves on")
        field.value = f"{lab.dir}/disks/archive/new.qcow2"
        field.focus()
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        await until(pilot, lambda: j.ready)
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
    q.stop()
    same(lab, lab.dir / "disks" / "archive" / "new.qcow2", ref)


async def test_picker_picks_a_directory_and_an_existing_image(lab):
    paths, ref, q = start_lab(lab)
    (lab.dir / "moved").mkdir()
    good = lab.dir / "reuse.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(good), str(64 * MiB)])
    async with running_app([str(q.qmp)]) as (app, pilot):
        dlg = await open_mirror(pilot, app)
        await press(pilot, "ctrl+o")
        picker = await dialog(pilot, app, PickerScreen)
        tree = picker.query_one(ImageTree)
        await until(pilot, lambda: any(str(n.label) == "moved" for n in tree.root.children), what="tree loaded")
        names = [str(n.label) for n in tree.root.children]
        assert "moved" in names and "reuse.qcow2" in names and not any(n.endswith(".log") for n in names)

        async def cursor_to(label: str) -> None:
            tree.focus()
            await press(pilot, "home")
            for _ in range(50):
                if tree.cursor_node is not None and str(tree.cursor_node.label) == label:
                    return
                await press(pilot, "down")
            raise AssertionError(f"{label} not in the picker")

        await cursor_to("moved")
        await press(pilot, "d")  # use this directory: the file name is kept
        await until(pilot, lambda: app.screen is dlg)
        assert dlg.values()["target"] == f"{lab.dir}/moved/D-mirror.qcow2"
        await press(pilot, "ctrl+o")
        picker = await dialog(pilot, app, PickerScreen)
        tree = picker.query_one(ImageTree)
        await until(pilot, lambda: str(tree.path).endswith("moved"), what="picker in moved/")
        await tree.reload()  # done once the tree has read moved/ (empty: nothing shows that it has)
        # the picker opens in the target's directory (moved/, empty): go up, pick the image
        await press(pilot, "backspace")
        await until(pilot, lambda: any(str(n.label) == "reuse.qcow2" for n in tree.root.children), what="parent")
        await cursor_to("reuse.qcow2")
        await press(pilot, "enter")
        await until(pilot, lambda: app.screen is dlg)
        assert dlg.values()["target"] == str(good) and dlg.values()["mode"] == "existing"
        assert not dlg.query_one("#confirm").disabled  # qcow2, 64 MiB: it fits
        dlg.query_one("#field-target").focus()
        await press(pilot, "enter")
        j = await until(pilot, lambda: job(app, "mirror-drive0-1"))
        await until(pilot, lambda: j.ready)
        await press(pilot, "x", "enter")
        await until(pilot, lambda: j.finished)
    q.stop()
    same(lab, good, ref)


async def test_existing_image_refused_when_it_does_not_fit(lab):
    paths, ref, q = start_lab(lab)
    small = lab.dir / "small.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(small), str(32 * MiB)])
    rawfile = lab.dir / "plain.raw"
    run(["qemu-img", "create", "-q", "-f", "raw", str(rawfile), str(64 * MiB)])
    notimage = lab.dir / "junk.img"
    notimage.write_bytes(b"")
    async with running_app([str(q.qmp)]) as (app, pilot):
        dlg = await open_mirror(pilot, app)
        dlg.query_one("#field-mode").value = "existing"
        field = dlg.query_one("#field-target", Input)
        field.value = str(small)
        await showing(pilot, lambda: problem(dlg),
                      f"✗ Target {small} is 32.0 MiB, the drive is 64.0 MiB: a reused image must have the same virtual size")
        field.value = str(rawfile)
        await showing(pilot, lambda: problem(dlg), f"✗ Target {rawfile} is raw, not qcow2: choose format raw or another image")
        dlg.query_one("#field-format").value = "raw"
        await showing(pilot, lambda: problem(dlg), "")
        assert not dlg.query_one("#confirm").disabled
        field.value = str(lab.dir / "absent.qcow2")
        await until(pilot, lambda: "does not exist (\"reuse existing\" needs an existing image)" in problem(dlg), what="absent")
        await press(pilot, "escape")
        assert not app.hub.tracker.jobs


@pytest.fixture
def small_fs(lab):
    mnt = lab.dir / "small-fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


async def test_space_refused_and_tight_warning(lab, small_fs):
    paths = lab.make_chain(2, 64 * MiB, absolute=True, chunk=int(4.5 * MiB))
    q = lab.start(paths[-1], named_nodes=True)
    async with running_app([str(q.qmp)]) as (app, pilot):
        dlg = await open_mirror(pilot, app)
        field = dlg.query_one("#field-target", Input)
        dlg.query_one("#field-format").value = "raw"
        field.value = str(small_fs / "flat.raw")
        await showing(pilot, lambda: problem(dlg), f"✗ Not enough space in {small_fs}: the job writes up to 64.0 MiB, 10.0 MiB is free")
        assert dlg.query_one("#confirm").disabled
        dlg.query_one("#field-format").value = "qcow2"
        await showing(pilot, lambda: problem(dlg), "")
        await checked(pilot, dlg)
        preview = str(dlg.query_one("#preview").render())
        assert "Tight on space" in preview and "of the 10.0 MiB free" in preview
        # sync top only copies the active image: it fits comfortably
        dlg.query_one("#field-sync").value = "top"
        await until(pilot, lambda: "Tight on space" not in str(dlg.query_one("#preview").render()), what="no warning")
        await press(pilot, "escape")
    q.stop()
    assert os.listdir(small_fs) == []


async def test_target_used_by_another_drive_is_refused(lab):
    a = lab.make_chain(3, 16 * MiB, absolute=True)
    b = lab.make_chain(3, 16 * MiB, prefix="other-", absolute=True)
    q = lab.start([a[-1], b[-1]], named_nodes=True)
    async with running_app([str(q.qmp)]) as (app, pilot):
        await until(pilot, lambda: len(app.hub.all_drives()) == 2)
        for key in ("m", "y", "n"):
            await press(pilot, key)
            dlg = await dialog(pilot, app, PlanDialog)
            dlg.query_one("#field-target").value = str(b[1])
            session = next(iter(app.hub.sessions))
            await showing(pilot, lambda: problem(dlg), f"✗ Target {b[1]} is in use by drive1 on {session} (other-B.qcow2); pick a new file")
            await press(pilot, "escape")


async def test_format_default_follows_the_source(lab):
    paths = lab.make_chain(1, 16 * MiB, raw_base=True)
    q = lab.start(paths[-1])
    async with running_app([str(q.qmp)]) as (app, pilot):
        dlg = await open_mirror(pilot, app)
        assert dlg.values()["format"] == "raw" and dlg.values()["target"].endswith("A-mirror.raw")
        assert "thin provisioning" in str(dlg.query_one("#preview").render())
        await press(pilot, "escape")
