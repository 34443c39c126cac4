"""A file picker for targets: directories and disk images only."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DirectoryTree, Label, Static

from ..backend.targets import IMAGE_SUFFIXES


class ImageTree(DirectoryTree):
    def filter_paths(self, paths: Iterable[Path]) -> Iterable[Path]:
        return [p for p in paths if not p.name.startswith(".") and (p.is_dir() or p.name.lower().endswith(IMAGE_SUFFIXES))]


class PickerScreen(ModalScreen[str | None]):
    """`enter` on an image picks it; `d` picks the highlighted directory; `escape` closes."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("d", "use_directory", "Use this directory"),
        Binding("backspace", "up", "Parent directory"),
    ]

    def __init__(self, start: str) -> None:
        super().__init__()
        start = os.path.abspath(os.path.expanduser(start or "."))
        while start and not os.path.isdir(start):
            start = os.path.dirname(start)
        self.start = start or "/"

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label("Pick a target: enter picks an image · d uses the highlighted directory · "
                        "backspace goes up · escape closes", id="dialog-title")
            yield ImageTree(self.start, id="picker-tree")
            yield Static(self.start, id="picker-path", classes="hint")

    def on_directory_tree_file_selected(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        self.dismiss(str(event.path))

    def on_tree_node_highlighted(self, event) -> None:  # type: ignore[no-untyped-def]
        data = getattr(event.node, "data", None)
        if data is not None:
            self.query_one("#picker-path", Static).update(str(data.path))

    def action_use_directory(self) -> None:
        tree = self.query_one(ImageTree)
        node = tree.cursor_node
        path = Path(node.data.path) if node is not None and node.data is not None else Path(self.start)
        self.dismiss(str(path if path.is_dir() else path.parent) + os.sep)

    def action_up(self) -> None:
        tree = self.query_one(ImageTree)
        parent = os.path.dirname(str(tree.path).rstrip(os.sep)) or "/"
        tree.path = parent
        self.query_one("#picker-path", Static).update(parent)

    def action_close(self) -> None:
        self.dismiss(None)
