"""A picture of the image graph (g): two QEMU sharing a base, overlays on disk, the selected chain.

No temporary path shows: the details line drops the lab directory.
"""

from __future__ import annotations

from pathlib import Path

from tui.app import ChainApp
from tui.backend.hub import Hub
from tui.backend.lab import Lab, run
from tui.screens.graph import GraphScreen
from tui.widgets.image_tree import ImageTree

from .uihelp import FIXED_CLOCK, MiB, graph, until


def shared_app(lab: Lab) -> ChainApp:
    [base] = lab.make_chain(1, 64 * MiB, names=["debian-base"], absolute=True)

    def overlay(name: str, backing: Path) -> Path:
        path = lab.dir / name
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "qcow2", str(path), str(64 * MiB)])
        lab.fill(path, 0, MiB, 0x33)
        return path

    snap1 = overlay("web1-snap1.qcow2", base)
    web1 = overlay("web1-snap2.qcow2", snap1)
    db1 = overlay("db1.qcow2", base)
    old = overlay("old-test-vm.qcow2", base)
    overlay("old-test-vm-snap.qcow2", old)
    q1 = lab.start(web1, name="web1")
    q2 = lab.start(db1, name="db1")
    return ChainApp([str(q1.qmp), str(q2.qmp)], hub=Hub(poll_interval=0.05), clock=FIXED_CLOCK)


def test_graph_screen(snap_compare, tmp_path, monkeypatch):
    with Lab(root=tmp_path / "lab") as lab:
        app = shared_app(lab)
        prefix = str(lab.dir.resolve()) + "/"
        monkeypatch.setattr(GraphScreen, "path_text", staticmethod(lambda p: p.replace(prefix, "…/")))

        async def before(pilot) -> None:
            hub = pilot.app.hub
            await until(pilot, lambda: graph(pilot.app).drive is not None, what="drive")
            await until(pilot, lambda: len(hub.all_drives()) == 2, what="two drives")
            for s in hub.sessions:
                await hub.settle(s)
            await pilot.press("g")
            screen = await until(pilot, lambda: isinstance(pilot.app.screen, GraphScreen) and pilot.app.screen)
            await until(pilot, lambda: screen.chain_app.usage.state.result is not None
                        and not screen.chain_app.usage.state.running, what="scan")
            tree = screen.query_one("#image-tree", ImageTree)

            def shows_cursor() -> bool:  # the details line names the image under the cursor
                key = tree.highlighted
                return key is not None and screen.path_text(key) in str(screen.query_one("#graph-details").render())

            await until(pilot, lambda: tree.rows and tree.cursor > 0 and shows_cursor(), what="tree and details")
            below = tree.cursor
            await pilot.press("up")
            await until(pilot, lambda: tree.cursor == below - 1 and shows_cursor(), what="cursor up, its details")

        assert snap_compare(app, terminal_size=(100, 20), run_before=before)
