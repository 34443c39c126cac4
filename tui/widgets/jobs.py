"""Job cards: one per job, across all drives and QEMU processes, live.

One line-API view draws every card: two lines a card, only the visible lines
rendered, each cached under what it shows (the job's version, the width, the
highlight and focus).  A poll that moves a job repaints only the lines that differ
from what was drawn (its progress line: the headline reads the same), and a line
that reads and looks as before is not built again.  What a
card says is in :mod:`tui.widgets.job_card`.
"""

from __future__ import annotations

from itertools import groupby

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.color import Color
from textual.geometry import Size
from textual.strip import Strip

from ..backend.jobs import Job
from .job_card import card_classes, card_parts
from .line_view import LineView

CARD = 2  # lines per card
BOLD = Style(bold=True)


class JobsPanel(LineView, can_focus=True):
    """All job cards in one view; the highlighted one receives f/x/p/+/-/d when this panel has focus."""

    COMPONENT_CLASSES = {
        "jobs-panel--text",
        "jobs-panel--muted",
        "jobs-panel--id",
        "jobs-panel--type",
        "jobs-panel--good",
        "jobs-panel--bad",
        "jobs-panel--warn",
        "jobs-panel--bar",
        "jobs-panel--spark",
        "jobs-panel--edge",
        "jobs-panel--edge-good",
        "jobs-panel--edge-bad",
        "jobs-panel--edge-warn",
        "jobs-panel--edge-finished",
        "jobs-panel--highlight",
        "jobs-panel--highlight-focus",
        "jobs-panel--stuck",
    }
    # cards are cut to the width with an ellipsis: never a horizontal scrollbar (it appeared when a
    # vertical one narrowed the panel after the virtual width was set, and hid a card's line)
    DEFAULT_CSS = """
    JobsPanel { overflow-x: hidden; }
    JobsPanel > .jobs-panel--text { color: $foreground; }
    JobsPanel > .jobs-panel--muted { color: $foreground-muted; }
    JobsPanel > .jobs-panel--id { text-style: bold; }
    JobsPanel > .jobs-panel--type { color: $text-secondary; }
    JobsPanel > .jobs-panel--good { color: $text-success; }
    JobsPanel > .jobs-panel--bad { color: $text-error; }
    JobsPanel > .jobs-panel--warn { color: $text-warning; }
    JobsPanel > .jobs-panel--bar { color: $text-accent; }
    JobsPanel > .jobs-panel--spark { color: $text-secondary; }
    JobsPanel > .jobs-panel--edge { color: $surface; }
    JobsPanel > .jobs-panel--edge-good { color: $success; }
    JobsPanel > .jobs-panel--edge-bad { color: $error; }
    JobsPanel > .jobs-panel--edge-warn { color: $warning; }
    JobsPanel > .jobs-panel--edge-finished { color: $success 50%; }
    JobsPanel > .jobs-panel--highlight { background: $boost; }
    JobsPanel > .jobs-panel--highlight-focus { background: $accent 30%; }
    JobsPanel > .jobs-panel--stuck { background: $warning 10%; }
    """

    BINDINGS = [
        Binding("up,k", "move(-1)", "Previous job", show=False),
        Binding("down,j", "move(1)", "Next job", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.jobs: dict[tuple[str, str], Job] = {}
        self.order: list[tuple[str, str]] = []
        self.cursor = 0
        self._seen: dict[tuple[str, str], int] = {}
        # one entry per card line: (key, row) -> (what it shows, strip, how it looks)
        self._lines: dict[tuple[tuple[str, str], int], tuple[tuple, Strip, tuple]] = {}
        # what each card line looked like when it was last drawn: a change repaints only the lines
        # that differ from it (not from ``_lines``, which tests and ``text_of`` fill too)
        self._drawn: dict[tuple[tuple[str, str], int], Strip] = {}
        self._styles: dict[str, Style] = {}
        self._frame: tuple[int, Style] | None = None

    # -- public ----------------------------------------------------------
    @property
    def highlighted(self) -> Job | None:
        if not self.order:
            return None
        return self.jobs[self.order[min(self.cursor, len(self.order) - 1)]]

    def lines_for(self, job: Job) -> list[Strip]:
        """The card's lines as they are drawn at the current width (empty when the job has no card)."""
        if job.key not in self.jobs:
            return []
        index = self.order.index(job.key)
        width = self._frame_info()[0] or 80
        return [self._card_line(index, row, width) for row in range(CARD)]

    def text_of(self, job: Job) -> str:
        """The card's text, its two lines joined by a newline ('' when the job has no card)."""
        return "\n".join(strip.text.rstrip() for strip in self.lines_for(job))

    def classes_of(self, job: Job) -> set[str]:
        """The states the card shows ('-error', '-stuck', ...); empty when the job has no card."""
        return card_classes(self.jobs[job.key]) if job.key in self.jobs else set()

    def visible_keys(self) -> list[tuple[str, str]]:
        """Keys of the cards (at least partly) on screen, top to bottom."""
        first, last = self._visible_range()
        return self.order[first : last + 1]

    def _visible_range(self) -> tuple[int, int]:
        """Indices of the first and last card (at least partly) on screen; last < first when none is."""
        height = self.scrollable_content_region.height
        top = int(self.scroll_y)
        return top // CARD, (top + height - 1) // CARD

    def show(self, jobs: list[Job]) -> None:
        keys = [j.key for j in jobs]
        self.jobs = {j.key: j for j in jobs}
        if keys != self.order:
            current = self.order[self.cursor] if self.order and self.cursor < len(self.order) else None
            new = [k for k in keys if k not in self._seen]
            self.order = keys
            self._seen = {k: v for k, v in self._seen.items() if k in self.jobs}
            for key in [k for k in self._lines if k[0] not in self.jobs]:
                del self._lines[key]
            self._drawn.clear()
            if not self.has_focus:
                # nobody is reading a particular card: show the top, where running jobs are
                self.cursor = 0
            elif current in keys:
                self.cursor = keys.index(current)
            elif new:
                self.cursor = keys.index(new[-1])
            else:
                self.cursor = min(self.cursor, max(0, len(keys) - 1))
            self._seen.update({j.key: j.version for j in jobs})
            self._resize_virtual()
            self.set_class(not jobs, "-empty")
            self.refresh(layout=True)
            self._mark()
            return
        changed = []
        for index, job in enumerate(jobs):
            if self._seen.get(job.key) != job.version:
                self._seen[job.key] = job.version
                changed.append(index)
        # a repaint of the visible lines that changed (mostly a card's second line: its headline
        # stays while the job moves), each run of neighbours one region: the lines between them
        # are not drawn again (a card scrolled into view later is drawn from its new version anyway)
        first, last = self._visible_range()
        width = self._frame_info()[0]
        rows = []
        for index in changed:
            if first <= index <= last:
                rows += self._changed_rows(index, width)
        for _, run in groupby(enumerate(rows), lambda pair: pair[1] - pair[0]):  # neighbours: one run
            ys = [y for _, y in run]
            self.refresh_lines(ys[0], len(ys))
        self.set_class(not jobs, "-empty")

    def _changed_rows(self, index: int, width: int) -> list[int]:
        """The lines of card ``index`` that look different now (all of them while its width is unknown)."""
        key = self.order[index]
        return [index * CARD + row for row in range(CARD)
                if not width or self._drawn.get((key, row)) != self._card_line(index, row, width)]

    def select(self, key: tuple[str, str]) -> None:
        if key in self.order:
            self.cursor = self.order.index(key)
            self.refresh()
            self._mark()

    # -- cursor ----------------------------------------------------------
    def _mark(self) -> None:
        if self.order:
            if self.cursor == 0:
                self.call_after_refresh(self.scroll_home, animate=False)
            else:
                self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        top = self.cursor * CARD
        height = self.scrollable_content_region.height or self.size.height
        if top < self.scroll_y:
            self.scroll_to(y=top, animate=False)
        elif top + CARD > self.scroll_y + height:
            self.scroll_to(y=max(0, top + CARD - height), animate=False)

    def action_move(self, delta: int) -> None:
        if not self.order:
            return
        cursor = max(0, min(len(self.order) - 1, self.cursor + delta))
        if cursor != self.cursor:
            self.refresh_lines(self.cursor * CARD, CARD)
            self.cursor = cursor
            self.refresh_lines(cursor * CARD, CARD)
        self._mark()

    def on_click(self, event) -> None:  # type: ignore[no-untyped-def]
        offset = event.get_content_offset(self)
        if offset is None or not self.order:
            return
        index = int((offset.y + self.scroll_y) // CARD)
        if index < len(self.order):
            self.select(self.order[index])

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        self._resize_virtual()

    def _resize_virtual(self) -> None:
        self.virtual_size = Size(self.scrollable_content_region.width or self.size.width, len(self.order) * CARD)

    # -- drawing ---------------------------------------------------------
    def clear_line_cache(self) -> None:
        if hasattr(self, "_lines"):  # styles arrive before __init__ has run
            self._lines.clear()
            self._styles.clear()

    def _style(self, name: str, faded: bool = False) -> Style:
        """A component's style without its background (cards put their own under it); faded: text-opacity 70%."""
        key = f"{name}:{faded}"
        style = self._styles.get(key)
        if style is None:
            full = self.get_component_rich_style(f"jobs-panel--{name}")
            color = full.color
            if faded and color is not None and full.bgcolor is not None:
                fg, bg = Color.from_rich_color(color), Color.from_rich_color(full.bgcolor)
                color = bg.blend(fg, 0.7).rich_color
            style = self._styles[key] = Style(color=color, bold=full.bold, italic=full.italic)
        return style

    def _piece(self, name: str, text: Style, faded: bool) -> Style:
        """The style of a piece of a card: uncoloured pieces take the card's text colour."""
        if not name:
            return text
        if name == "id":  # emphasis only: the card's own text colour
            return text + (BOLD if self._style("id").bold else Style())
        if name.endswith("!"):  # a state or a warning: bold
            return self._piece(name[:-1], text, faded) + BOLD
        return self._style(name, faded)

    def _background(self, *names: str) -> Style:
        """The widget's background with the components' backgrounds laid over it in turn."""
        key = "bg:" + ",".join(names)
        style = self._styles.get(key)
        if style is None:
            under = self._frame_info()[1].bgcolor
            color = Color.from_rich_color(under) if under is not None else Color(0, 0, 0)
            for name in names:
                color = color + self.get_component_styles(f"jobs-panel--{name}").background
            style = self._styles[key] = Style(bgcolor=color.rich_color)
        return style

    def render_line(self, y: int) -> Strip:
        width, base = self._frame_info()
        index, row = divmod(y + int(self.scroll_y), CARD)
        if index >= len(self.order):
            return Strip.blank(width, base)
        strip = self._drawn[(self.order[index], row)] = self._card_line(index, row, width)
        return strip

    def _card_line(self, index: int, row: int, width: int) -> Strip:
        key = self.order[index]
        job = self.jobs[key]
        lit = index == self.cursor
        shows = (job.version, width, lit, lit and self.has_focus)
        cached = self._lines.get((key, row))
        if cached is not None and cached[0] == shows:
            return cached[1]
        strips = []
        for line, look in enumerate(self._card_looks(job, width, lit)):
            old = self._lines.get((key, line))
            # a line that reads and looks as before (a headline while the job moves) is not built again
            strip = old[1] if old is not None and old[2] == look else self._paint(*look)
            self._lines[(key, line)] = (shows, strip, look)
            strips.append(strip)
        return strips[row]

    def _card_looks(self, job: Job, width: int, lit: bool) -> list[tuple]:
        """What each line of a card shows: its edge, background and text styles, pieces and width."""
        classes = card_classes(job)
        base = self._frame_info()[1]
        layers = ["stuck"] if "-stuck" in classes else []
        if lit:
            layers.append("highlight-focus" if self.has_focus else "highlight")
        background = base + self._background(*layers) if layers else base
        faded = "-finished" in classes
        text = "muted" if classes & {"-finished", "-unknown"} else "text"
        edge = "edge"
        for cls, name in (
            ("-cancelled", "edge-warn"), ("-finished", "edge-finished"), ("-stuck", "edge-warn"),
            ("-paused", "edge-warn"), ("-unknown", "edge-bad"), ("-error", "edge-bad"), ("-ready", "edge-good"),
        ):
            if cls in classes:
                edge = name
                break
        return [(edge, background, text, faded, tuple(parts), width) for parts in card_parts(job)]

    def _paint(self, edge: str, background: Style, text_name: str, faded: bool,
               parts: tuple[tuple[str, str], ...], width: int) -> Strip:
        """One line of a card: a coloured edge, a space, the text cut to fit, a space."""
        text = self._style(text_name, faded)
        segments = [Segment("█", background + self._style(edge, faded)), Segment(" ", background)]
        segments += _fit([(t, background + self._piece(s, text, faded)) for t, s in parts], max(1, width - 3))
        used = 2 + sum(cell_len(seg.text) for seg in segments[2:])
        segments.append(Segment(" " * max(0, width - used), background))
        return Strip(segments, max(width, used))


def _fit(pieces: list[tuple[str, Style]], width: int) -> list[Segment]:
    """Segments of the pieces, cut to ``width`` cells with an ellipsis where text was cut."""
    segments: list[Segment] = []
    used = 0
    for index, (text, style) in enumerate(pieces):
        if not text:
            continue
        size = cell_len(text)
        if used + size <= width and not (used + size == width and any(t for t, _ in pieces[index + 1 :])):
            segments.append(Segment(text, style))
            used += size
            continue
        room = width - used - 1
        if room > 0:
            cut = Segment(text, style).split_cells(room)[0]
            segments.append(cut)
        segments.append(Segment("…", style))
        return segments
    return segments
