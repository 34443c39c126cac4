"""What a job card says: its states as names and its two lines as (text, style name) pieces.

No Textual here: :class:`~tui.widgets.jobs.JobsPanel` turns the style names into the
panel's component styles (``jobs-panel--NAME``) and draws the pieces.  A style name
ending in ``!`` is drawn bold; ``""`` takes the card's text colour.
"""

from __future__ import annotations

from ..backend.fmt import human_duration, human_size
from ..backend.jobs import Convergence, Job

SPARK = "▁▂▃▄▅▆▇█"
# query-block-jobs io-status → the errno class QEMU saw (BLOCK_JOB_ERROR carries none)
IO_STATUS = {"failed": " (EIO or similar)", "nospace": " (ENOSPC: no space left)"}
BAR_WIDTH = 24

# what a card's state is called, for tests and CSS-minded readers (was a widget class per card)
STATE_CLASSES = ("-ready", "-error", "-finished", "-cancelled", "-unknown", "-paused", "-stuck")

Pieces = list[tuple[str, str]]


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


def card_classes(job: Job) -> set[str]:
    """The states a card shows, as names: '-error', '-stuck', '-finished', ..."""
    conv = job.convergence() if job.needs_convergence else None
    flags = {
        "-ready": job.ready and not job.finished,
        "-error": job.result in ("failed", "lost")
        or (not job.finished and (bool(job.error) or job.io_status not in ("ok", "", None))),
        "-finished": job.finished and job.succeeded,
        "-cancelled": job.result in ("cancelled", "unknown"),
        "-unknown": job.lost and not job.finished,
        "-paused": job.user_paused and not job.finished,
        "-stuck": conv is not None and not conv.converging,
    }
    return {name for name, on in flags.items() if on}


def card_parts(job: Job) -> tuple[Pieces, Pieces]:
    """What a card says, as (text, style name) pieces for its two lines."""
    conv = job.convergence() if job.needs_convergence else None
    return _headline(job, conv), _progress(job, conv)


def _state(job: Job) -> tuple[str, str]:
    """The job's state as the card names it, and its style."""
    state = job.state_text
    if job.lost and not job.finished:
        state = "✗ LOST: its QEMU does not answer"
    elif job.ended_badly:
        state = {"failed": "✗ FAILED", "lost": "✗ LOST", "cancelled": "⊘ CANCELLED"}.get(
            job.result or "", "? ENDED, outcome unknown"
        )
    style = "id"
    if job.finished:
        style = {"completed": "good", "failed": "bad", "lost": "bad"}.get(job.result or "", "warn")
    elif job.lost or job.io_status not in ("ok", "", None):
        style = "bad"
    elif job.ready:
        style = "good"
    elif job.is_paused:
        style = "warn"
    return state, style + "!" if style != "id" else "id"


def _headline(job: Job, conv: Convergence | None) -> Pieces:
    """The first line: job, type, drive, state, then what is wrong and where it copies to."""
    where = f"{job.drive or '?'}@{job.session}"
    first = [(job.id, "id"), ("  ", ""), (job.type, "type"), ("  ", ""), (where, "muted"), ("  ", ""), _state(job)]
    if job.last_error_event and not job.finished:
        ev = job.last_error_event
        cause = IO_STATUS.get(job.io_status, "")
        first.append((f"  I/O error on {ev.get('operation')}{cause} → {ev.get('action')}", "bad"))
    if conv is not None and not conv.converging:
        first.append((f"  ⚠ not converging: {conv.reason} (+/u: raise/lift limit, w: write-blocking)", "warn!"))
    if job.target:
        first.append((f"  → {job.target}", "muted"))
    if not job.started_by_us:
        first.append(("  (started elsewhere)", "muted"))
    return first


def _progress(job: Job, conv: Convergence | None) -> Pieces:
    """The second line: the bar and how far it got (or why it ended), the pace, the speed limit."""
    pct = f"{job.percent:>4}" if job.length > 0 else "  --"
    if job.finished:
        bar_style = {"completed": "good", "failed": "bad", "lost": "bad"}.get(job.result or "", "warn")
    elif job.lost:
        bar_style = "muted"
    else:
        bar_style = "good" if job.ready else "bar"
    second: Pieces
    if job.ended_badly:
        # the reason QEMU gave and where it got to, where a progress bar would be
        detail = job.outcome or ""
        for sep in (": ", "; "):
            if detail.startswith((job.result or "") + sep):
                detail = detail[len(job.result or "") + 2 :]
        second = [(bar(job.progress, 8), bar_style), (f" {pct}  ", "id"), (detail, bar_style)]
        if not (job.result == "cancelled" and job.ready) and (job.offset or job.length):
            second.append((f" · stopped at {job.stopped_at}", bar_style))
        second.append(("  · d dismiss", "muted"))
    else:
        done = f"{human_size(job.offset)} of {human_size(job.length)}" if job.length > 0 else "nothing copied"
        second = [(bar(job.progress), bar_style), (f" {pct}  ", "id"), (done, "")]
    if not job.finished:
        second += _pace(job, conv)
        second.append((f"  limit {human_size(job.speed) + '/s' if job.speed else 'none'}", "muted"))
    return second


def _pace(job: Job, conv: Convergence | None) -> Pieces:
    """How a job that has not ended moves: rate, ETA, sparkline, convergence (or why none of that)."""
    if job.lost:
        return [("  no rate, no ETA", "bad")]
    if job.ready:
        hint = "f: finish" if job.type != "mirror" else "f: pivot to target, x: keep source"
        return [(f"  in sync · {hint}", "good")]
    stuck = conv is not None and not conv.converging
    pace = [(f"  {human_size(job.rate)}/s", ""),
            (f"  ETA {'never at this pace' if stuck else human_duration(job.eta)}", "muted")]
    if job.is_paused:
        pace.append((" (paused)", "warn"))
    pace.append((" " + sparkline(list(job.rate_history), 12), "spark"))
    if conv is not None:
        arrow = "▲" if conv.trend > 0 else ("▼" if conv.trend < 0 else "=")
        shrink = abs(conv.trend)
        if conv.trend < 0 and job.speed:
            # a throttled copy goes in bursts: over a short window the bytes left can fall faster
            # than the limit, never over time (shown no faster than the limit, as the rate is)
            shrink = min(shrink, job.speed)
        text = f"  left {arrow} {human_size(shrink)}/s"
        if conv.dirty_rate > 0:
            text += f", guest {human_size(conv.dirty_rate)}/s"
        pace.append((text, "warn" if not conv.converging else "muted"))
    return pace
