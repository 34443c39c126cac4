"""Job cards: one per job, across all drives and QEMU processes, live."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget

from ..backend.jobs import Job
from ..backend.ops import human_duration, human_size

SPARK = "▁▂▃▄▅▆▇█"
# query-block-jobs io-status → the errno class QEMU saw (BLOCK_JOB_ERROR carries none)
IO_STATUS = {"failed": " (EIO or similar)", "nospace": " (ENOSPC: no space left)"}
BAR_WIDTH = 24


def sparkline(values: list[float], width: int = 16) -> str:
    values = values[-width:]
    if not values:
        return ""
    top = max(values) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int(v / top * (len(SPARK) - 1) + 0.5))] for v in values)


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = fraction * width
    full = int(filled)
    half = "╸" if filled - full >= 0.5 and full < width else ""
    return "━" * full + half + " " * (width - full - len(half))


class JobCard(Widget):
    """Two lines about one job: what, where, state; progress, rate, ETA, limit."""

    DEFAULT_CSS = """
    JobCard { height: 2; padding: 0 1; }
    """

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self._seen = -1
        self.sync_classes()

    def sync_classes(self) -> None:
        job = self.job
        self.set_class(job.ready and not job.finished, "-ready")
        self.set_class(bool(job.error) or (job.outcome or "").startswith("failed") or job.io_status not in ("ok", "", None), "-error")
        self.set_class(job.finished, "-finished")
        self.set_class(job.status == "unknown", "-unknown")
        self.set_class(job.user_paused and not job.finished, "-paused")
        conv = job.convergence() if job.needs_convergence else None
        self.set_class(conv is not None and not conv.converging, "-stuck")

    def update_job(self, job: Job) -> None:
        self.job = job
        if job.version != self._seen:
            self._seen = job.version
            self.sync_classes()
            self.refresh()

    def render(self) -> Text:
        job = self.job
        where = f"{job.drive or '?'}@{job.session}"
        state = job.state_text
        state_style = "bold"
        if job.finished:
            state_style = "bold red" if state.startswith("failed") else "bold"
        elif job.ready:
            state_style = "bold green"
        elif job.status == "unknown" or job.io_status not in ("ok", "", None):
            state_style = "bold red"
        elif job.paused:
            state_style = "bold yellow"
        first = Text.assemble(
            (job.id, "bold"),
            ("  ", ""),
            (job.type, "cyan"),
            ("  ", ""),
            (where, "dim"),
            ("  ", ""),
            (state, state_style),
        )
        if job.last_error_event and not job.finished:
            ev = job.last_error_event
            cause = IO_STATUS.get(job.io_status, "")
            first.append(f"  I/O error on {ev.get('operation')}{cause} → {ev.get('action')}", "red")
        conv = job.convergence() if job.needs_convergence else None
        if conv is not None and not conv.converging:
            first.append(f"  ⚠ not converging: {conv.reason} (+/u: raise/lift limit, w: write-blocking)", "bold yellow")
        if job.target:
            first.append(f"  → {job.target}", "dim")
        if not job.started_by_us:
            first.append("  (started elsewhere)", "dim italic")
        pct = f"{job.progress:>4.0%}"
        done = f"{human_size(job.offset)} of {human_size(job.length)}"
        second = Text.assemble(
            (bar(job.progress), "green" if job.ready or job.finished else "magenta"),
            (f" {pct}  ", "bold"),
            (done, ""),
        )
        if job.ready and not job.finished:
            hint = "f: finish" if job.type != "mirror" else "f: pivot to target, x: keep source"
            second.append(f"  in sync · {hint}", "green")
        elif not job.finished:
            second.append(f"  {human_size(job.rate)}/s ", "")
            second.append(sparkline(list(job.rate_history), 12), "cyan")
            stuck = conv is not None and not conv.converging
            second.append(f"  ETA {'never at this pace' if stuck else human_duration(job.eta)}", "dim")
            if conv is not None:
                arrow = "▲" if conv.trend > 0 else ("▼" if conv.trend < 0 else "=")
                text = f"  left {arrow} {human_size(abs(conv.trend))}/s"
                if conv.dirty_rate > 0:
                    text += f", guest {human_size(conv.dirty_rate)}/s"
                second.append(text, "yellow" if not conv.converging else "dim")
        second.append(f"  limit {human_size(job.speed) + '/s' if job.speed else 'none'}", "dim")
        width = max(10, self.content_region.width or self.size.width or 80)
        first.truncate(width, overflow="ellipsis")
        second.truncate(width, overflow="ellipsis")
        first.append("\n")
        first.append_text(second)
        return first


class JobsPanel(VerticalScroll, can_focus=True):
    """All job cards; the highlighted one receives f/x/p/+/-/d when this panel has focus."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Previous job", show=False),
        Binding("down,j", "move(1)", "Next job", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, job: Job | None) -> None:
            super().__init__()
            self.job = job

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cards: dict[tuple[str, str], JobCard] = {}
        self.order: list[tuple[str, str]] = []
        self.cursor = 0

    @property
    def highlighted(self) -> Job | None:
        if not self.order:
            return None
        key = self.order[min(self.cursor, len(self.order) - 1)]
        return self.cards[key].job

    def show(self, jobs: list[Job]) -> None:
        keys = [j.key for j in jobs]
        if keys != self.order:
            current = self.order[self.cursor] if self.order and self.cursor < len(self.order) else None
            for key in list(self.cards):
                if key not in keys:
                    self.cards.pop(key).remove()
            new_cards = []
            for job in jobs:
                if job.key not in self.cards:
                    card = JobCard(job)
                    self.cards[job.key] = card
                    new_cards.append(card)
            if new_cards:
                self.mount_all(new_cards)
            self.order = keys
            if current in keys:
                self.cursor = keys.index(current)
            elif new_cards:
                self.cursor = keys.index(new_cards[-1].job.key)
            else:
                self.cursor = min(self.cursor, max(0, len(keys) - 1))
            self._mark()
        for job in jobs:
            self.cards[job.key].update_job(job)
        self.set_class(not jobs, "-empty")

    def _mark(self) -> None:
        for i, key in enumerate(self.order):
            self.cards[key].set_class(i == self.cursor, "-highlight")
        if self.order:
            card = self.cards[self.order[self.cursor]]
            self.call_after_refresh(self.scroll_to_widget, card, animate=False)
        self.post_message(self.Highlighted(self.highlighted))

    def action_move(self, delta: int) -> None:
        if not self.order:
            return
        self.cursor = max(0, min(len(self.order) - 1, self.cursor + delta))
        self._mark()

    def select(self, key: tuple[str, str]) -> None:
        if key in self.order:
            self.cursor = self.order.index(key)
            self._mark()
