"""Provisional file names for a big graph's first picture (tui.backend.disk_names).

Unit tests of the matching rules (anything but one plain chain on each side gives nothing),
the qcow2 header reader on files qemu-img made, and real qemu-storage-daemon: the names read
from the files it has open appear first, marked unconfirmed, and QEMU's own answer replaces them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tui.app import ChainApp
from tui.backend import disk_names
from tui.backend.chain import Drive, Image, NodeInfoCache
from tui.backend.changes import DrivesChanged
from tui.backend.disk_names import file_chain, match_names, node_chain, qcow2_backing, read_open_images
from tui.backend.hub import Hub
from tui.backend.session import QemuSession
from tui.widgets import ChainGraph

from .conftest import connect, wait_for
from .uihelp import FIXED_CLOCK, main, press, record_notices, until

MiB = 1 << 20
BIG = 60  # images: 120 nodes, above BIG_GRAPH, so the first picture is a sketch


# -- the rules, on made-up answers ----------------------------------------------
def graph(n: int, *, backend: bool = True, bottom_proto: bool = False) -> dict:
    """x-debug-query-block-graph of one chain n0 (bottom) .. n{n-1} (top), each over a file node."""
    nodes, edges = [], []
    for i in range(n):
        nodes.append({"id": 10 * i, "type": "block-driver", "name": f"n{i}"})
        if not (bottom_proto and i == 0):
            nodes.append({"id": 10 * i + 1, "type": "block-driver", "name": f"#p{i}"})
            edges.append({"parent": 10 * i, "child": 10 * i + 1, "name": "file"})
        if i:
            edges.append({"parent": 10 * i, "child": 10 * (i - 1), "name": "backing"})
    if backend:
        nodes.append({"id": 99999, "type": "block-backend", "name": "drive0"})
        edges.append({"parent": 99999, "child": 10 * (n - 1), "name": "root"})
    return {"nodes": nodes, "edges": edges}


def files(n: int, where: str = "/d") -> dict[str, str | None]:
    """Open qcow2 files i0 .. i{n-1}, each recording the one below by its bare name."""
    return {f"{where}/i{i}.qcow2": (f"i{i - 1}.qcow2" if i else None) for i in range(n)}


def test_one_chain_each_side_matches_bottom_to_top():
    assert match_names(graph(3), files(3), {"/var/log/qemu.log"}) == {
        "n0": "/d/i0.qcow2", "n1": "/d/i1.qcow2", "n2": "/d/i2.qcow2"}
    assert node_chain(graph(3, backend=False)) == ["n0", "n1", "n2"]
    assert node_chain(graph(2, bottom_proto=True)) == ["n0", "n1"]  # a raw base opened as a bare file node


def test_backing_strings_resolve_as_qemu_does():
    qcow2 = {"/d/a/top.qcow2": "../b/mid.qcow2", "/d/b/mid.qcow2": "/d/c/base.qcow2", "/d/c/base.qcow2": None}
    assert file_chain(qcow2, set()) == ["/d/c/base.qcow2", "/d/b/mid.qcow2", "/d/a/top.qcow2"]
    # a raw base: an open file that is not qcow2, named as a backing file
    assert file_chain({"/d/top.qcow2": "base.raw"}, {"/d/base.raw", "/d/log"}) == ["/d/base.raw", "/d/top.qcow2"]


@pytest.mark.parametrize("qcow2, other", [
    ({"/d/a.qcow2": None, "/d/b.qcow2": None}, set()),  # two chains (two tops)
    ({"/d/a.qcow2": "base.qcow2", "/d/b.qcow2": "base.qcow2", "/d/base.qcow2": None}, set()),  # a tree
    ({"/d/top.qcow2": "gone.qcow2"}, set()),  # backing file not open (or open under another name)
    ({"/d/top.qcow2": "nbd://host/export"}, set()),
    ({"/d/top.qcow2": 'json:{"driver": "file"}'}, set()),
    ({"/d/a.qcow2": "b.qcow2", "/d/b.qcow2": "a.qcow2"}, set()),  # a loop
    ({"/d/a.qcow2": "b.qcow2", "/d/b.qcow2": "a.qcow2", "/d/top.qcow2": "x.raw"}, {"/d/x.raw"}),  # a loop beside
    ({}, set()),
])
def test_files_that_are_not_one_chain_give_nothing(qcow2, other):
    assert file_chain(qcow2, other) is None


def test_graphs_that_are_not_one_chain_give_nothing():
    two = graph(2)
    two["nodes"].append({"id": 500, "type": "block-driver", "name": "other"})  # a second drive
    job = graph(2)
    job["nodes"].append({"id": 600, "type": "block-job", "name": "job0"})
    data_file = graph(2)
    data_file["nodes"].append({"id": 700, "type": "block-driver", "name": "#data"})
    data_file["edges"].append({"parent": 10, "child": 700, "name": "data-file"})
    shared = graph(2)  # two overlays on one base
    shared["nodes"].append({"id": 800, "type": "block-driver", "name": "overlay2"})
    shared["edges"].append({"parent": 800, "child": 0, "name": "backing"})
    filtered = graph(2, backend=False)  # a filter above the top: its file child is not a bare file
    filtered["nodes"].append({"id": 900, "type": "block-driver", "name": "cor"})
    filtered["edges"].append({"parent": 900, "child": 10, "name": "file"})
    for g in (two, job, data_file, shared, filtered, {"nodes": [], "edges": []}):
        assert node_chain(g) is None
        assert match_names(g, files(2), set()) is None


def test_a_different_length_gives_nothing():
    assert match_names(graph(3), files(4), set()) is None
    assert match_names(graph(4), files(3), set()) is None


def test_names_go_only_to_images_still_being_read():
    sketch = Image("n1", "n1", "?", 0, None, None, False, partial=True)
    known = Image("n0", "/d/i0.qcow2", "qcow2", MiB, 0, None, True)
    d = Drive("s", "drive0", "n1", False, [known, sketch], "n1")
    disk_names.with_names([d], {"n0": "/elsewhere/x.qcow2", "n1": "/d/i1.qcow2"})
    assert d.images[0] == known
    assert d.images[1].filename == "/d/i1.qcow2" and d.images[1].provisional and d.images[1].partial
    assert d.images[1].label == "i1.qcow2"


# -- headers and /proc, on real files ------------------------------------------
@pytest.mark.qemu
def test_header_and_open_files_of_a_process(tmp_path: Path):
    for name, args in (("base.qcow2", []), ("top.qcow2", ["-b", "base.qcow2", "-F", "qcow2"])):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *args, name, "1M"], cwd=tmp_path, check=True)
    (tmp_path / "notes.txt").write_text("not an image")
    with open(tmp_path / "top.qcow2", "rb") as f:
        head = f.read(64)
        assert qcow2_backing(head, lambda o, n: os.pread(f.fileno(), n, o)) == (True, "base.qcow2")
    assert qcow2_backing(b"plain text, no magic", lambda o, n: b"") == (False, None)
    held = [open(tmp_path / n, "rb") for n in ("base.qcow2", "top.qcow2", "notes.txt")]
    try:
        qcow2, other = read_open_images(os.getpid())
    finally:
        for f in held:
            f.close()
    real = str(tmp_path.resolve())
    assert qcow2[f"{real}/top.qcow2"] == "base.qcow2" and qcow2[f"{real}/base.qcow2"] is None
    assert f"{real}/notes.txt" in other
    assert read_open_images(2 ** 22 + 1) is None  # no such process


# -- real qemu-storage-daemon ------------------------------------------------------
@pytest.mark.parametrize("kind", ["qsd", "system"])
async def test_sketch_names_from_open_files_then_qemus_own(lab, kind):
    paths = lab.make_chain(BIG, 16 * MiB, prefix="deep-", data=False)
    q = lab.start(paths[-1], kind=kind)
    sess = QemuSession(str(q.qmp), reconnect=False)
    await sess.start()
    try:
        assert sess.peer_pid == q.proc.pid
        cache = NodeInfoCache()
        [sketch], _ = await sess.read_drives(cache)
        assert all(i.partial and i.provisional for i in sketch.images)
        assert [i.filename for i in sketch.images] == [str(p.resolve()) for p in paths]
        [full], _ = await sess.read_drives(cache)  # now QEMU's query-named-block-nodes
        assert not any(i.partial or i.provisional for i in full.images)
        assert [i.node_name for i in full.images] == [i.node_name for i in sketch.images]
        assert [i.label for i in full.images] == [p.name for p in paths]
        assert full.active.backing_file == paths[-2].name
    finally:
        await sess.close()
        q.stop()


async def test_two_chains_in_one_qemu_get_no_guess(lab):
    tops = [lab.make_chain(BIG // 2, 16 * MiB, prefix=f"{p}-", data=False)[-1] for p in ("a", "b")]
    q = lab.start(tops)
    sess = QemuSession(str(q.qmp), reconnect=False)
    await sess.start()
    try:
        drives, _ = await sess.read_drives(NodeInfoCache())
        assert len(drives) == 2
        images = [i for d in drives for i in d.images]
        assert all(i.partial for i in images) and not any(i.provisional for i in images)
        assert all(i.filename == i.node_name for i in images)  # nothing but what the structure says
    finally:
        await sess.close()
        q.stop()


async def test_screen_marks_names_unconfirmed_until_qemu_answers(lab):
    """QEMU is stopped (SIGSTOP) right after the sketch is read, so the sketch stays on screen until
    it is let go: what the operator sees meanwhile is checked on state, with no race."""
    paths = lab.make_chain(BIG, 16 * MiB, prefix="deep-", data=False)
    q = lab.start(paths[-1])
    hub = Hub(poll_interval=0.05)
    stopped: list[int] = []

    def stop_after_sketch(change) -> None:  # runs inside the hub's refresh, before the next query is sent
        if isinstance(change, DrivesChanged) and not stopped:
            if any(i.provisional for d in hub.drives.get(change.session, []) for i in d.images):
                os.kill(q.proc.pid, signal.SIGSTOP)
                stopped.append(q.proc.pid)

    hub.subscribe(stop_after_sketch)
    app = ChainApp([str(q.qmp)], hub=hub, clock=FIXED_CLOCK)
    record_notices(app)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            g = main(app).query_one("#graph", ChainGraph)
            details = main(app).query_one("#details")
            await until(pilot, lambda: g.drive is not None and stopped, what="the sketch")
            assert g.highlighted.label == paths[-1].name and g.highlighted.provisional
            await until(pilot, lambda: "unconfirmed" in str(details.render()), what="the details line")
            assert str(paths[-1].resolve()) in str(details.render())
            shown = lambda: [g.render_line(y).text for y in range(g.size.height)]  # noqa: E731
            await until(pilot, lambda: any(paths[-1].name in ln for ln in shown()), what="the active image in view")
            lines = shown()
            assert any("file name unconfirmed" in ln for ln in lines) and not any("qcow2 · 16.0 MiB" in ln for ln in lines)
            assert "reading details" in str(main(app).query_one("#chain-box").border_title)
            # nothing is planned on names QEMU has not confirmed
            await press(pilot, "s")
            await until(pilot, lambda: any("Still reading the details" in m for m, _ in app.notices),
                        what="the refusal")
            assert app.screen is main(app)
            os.kill(q.proc.pid, signal.SIGCONT)
            await until(pilot, lambda: g.drive is not None and not any(i.partial for i in g.drive.images),
                        timeout=60, what="QEMU's answer")
            await until(pilot, lambda: "backing file: " + paths[-2].name in str(details.render()), what="details")
            lines = shown()
            assert not any("unconfirmed" in ln or "reading details" in ln for ln in lines)
            assert any(paths[-1].name in ln for ln in lines) and any("qcow2 · 16.0 MiB" in ln for ln in lines)
            assert "reading details" not in str(main(app).query_one("#chain-box").border_title)
    finally:
        if stopped:
            os.kill(q.proc.pid, signal.SIGCONT)
        q.stop()


async def test_hub_sketch_then_details(lab, hub: Hub):
    """Through the hub: every picture it gives, in order, is provisional first and QEMU's after."""
    paths = lab.make_chain(BIG, 16 * MiB, prefix="deep-", data=False)
    q = lab.start(paths[-1])
    seen: list[list[Image]] = []
    hub.subscribe(lambda c: isinstance(c, DrivesChanged) and seen.append(list(hub.drives[c.session][0].images)))
    s = (await connect(hub, q)).name
    await wait_for(lambda: seen and not any(i.partial for i in seen[-1]), what="details")
    assert all(i.provisional for i in seen[0]) and seen[0][-1].filename == str(paths[-1].resolve())
    assert seen[-1][-1].filename == str(paths[-1].resolve()) and not seen[-1][-1].provisional
    assert hub.node_info[s].sketched
    q.stop()
