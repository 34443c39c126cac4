"""Job cards: one per job, across all drives and QEMU processes, live."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget

from ..backend.jobs import Job
from ..backend.fmt import human_duration, human_size

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
        self.set_class(
            job.result in ("failed", "lost") or (not job.finished and (bool(job.error) or job.io_status not in ("ok", "", None))),
            "-error",
        )
        self.set_class(job.finished and job.succeeded, "-finished")
        self.set_class(job.result in ("cancelled", "unknown"), "-cancelled")
        self.set_class(job.lost and not job.finished, "-unknown")
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
        if job.lost and not job.finished:
            state = "✗ LOST: its QEMU does not answer"
        elif job.ended_badly:
            state = {"failed": "✗ FAILED", "lost": "✗ LOST", "cancelled": "⊘ CANCELLED"}.get(
                job.result or "", "? ENDED, outcome unknown"
            )
        state_style = "bold"
        if job.finished:
            state_style = {"completed": "bold green", "failed": "bold red", "lost": "bold red"}.get(
                job.result or "", "bold yellow"
            )
        elif job.lost or job.io_status not in ("ok", "", None):
            state_style = "bold red"
        elif job.ready:
            state_style = "bold green"
        elif job.is_paused:
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
        pct = f"{job.progress:>4.0%}" if job.length > 0 else "  --"
        done = f"{human_size(job.offset)} of {human_size(job.length)}" if job.length > 0 else "nothing copied"
        if job.finished:
            bar_style = {"completed": "green", "failed": "red", "lost": "red"}.get(job.result or "", "yellow")
        elif job.lost:
            bar_style = "grey50"
        else:
            bar_style = "green" if job.ready else "magenta"
        if job.ended_badly:
            # the reason QEMU gave and where it got to, where a progress bar would be
            detail = job.outcome or ""
            for sep in (": ", "; "):
                if detail.startswith((job.result or "") + sep):
                    detail = detail[len(job.result or "") + 2 :]
            second = Text.assemble((bar(job.progress, 8), bar_style), (f" {pct}  ", "bold"), (detail, bar_style))
            if not (job.result == "cancelled" and job.ready) and (job.offset or job.length):
                second.append(f" · stopped at {job.stopped_at}", bar_style)
            second.append("  · d dismiss", "dim")
        else:
            second = Text.assemble((bar(job.progress), bar_style), (f" {pct}  ", "bold"), (done, ""))
        if job.finished:
            pass
        elif job.lost:
            second.append("  no rate, no ETA", "red")
        elif job.ready:
            hint = "f: finish" if job.type != "mirror" else "f: pivot to target, x: keep source"
            second.append(f"  in sync · {hint}", "green")
        elif not job.finished:
            second.append(f"  {human_size(job.rate)}/s", "")
            stuck = conv is not None and not conv.converging
            second.append(f"  ETA {'never at this pace' if stuck else human_duration(job.eta)}", "dim")
            if job.is_paused:
                second.append(" (paused)", "yellow")
            second.append(" " + sparkline(list(job.rate_history), 12), "cyan")
            if conv is not None:
                arrow = "▲" if conv.trend > 0 else ("▼" if conv.trend < 0 else "=")
                text = f"  left {arrow} {human_size(abs(conv.trend))}/s"
                if conv.dirty_rate > 0:
                    text += f", guest {human_size(conv.dirty_rate)}/s"
                second.append(text, "yellow" if not conv.converging else "dim")
        if not job.finished:
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
            prev: JobCard | None = None
            # cards on screen in the order given (running first): move the old ones, mount the new in place
            for job in jobs:
                card = self.cards.get(job.key)
                if card is None:
                    card = self.cards[job.key] = JobCard(job)
                    new_cards.append(card)
                    if prev is None:
                        self.mount(card, before=0) if self.children else self.mount(card)
                    else:
                        self.mount(card, after=prev)
                elif prev is None:
                    if self.children and self.children[0] is not card:
                        self.move_child(card, before=0)
                else:
                    kids = list(self.children)
                    if kids.index(card) != kids.index(prev) + 1:
                        self.move_child(card, after=prev)
                prev = card
            self.order = keys
            if not self.has_focus:
                # nobody is reading a particular card: show the top, where running jobs are
                self.cursor = 0
            elif current in keys:
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
            if self.cursor == 0:
                self.call_after_refresh(self.scroll_home, animate=False)
            else:
                self.call_after_refresh(self.scroll_to_widget, card, animate=False)

    def action_move(self, delta: int) -> None:
        if not self.order:
            return
        self.cursor = max(0, min(len(self.order) - 1, self.cursor + delta))
        self._mark()
