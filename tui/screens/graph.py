"""The image graph (``g``): every image of every connected QEMU and the files on disk next to them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from ..backend.fmt import count, human_size
from ..backend.image_graph import ImageGraph, drive_keys
from ..keys import graph_bindings, graph_key_line
from ..messages import DrivesUpdated, UsageUpdated
from ..widgets.details_line import DetailsLine
from ..widgets.image_tree import ImageTree, Row, layout

if TYPE_CHECKING:
    from ..app import ChainApp


KEYS = graph_key_line()


def _model(inputs: tuple[Any, ...]) -> tuple[ImageGraph, list[Row]]:
    """The graph and its rows (run in a thread: it reads only ``inputs``)."""
    graph = ImageGraph.build(*inputs)
    return graph, layout(graph)


class GraphScreen(Screen[None]):
    BINDINGS = graph_bindings()
    AUTO_FOCUS = "#image-tree"
    # how a file name is shown (snapshot tests drop their temporary directory)
    path_text: Callable[[str], str] = staticmethod(lambda p: p)

    def __init__(self, drive: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.drive_key = drive
        self._generation = 0  # of the graph asked for last: an older build that ends later is dropped

    @property
    def chain_app(self) -> ChainApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static("", id="graph-summary")
        yield ImageTree(id="image-tree")
        yield DetailsLine("", id="graph-details")
        # a plain line of keys: Textual's Footer costs ~100 ms to build on every push of this screen
        yield Static(KEYS, id="graph-keys")

    def on_mount(self) -> None:
        if self.drive_key is None and self.chain_app.hub.all_drives():
            self.drive_key = self.chain_app.hub.all_drives()[0].key
        self.query_one("#image-tree").border_title = "Images: bases at the root, overlays as branches"
        self.update_graph()
        self.chain_app.usage.scan()

    # -- data ------------------------------------------------------------
    def _drive(self):  # type: ignore[no-untyped-def]
        if self.drive_key is None:
            return None
        for d in self.chain_app.hub.drives.get(self.drive_key[0], []):
            if d.name == self.drive_key[1]:
                return d
        return None

    def update_graph(self) -> None:
        """The first picture at once; later ones (chains changed, a scan ended) are built in a thread,
        the newest wins: a 1000-image model takes ~45 ms, too long to hold the keys up."""
        usage = self.chain_app.usage
        tree = self.query_one("#image-tree", ImageTree)
        self._generation += 1
        if not tree.rows:
            path = self._path()
            tree.set_graph(usage.graph(), path, usage.leftovers, focus_key=path[-1] if path else None)
            self._summary()
            return
        self.run_worker(self._rebuild(self._generation, usage.graph_inputs()), group="graph", exit_on_error=False)

    async def _rebuild(self, generation: int, inputs: tuple[Any, ...]) -> None:
        graph, rows = await asyncio.to_thread(_model, inputs)
        if generation == self._generation and self.is_mounted:  # the drive followed now, the leftovers known now
            tree = self.query_one("#image-tree", ImageTree)
            tree.set_graph(graph, self._path(), self.chain_app.usage.leftovers, rows=rows)
            self._summary()

    def _path(self) -> list[str]:
        """The chain of the drive whose chain is highlighted (none when no drive is)."""
        drive = self._drive()
        return drive_keys(drive) if drive is not None else []

    def _summary(self) -> None:
        usage = self.chain_app.usage
        tree = self.query_one("#image-tree", ImageTree)
        nodes = tree.graph.nodes.values()
        live = sum(1 for n in nodes if n.live_now)
        last_seen = sum(1 for n in nodes if n.live and not n.live_now)
        disk_only = sum(1 for n in nodes if not n.in_use)
        drive = self._drive()
        sel = f"[b]{escape(drive.name)}[/b] on {escape(drive.session)}" if drive else "no drive (enter picks one)"
        scan = usage.state.text + (" · [b]x[/b] cancels" if usage.state.running else "")
        self.query_one("#graph-summary", Static).update(
            f"{len(tree.rows)} images · {live} live" + (f" · {last_seen} as last seen (QEMU not connected)" if last_seen else "")
            + f" · {disk_only} on disk only · chain of {sel}\n"
            f"[dim]on disk: {escape(scan)}[/dim]"
        )

    def on_drives_updated(self, message: DrivesUpdated) -> None:
        self.update_graph()
        self.chain_app.usage.scan()  # a new file or directory in a chain: read it (the rest is cached)

    def on_usage_updated(self, message: UsageUpdated) -> None:
        if self.chain_app.usage.state.running:
            self._summary()
        else:
            self.update_graph()

    def on_image_tree_highlighted(self, message: ImageTree.Highlighted) -> None:
        details = self.query_one("#graph-details", DetailsLine)
        key = message.key
        graph = message.tree.graph
        if key is None or key not in graph.nodes:
            details.show("")
            return
        node = graph.nodes[key]
        name = self.path_text(key) if key.startswith("/") else f"{node.label} (no file name)"
        size = f"{node.format} · {human_size(node.virtual_size)} · {human_size(node.actual_size)} used"
        users = graph.describe(key)
        left = self.chain_app.usage.leftovers.get(key)
        if left and not node.in_use:
            users = left
        kids = node.children
        on_disk = [c for c in kids if not graph.nodes[c].in_use]
        backing = graph.nodes[node.backing].label if node.backing in graph.nodes else (
            os.path.basename(node.backing) + " (not scanned)" if node.backing else "none")
        overlays = (f"{count(len(kids), 'overlay')} ({len(on_disk)} on disk only)"
                    if kids else "no overlays")
        details.show(
            f"[b]{escape(name)}[/b] · {escape(size)}\n"
            f"used by: {escape(users)} · backing file: {escape(backing)} · {overlays}"
        )

    # -- actions ---------------------------------------------------------
    def action_close(self) -> None:
        self.dismiss(None)

    def action_follow(self) -> None:
        """Highlight the chain of the drive using the image under the cursor."""
        tree = self.query_one("#image-tree", ImageTree)
        key = tree.highlighted
        if key is None:
            return
        live = tree.graph.users(key)
        if not live:
            others = ", ".join(o.text for o in tree.graph.nodes[key].others)  # domains not opened here
            self.notify(f"No drive shown here uses this image{f' ({others})' if others else ''}: nothing to highlight",
                        severity="information")
            return
        keys = [(u.session, u.drive) for u in live]
        nxt = keys[(keys.index(self.drive_key) + 1) % len(keys)] if self.drive_key in keys else keys[0]
        self.drive_key = nxt
        tree.set_path(self._path())
        self._summary()

    def action_rescan(self) -> None:
        if self.chain_app.usage.state.running:
            self.notify("A scan is running already", severity="information")
            return
        self.chain_app.usage.scan()
        self._summary()

    def action_cancel_scan(self) -> None:
        if self.chain_app.usage.cancel_scan():
            self.notify("Scan cancelled: the on-disk part of the graph is incomplete", severity="warning")
        else:
            self.notify("No scan is running", severity="information")

    def action_cleanup(self) -> None:
        self.chain_app.cleanup()

    def action_quit(self) -> None:
        self.chain_app.request_quit()
