"""The backing chain of one drive, drawn as a graph of boxes and arrows.

Bottom image (no backing file) at the top of the widget, the active image at
the end, in the order of the ``[A] -> [B] -> [C] -> [D]`` notation.  It is a
Line API widget: only the visible lines are rendered, each cached, so a chain
of a thousand images scrolls and moves its highlight cheaply.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip

from ..backend.chain import Drive, Image
from ..backend.fmt import human_size
from .line_view import LineView

BLOCK = 4  # lines per image: three for the box, one for the arrow below it
MAX_BOX = 76


class ChainGraph(LineView, can_focus=True):
    """The chain graph; posts :class:`ChainGraph.Highlighted` as the cursor moves."""

    COMPONENT_CLASSES = {
        "chain-graph--box",
        "chain-graph--active",
        "chain-graph--busy",
        "chain-graph--cursor",
        "chain-graph--arrow",
        "chain-graph--meta",
        "chain-graph--tag",
    }
    DEFAULT_CSS = """
    ChainGraph { background: $surface; }
    ChainGraph > .chain-graph--box { color: $foreground; }
    ChainGraph > .chain-graph--active { color: $success; text-style: bold; }
    ChainGraph > .chain-graph--busy { color: $warning; }
    ChainGraph > .chain-graph--cursor { color: $accent; text-style: bold; }
    ChainGraph > .chain-graph--arrow { color: $foreground-muted; }
    ChainGraph > .chain-graph--meta { color: $foreground-muted; }
    ChainGraph > .chain-graph--tag { color: $background; background: $success; text-style: bold; }
    """
    BINDINGS = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("home", "cursor_base", "Base", show=False),
        Binding("end", "cursor_active", "Active", show=False),
        Binding("pageup", "page_up_cursor", "Page up", show=False),
        Binding("pagedown", "page_down_cursor", "Page down", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Highlighted(Message):
        def __init__(self, graph: ChainGraph, image: Image | None) -> None:
            super().__init__()
            self.graph = graph
            self.image = image

        @property
        def control(self) -> ChainGraph:
            return self.graph

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.drive: Drive | None = None
        self.empty_text = "No drive: connect to a QEMU, or pick a drive on the left."
        # (image, row, is it the cursor, box width): moving the cursor invalidates nothing
        self._cache: dict[tuple[int, int, bool, int], Strip] = {}
        self._frame: tuple[int, Style] | None = None

    # -- data ------------------------------------------------------------
    def set_drive(self, drive: Drive | None) -> None:
        """Show a drive; keeps the highlighted node when it is the same drive."""
        old = self.drive
        keep: str | None = None
        if old is not None and drive is not None and old.key == drive.key and old.images:
            keep = old.images[min(self.cursor, len(old.images) - 1)].node_name
            if self.cursor >= len(old.images) - 1:
                keep = None  # the cursor was on the active image: it follows the active image
        self.drive = drive
        self._cache.clear()
        if drive is None or not drive.images:
            self.virtual_size = Size(self.size.width, 1)
            self.set_reactive(ChainGraph.cursor, 0)
        else:
            self.virtual_size = Size(self._box_width() + 2, len(drive.images) * BLOCK - 1)
            index = len(drive.images) - 1
            if keep is not None:
                try:
                    index = drive.index_of(keep)
                except KeyError:
                    # the highlighted image left the chain: stay near where it was
                    index = min(self.cursor, len(drive.images) - 1)
            self.set_reactive(ChainGraph.cursor, index)
            if self.scrollable_content_region.height:  # laid out: the next frame already shows the cursor
                self._scroll_to_cursor(force=True)
                self.call_after_refresh(self._sync_scrollbar)
            else:
                self.call_after_refresh(self._scroll_to_cursor)
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        """Tell the screen straight away (not through every container in between)."""
        message = self.Highlighted(self, self.highlighted)
        message.bubble = False
        target = self.screen if self.is_attached else self
        target.post_message(message)

    @property
    def highlighted(self) -> Image | None:
        if self.drive is None or not self.drive.images:
            return None
        return self.drive.images[min(self.cursor, len(self.drive.images) - 1)]

    # -- cursor ----------------------------------------------------------
    def _move(self, index: int) -> None:
        if self.drive is None or not self.drive.images:
            return
        index = max(0, min(index, len(self.drive.images) - 1))
        if index == self.cursor:
            return
        old = self.cursor
        self.cursor = index
        scroll = self.scroll_offset
        self._scroll_to_cursor()
        if self.scroll_offset != scroll:
            self.refresh()
        else:
            # only the two boxes whose look changed (the cache keys them by "is the cursor"):
            # a repaint of the whole view costs the terminal frame 5-15 ms on the 2-core VM
            for i in (old, index):
                self.refresh_lines(i * BLOCK, BLOCK - 1)
        self._announce()

    def _scroll_to_cursor(self, force: bool = False) -> None:
        top = self.cursor * BLOCK
        bottom = top + BLOCK - 1
        height = self.scrollable_content_region.height or self.size.height
        # immediate: in the same frame as the moved highlight (deferred, it came a frame or two later);
        # force: right after a new virtual size, before the scroll bar knows of it (set_drive)
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False, immediate=True, force=force)
        elif bottom > self.scroll_y + height:
            self.scroll_to(y=max(0, bottom - height), animate=False, immediate=True, force=force)

    def _sync_scrollbar(self) -> None:
        """A scroll bar shown after an immediate scroll starts at the top: put it where the view is."""
        if self.show_vertical_scrollbar:
            self.vertical_scrollbar.position = self.scroll_y

    def action_cursor_up(self) -> None:
        self._move(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._move(self.cursor + 1)

    def action_cursor_base(self) -> None:
        self._move(0)

    def action_cursor_active(self) -> None:
        if self.drive is not None:
            self._move(len(self.drive.images) - 1)

    def action_page_up_cursor(self) -> None:
        self._move(self.cursor - max(1, self.size.height // BLOCK))

    def action_page_down_cursor(self) -> None:
        self._move(self.cursor + max(1, self.size.height // BLOCK))

    def on_resize(self) -> None:
        self._cache.clear()
        if self.drive is not None and self.drive.images:
            self.virtual_size = Size(self._box_width() + 2, len(self.drive.images) * BLOCK - 1)

    def on_click(self, event) -> None:  # type: ignore[no-untyped-def]
        if self.drive is None:
            return
        index = int((event.y + self.scroll_y) // BLOCK)
        self._move(index)

    # -- drawing ---------------------------------------------------------
    def _box_width(self, width: int | None = None) -> int:
        """The box width for a content width (looked up when not given: 50-100 µs a lookup)."""
        if width is None:
            width = self.scrollable_content_region.width
        width = width or self.size.width or 60
        return max(24, min(MAX_BOX, width - 3))

    def clear_line_cache(self) -> None:
        """Styles changed (a new theme): cached strips hold the old colours (as Textual's Log does)."""
        if hasattr(self, "_cache"):  # styles arrive before __init__ has run
            self._cache.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line = y + scroll_y
        width, base_style = self._frame_info()
        drive = self.drive
        if drive is None or not drive.images:
            if y == 1:
                meta = self.get_component_rich_style("chain-graph--meta")
                return Strip([Segment(" " + self.empty_text, meta)]).crop_extend(scroll_x, scroll_x + width, base_style)
            return Strip.blank(width, base_style)
        index, row = divmod(line, BLOCK)
        if index >= len(drive.images) or (row == BLOCK - 1 and index == len(drive.images) - 1):
            return Strip.blank(width, base_style)
        box_w = self._box_width(width)
        key = (index, row, index == self.cursor, box_w)
        strip = self._cache.get(key)
        if strip is None:
            strip = Strip(self._render_row(drive, index, row, box_w))
            self._cache[key] = strip
        return strip.crop_extend(scroll_x, scroll_x + width, base_style)

    def _render_row(self, drive: Drive, index: int, row: int, box_w: int) -> list[Segment]:
        img = drive.images[index]
        is_cursor = index == self.cursor
        is_active = index == len(drive.images) - 1
        style_name = "chain-graph--box"
        if img.job:
            style_name = "chain-graph--busy"
        elif is_active:
            style_name = "chain-graph--active"
        border = self.get_component_rich_style("chain-graph--cursor" if is_cursor else style_name)
        text = self.get_component_rich_style(style_name)
        meta = self.get_component_rich_style("chain-graph--meta")
        arrow = self.get_component_rich_style("chain-graph--arrow")
        tl, h, tr, v, bl, br = ("┏", "━", "┓", "┃", "┗", "┛") if is_cursor else ("╭", "─", "╮", "│", "╰", "╯")
        pointer = Segment("▶ " if is_cursor and row == 1 else "  ", border)
        inner = box_w - 2
        if row == 0:
            title = f" {img.label} "
            tags: list[tuple[str, Style]] = []
            if is_active:
                tags.append((" ACTIVE ", self.get_component_rich_style("chain-graph--tag")))
            if index == 0:
                tags.append((" base ", meta))
            if img.job:
                tags.append((f" ⚙ {img.job} ", self.get_component_rich_style("chain-graph--busy") + Style(bold=True)))
            tags_len = sum(len(t) for t, _ in tags)
            title = _fit(title, max(4, inner - 2 - tags_len - 1))
            fill = max(0, inner - 1 - len(title) - tags_len - 1)
            # a provisional name (read from the files QEMU has open) is never drawn like QEMU's own
            name_style = text + (Style(italic=True, dim=True) if img.provisional else Style(bold=True))
            segs = [pointer, Segment(tl + h, border), Segment(title, name_style), Segment(h * fill, border)]
            for t, st in tags:
                segs.append(Segment(t, st))
            segs.append(Segment(h + tr, border))
            return segs
        if row == 1:
            used = human_size(img.actual_size) if img.actual_size is not None else "?"
            parts = f" {img.format} · {human_size(img.virtual_size)} · {used} used · node {img.node_name}"
            if img.provisional:
                parts = f" node {img.node_name} · file name unconfirmed · reading details from QEMU…"
            elif img.partial:
                parts = f" node {img.node_name} · reading details from QEMU…"
            if img.read_only and not is_active:
                parts += " · ro"
            body = _fit(parts, inner).ljust(inner)
            return [pointer, Segment(v, border), Segment(body, meta if not is_cursor else text), Segment(v, border)]
        if row == 2:
            return [pointer, Segment(bl + h * inner + br, border)]
        # row 3: the arrow to the next image, which this one backs
        nxt = drive.images[index + 1]
        unconfirmed = " (unconfirmed)" if nxt.provisional else ""
        return [Segment("      ▼ ", arrow), Segment(f"backing file of {nxt.label}{unconfirmed}", meta)]


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    return text[: width - 1] + "…"
