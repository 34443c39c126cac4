"""Every image known, as a tree: bases at the root, overlays as branches.

A Line API widget like :class:`~tui.widgets.chain_graph.ChainGraph`: the tree is
laid out once per update into rows (a few strings each), and only visible rows
are rendered, each strip cached, so a thousand images or a base with two
hundred overlays paint and move their cursor cheaply.

An image with exactly one overlay has it drawn directly below, in the same
column (a long chain stays a straight column instead of running off to the
right); an image with several overlays has them as branches (``├─``/``└─``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from ..backend.fmt import human_size
from ..backend.image_graph import GraphNode, ImageGraph


@dataclass(frozen=True)
class Row:
    key: str
    lead: str  # tree guides before the node's glyph


def layout(graph: ImageGraph) -> list[Row]:
    """The rows of the tree, depth first (loops in broken images are cut)."""
    rows: list[Row] = []
    seen: set[str] = set()
    nodes = graph.nodes
    for root in graph.roots:
        if root in seen:
            continue
        stack: list[tuple[str, str, str]] = [(root, "", "")]
        while stack:
            key, lead, cont = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            rows.append(Row(key, lead))
            kids = [c for c in nodes[key].children if c not in seen]
            if len(kids) == 1:
                stack.append((kids[0], cont, cont))
            elif kids:
                last = len(kids) - 1
                stack.extend(
                    (c, cont + ("└─" if i == last else "├─"), cont + ("  " if i == last else "│ "))
                    for i, c in reversed(list(enumerate(kids)))
                )
    return rows


class ImageTree(ScrollView, can_focus=True):
    """The image tree; posts :class:`ImageTree.Highlighted` as the cursor moves."""

    COMPONENT_CLASSES = {
        "image-tree--guide",
        "image-tree--label",
        "image-tree--path",
        "image-tree--active",
        "image-tree--disk",
        "image-tree--left",
        "image-tree--job",
        "image-tree--meta",
        "image-tree--cursor",
    }
    DEFAULT_CSS = """
    ImageTree { background: $surface; }
    ImageTree > .image-tree--guide { color: $foreground-muted; }
    ImageTree > .image-tree--label { color: $foreground; }
    ImageTree > .image-tree--path { color: $accent; text-style: bold; }
    ImageTree > .image-tree--active { color: $success; text-style: bold; }
    ImageTree > .image-tree--disk { color: $foreground-muted; }
    ImageTree > .image-tree--left { color: $warning; }
    ImageTree > .image-tree--job { color: $warning; text-style: bold; }
    ImageTree > .image-tree--meta { color: $foreground-muted; }
    ImageTree > .image-tree--cursor { background: $accent 35%; }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home", "cursor_first", "First", show=False),
        Binding("end", "cursor_last", "Last", show=False),
        Binding("pageup", "page_up_cursor", "Page up", show=False),
        Binding("pagedown", "page_down_cursor", "Page down", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        def __init__(self, tree: ImageTree, key: str | None) -> None:
            super().__init__()
            self.tree = tree
            self.key = key

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.graph = ImageGraph()
        self.rows: list[Row] = []
        self.path: set[str] = set()  # the selected drive's chain
        self.leftovers: dict[str, str] = {}
        self.empty_text = "No images: connect to a QEMU, or wait for the scan of the image directories."
        self._index: dict[str, int] = {}
        self._cache: dict[tuple[int, bool, int], Strip] = {}
        self._label_w = 20

    # -- data ------------------------------------------------------------
    def set_graph(
        self, graph: ImageGraph, path: list[str] | None = None, leftovers: dict[str, str] | None = None,
        focus_key: str | None = None, rows: list[Row] | None = None,
    ) -> None:
        """Show a graph; the cursor stays on the image it was on (or goes to ``focus_key``).
        ``rows``: the graph's :func:`layout`, when it was made already (in a thread)."""
        keep = focus_key or self.highlighted
        self.graph = graph
        self.rows = rows if rows is not None else layout(graph)
        self._index = {r.key: i for i, r in enumerate(self.rows)}
        self.path = set(path or ())
        self.leftovers = dict(leftovers or {})
        longest = max((len(r.lead) + len(graph.nodes[r.key].label) for r in self.rows), default=10)
        self._label_w = longest + 2
        self._cache.clear()
        index = self._index.get(keep, min(self.cursor, max(0, len(self.rows) - 1))) if keep else 0
        self.set_reactive(ImageTree.cursor, index)
        self._resize_virtual()
        self.refresh()
        self.call_after_refresh(self._scroll_to_cursor)
        self.post_message(self.Highlighted(self, self.highlighted))

    def set_path(self, path: list[str]) -> None:
        """Highlight another drive's chain."""
        self.path = set(path)
        self._cache.clear()
        self.refresh()

    @property
    def highlighted(self) -> str | None:
        if not self.rows:
            return None
        return self.rows[min(self.cursor, len(self.rows) - 1)].key

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(0, max(1, len(self.rows)))  # as wide as the view: no horizontal scroll

    # -- cursor ----------------------------------------------------------
    def move_to(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(index, len(self.rows) - 1))
        if index == self.cursor:
            return
        old = self.cursor
        self.cursor = index
        for k in [k for k in self._cache if k[0] in (old, index)]:
            del self._cache[k]
        self._scroll_to_cursor()
        self.refresh_lines(old, 1)
        self.refresh_lines(index, 1)
        self.post_message(self.Highlighted(self, self.highlighted))

    def select_key(self, key: str) -> None:
        if key in self._index:
            self.move_to(self._index[key])

    def _scroll_to_cursor(self) -> None:
        height = self.scrollable_content_region.height or self.size.height
        if self.cursor < self.scroll_y:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= self.scroll_y + height:
            self.scroll_to(y=max(0, self.cursor - height + 1), animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.move_to(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_to(self.cursor + 1)

    def action_cursor_first(self) -> None:
        self.move_to(0)

    def action_cursor_last(self) -> None:
        self.move_to(len(self.rows) - 1)

    def action_page_up_cursor(self) -> None:
        self.move_to(self.cursor - max(1, self.size.height - 1))

    def action_page_down_cursor(self) -> None:
        self.move_to(self.cursor + max(1, self.size.height - 1))

    def on_resize(self) -> None:
        self._cache.clear()
        self._resize_virtual()

    def on_click(self, event) -> None:  # type: ignore[no-untyped-def]
        self.move_to(int(event.y + self.scroll_y))

    def notify_style_update(self) -> None:
        self._cache.clear()
        super().notify_style_update()

    # -- drawing ---------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if not self.rows:
            if y == 1:
                meta = self.get_component_rich_style("image-tree--meta")
                return Strip([Segment(" " + self.empty_text, meta)]).crop_extend(0, width, base)
            return Strip.blank(width, base)
        if index >= len(self.rows):
            return Strip.blank(width, base)
        key = (index, index == self.cursor, width)
        strip = self._cache.get(key)
        if strip is None:
            segs = self._render_row(index, width)
            if index == self.cursor:
                cur = self.get_component_rich_style("image-tree--cursor")
                segs = [Segment(t, (st or Style()) + cur) for t, st, _ in segs]
                base = base + cur
            strip = Strip(segs).crop_extend(0, width, base)
            self._cache[key] = strip
        return strip

    def _render_row(self, index: int, width: int) -> list[Segment]:
        row = self.rows[index]
        node: GraphNode = self.graph.nodes[row.key]
        st = self.get_component_rich_style
        on_path = row.key in self.path
        left = self.leftovers.get(row.key)
        if node.live and node.active:
            glyph, glyph_style = "●", st("image-tree--active")
        elif node.live or node.others:
            glyph, glyph_style = "●", st("image-tree--label")
        elif node.target_of:
            glyph, glyph_style = "◆", st("image-tree--job")
        else:
            glyph, glyph_style = "○", st("image-tree--disk")
        if on_path:
            glyph_style = st("image-tree--path")
        label_style = st("image-tree--path") if on_path else (
            st("image-tree--label") if node.in_use else st("image-tree--disk"))
        label_w = min(self._label_w, max(16, width * 2 // 5))
        name = node.label
        room = label_w - len(row.lead) - 2
        if len(name) > room:
            name = name[: max(1, room - 1)] + "…"
        segs = [
            Segment(" " + row.lead, st("image-tree--guide")),
            Segment(glyph + " ", glyph_style),
            Segment(name, label_style),
            Segment(" " * max(1, label_w - len(row.lead) - 2 - len(name) + 1), st("image-tree--guide")),
        ]
        used = human_size(node.actual_size) if node.actual_size is not None else "?"
        size = f"{human_size(node.virtual_size):>9} {used:>9} " if node.virtual_size else " " * 20
        fmt = f"{node.format:<6}" if width >= 100 else ""
        segs.append(Segment(f"{fmt}{size}", st("image-tree--meta")))
        if node.live or node.others:
            users = [*node.live, *node.others]  # drives shown live first, then domains not opened here
            if len(users) > 1:
                what = "drives" if not node.others else "users"
                segs.append(Segment(f"{len(users)} {what}: ", st("image-tree--meta")))
            for i, use in enumerate(users[:3]):
                if i:
                    segs.append(Segment(", ", st("image-tree--meta")))
                now = use.active and use.current
                segs.append(Segment(use.text, st("image-tree--active") if now else st("image-tree--label")))
                if use.job:
                    segs.append(Segment(f" ⚙ {use.job}", st("image-tree--job")))
            if len(users) > 3:
                segs.append(Segment(f" +{len(users) - 3} more", st("image-tree--meta")))
        elif node.target_of:
            segs.append(Segment(f"target of job {node.target_of}", st("image-tree--job")))
        elif left:
            segs.append(Segment(left, st("image-tree--left")))
        else:
            segs.append(Segment("on disk only", st("image-tree--disk")))
        if node.on_disk is False and not node.live and not node.others and not node.target_of:
            segs.append(Segment(" (gone)", st("image-tree--meta")))
        return segs
