"""The job model: one block job as chaintui knows it (state, progress, rate, ETA, how it ended).

:class:`~tui.backend.job_tracker.JobTracker` keeps them up to date from events and polls;
rate and ETA are derived from the offsets it has seen.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterator

from .fmt import human_size

# QEMU's job states (JobStatus in qapi/job.json) in which a job still holds nodes.
ACTIVE_STATES = frozenset({"created", "running", "paused", "ready", "standby", "waiting", "pending", "aborting"})
ENDED_STATES = frozenset({"concluded", "null"})
RATE_WINDOW = 3.0  # the rate spans at least this many seconds of samples
RATE_STEPS = 4  # ... and at least this many advances of the offset (throttled jobs advance in steps)
RATE_MAX_WINDOW = 60.0  # but never more than this
HISTORY = 40  # rate samples kept for the sparkline
CONVERGENCE_WINDOW = 10.0  # seconds without the remaining bytes shrinking before a job is "not converging"


@dataclass
class Job:
    id: str
    session: str
    type: str = "?"
    drive: str | None = None
    status: str = "created"
    offset: int = 0
    length: int = 0
    speed: int = 0
    ready: bool = False
    paused: bool = False  # as QEMU reports it (query-block-jobs)
    user_paused: bool = False  # paused by an operator's command
    busy: bool = False
    io_status: str = "ok"
    error: str | None = None  # QEMU's error text of a failed job
    last_error_event: dict[str, Any] | None = None  # BLOCK_JOB_ERROR data
    auto_finalize: bool = True
    auto_dismiss: bool = True
    started_by_us: bool = False
    cancel_requested: bool = False
    complete_requested: bool = False
    target: str | None = None  # mirror/copy target file
    created_target: bool = False  # chaintui had QEMU create the target file (not a reused image)
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None
    outcome: str | None = None  # how it ended, once it has
    result: str | None = None  # completed, failed, cancelled, lost or unknown, once it has ended
    lost: bool = False  # the connection to its QEMU is gone: what it does now is unknown
    # (time, offset): one sample per offset change, plus one now and then while it stands still
    samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=400))
    # (time, remaining bytes = len - offset) for mirrors and active commits before ready
    remaining_samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=400))
    rate_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    version: int = 0  # bumped on every change, for cheap redraw checks
    launching: bool = False  # the command that starts it is on its way to QEMU
    event_at: float = 0.0  # when the last event about it arrived
    active_commit: bool = False  # a commit of the active image (goes ready)
    _rate: float = field(default=0.0, repr=False, compare=False)
    _rate_key: Any = field(default=None, repr=False, compare=False)
    _step_at: float | None = field(default=None, repr=False, compare=False)  # with _rate: the last step's time
    _paused_at: float | None = field(default=None, repr=False, compare=False)  # seen paused since then

    @property
    def key(self) -> tuple[str, str]:
        return (self.session, self.id)

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def active(self) -> bool:
        return self.outcome is None and self.status in ACTIVE_STATES

    @property
    def running(self) -> bool:
        """Counted as running: not ended, and its QEMU is there to say so."""
        return self.outcome is None and not self.lost

    @property
    def succeeded(self) -> bool:
        return self.result == "completed"

    @property
    def ended_badly(self) -> bool:
        """Failed, cancelled, lost, or gone without saying how: never shown like a finished job."""
        return self.outcome is not None and self.result != "completed"

    @property
    def is_paused(self) -> bool:
        """Paused as QEMU's query-block-jobs says (not QEMU 10's short pause around a graph change), or by us."""
        return self.user_paused or self.paused

    @property
    def progress(self) -> float:
        """How far it got; a job with nothing to copy (length 0) is at 0, not 100 %."""
        if self.length <= 0:
            return 0.0
        return min(1.0, self.offset / self.length)

    @property
    def percent(self) -> str:
        """How far it got as a whole percent, rounded down: ``100%`` only once all is copied (99.6 %
        of a running job is not done)."""
        if self.length <= 0:
            return "0%"
        return f"{min(100, max(0, self.offset) * 100 // self.length)}%"  # in integers: 29 % is not 28.999…

    def _steps_back(self) -> Iterator[tuple[float, int]]:
        """The samples at which the offset changed (the first sample included), newest first.

        Walked from the newest sample, so the rate reads only the few steps it spans, not all 400.
        """
        samples = reversed(self.samples)
        step = next(samples, None)
        if step is None:
            return
        for sample in samples:
            if sample[1] != step[1]:
                yield step
            step = sample
        yield step

    def note_paused(self, now: float) -> None:
        """Called on every poll: a pause is cut out of the samples' time once the job runs again, so
        rate and ETA after a resume are the copy's pace, not diluted by the time it stood paused."""
        if self.is_paused:
            if self._paused_at is None:
                self._paused_at = now
            return
        if self._paused_at is None:
            return
        since, pause = self._paused_at, now - self._paused_at
        self._paused_at = None
        self.samples = deque(((t + pause if t <= since else t, o) for t, o in self.samples), maxlen=self.samples.maxlen)
        self.remaining_samples = deque(((t + pause if t <= since else t, o, n) for t, o, n in self.remaining_samples),
                                       maxlen=self.remaining_samples.maxlen)

    @property
    def rate(self) -> float:
        """Bytes per second over a window of several offset advances (computed once per new sample).

        A throttled job advances in steps (16 MiB at a time for a mirror), so the
        rate is measured from step to step, over at least ``RATE_STEPS`` advances
        and ``RATE_WINDOW`` seconds; between steps it holds, and it only decays
        once the job has stood still longer than the window it was measured over.
        """
        s = self.samples
        key = (id(s), len(s), s[-1] if s else None, self.lost, self.speed)
        if key != self._rate_key:
            self._rate_key = key
            self._rate = self._compute_rate()
        return self._rate

    def _compute_rate(self) -> float:
        steps = self._steps_back()
        last = next(steps, None)
        self._step_at = last[0] if last else None  # when the offset last changed
        if len(self.samples) < 2 or self.lost or last is None:
            return 0.0
        t_last, o_last = last
        start = None
        for back, (t, o) in enumerate(steps, 1):
            if start is not None and t_last - t > RATE_MAX_WINDOW:
                break
            start = (t, o)  # the step before the last one counts even when it is older than the window
            if back >= RATE_STEPS and t_last - t >= RATE_WINDOW:
                break
        if start is None:  # it has not moved since the first sample
            return 0.0
        t0, o0 = start
        span = t_last - t0
        if span <= 0:
            return 0.0
        rate = max(0.0, (o_last - o0) / span)
        now = self.samples[-1][0]
        if now - t_last > span:  # standing still for longer than the window: decay
            rate = max(0.0, (o_last - o0) / (now - t0))
        if self.speed and rate > self.speed:
            rate = float(self.speed)
        return rate

    @property
    def eta(self) -> float | None:
        """Seconds until done at the current rate; None when unknown (ended, ready, paused, lost)."""
        if self.finished or self.ready or self.lost or self.is_paused:
            return None
        rate = self.rate
        if rate <= 0:
            return None
        eta = (self.length - self.offset) / rate
        if self._step_at is not None and self.samples:
            eta -= self.samples[-1][0] - self._step_at  # counts down between steps
        return max(0.0, eta)

    @property
    def needs_convergence(self) -> bool:
        """Mirrors and active commits only get ready when copying outruns the guest's writes."""
        return self.type == "mirror" or (self.type == "commit" and self.active_commit)

    def convergence(self, window: float | None = None) -> Convergence | None:
        """Trend of the remaining bytes over the last ``window`` seconds (None: too early to say)."""
        window = CONVERGENCE_WINDOW if window is None else window
        s = self.remaining_samples
        if self.finished or self.ready or len(s) < 2:
            return None
        t_end, off_end, len_end = s[-1]
        start = None
        for t, off, ln in s:
            # len 0: QEMU has not counted the work yet (a mirror's first moments).  Its jump to the
            # disk's size is not the guest writing.
            if t_end - t <= window and ln > 0:
                start = (t, off, ln)
                break
        if start is None:
            return None
        t0, off0, len0 = start
        span = t_end - t0
        if span < window * 0.8:
            return None
        copy = (off_end - off0) / span
        dirty = (len_end - len0) / span
        rem0, rem1 = len0 - off0, len_end - off_end
        trend = (rem1 - rem0) / span
        # Only when QEMU reports new dirty data: the remaining bytes grew or stood still
        # while len grew, or all was copied once for the whole window and it is still not
        # ready: QEMU keeps finding dirty data it does not add to len (QEMU 7.2; with a quiet
        # guest the job is ready at once, a throttled one once its limit has slept off the last
        # burst).  A throttled job with a quiet guest stands still between its steps with len
        # unchanged: that is not "not converging".
        dirtied = len_end > len0
        stuck = not self.is_paused and not self.lost and (
            (rem1 > 0 and rem1 >= rem0 and dirtied)
            or (rem1 == 0 and rem0 == 0 and (dirtied or not self._sleeping_off_limit()))
        )
        reason = ""
        if stuck:
            if self.speed and (copy >= self.speed * 0.8 or rem1 == 0):
                reason = f"the speed limit {human_size(self.speed)}/s holds the copy back while the guest keeps writing"
            elif dirty > 0:
                reason = f"the guest dirties {human_size(dirty)}/s, the copy makes {human_size(copy)}/s"
            else:
                reason = "the guest keeps writing faster than the copy catches up"
        return Convergence(copy_rate=copy, dirty_rate=dirty, trend=trend, remaining=rem1, converging=not stuck,
                           reason=reason)

    def _sleeping_off_limit(self) -> bool:
        """All copied, and QEMU's speed limit still sleeps off what got it there.

        QEMU counts a burst as done when it is copied, then sleeps until the bytes copied so far
        fit the limit before it looks again (and goes ready): a 4 MiB active commit at 256 KiB/s
        sits at 100 % for up to 16 s with a quiet guest.  That is not dirty data; only a job still
        not ready well after that is.  The sleep ends at the later of: the last burst over the
        limit, and everything copied over the limit since the job began (earlier bursts that ran
        ahead of it are slept off at the end too).
        """
        if not self.speed:
            return False
        samples = self.remaining_samples
        run = None  # (time, offset) of the first sample of the latest stretch at "all copied"
        before = 0  # the offset before that stretch (0: the whole job may have been one burst)
        for t, off, ln in reversed(samples):
            if ln > 0 and off == ln:
                run = (t, off)
                continue
            before = off
            break
        if run is None:
            return False
        # the oldest sample kept (400: a long job's start is gone) and what was copied by then
        began, done = next(((t, off) for t, off, ln in samples if ln > 0), run)
        ends = max(run[0] + (run[1] - before) / self.speed, began + (run[1] - done) / self.speed)
        # with room for QEMU's rate-limit slices and a busy host waking it late: a job that really
        # keeps finding dirty data stays there far longer
        return samples[-1][0] - run[0] <= (ends - run[0]) * 1.5 + 4.0

    @property
    def io_error(self) -> bool:
        """QEMU reports an I/O error for the job (``io-status`` failed or nospace)."""
        return self.io_status not in ("ok", "", None)

    @property
    def stopped_on_error(self) -> bool:
        """Paused by QEMU on an I/O error (on-error stop/enospc): resume retries, cancel needs force."""
        return self.paused and self.io_error

    @property
    def state_text(self) -> str:
        if self.outcome is not None:
            return self.outcome
        if self.lost:
            return "lost (connection to its QEMU gone)"
        if self.stopped_on_error:
            return f"error ({self.io_status}), paused"
        if self.is_paused:
            return "paused"
        # QEMU 10 pauses every job around a graph change (paused/running, standby/ready):
        # only query-block-jobs' paused or the operator's pause makes a job paused
        if self.status == "paused":
            return "running"
        if self.status == "standby":
            return "ready"
        return self.status

    @property
    def stopped_at(self) -> str:
        """Where an unfinished job got to: '40% (6.4 MiB of 16.0 MiB)'."""
        if self.length <= 0:
            return f"{human_size(self.offset)} copied"
        return f"{self.percent} ({human_size(self.offset)} of {human_size(self.length)})"

    def _touch(self) -> None:
        self.version += 1


@dataclass(frozen=True)
class Convergence:
    copy_rate: float  # bytes/s the job copied
    dirty_rate: float  # bytes/s the guest added to what must be copied
    trend: float  # bytes/s the remaining amount changes (negative: shrinking)
    remaining: int
    converging: bool
    reason: str
