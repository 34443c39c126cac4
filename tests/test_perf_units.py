"""What the job model does per poll: cheap for jobs whose card would not change."""

from tui.backend.hub_feed import PAUSED_EVERY, poll_due
from tui.backend.job_tracker import JobTracker


def info(offset: int, paused: bool = False, status: str = "running") -> dict:
    return {"device": "s1", "type": "stream", "offset": offset, "len": 1000, "speed": 0, "status": status,
            "ready": False, "paused": paused, "io-status": "ok", "busy": not paused}


def test_job_standing_still_costs_nothing():
    """A job that does not move (paused from the start, or stalled at 0) is not redrawn poll after poll."""
    t = JobTracker()
    t.on_poll("q", [info(0, paused=True, status="paused")], [], now=0.0)
    job = t.get("q", "s1")
    version, history = job.version, list(job.rate_history)
    for i in range(1, 40):
        polled = t.on_poll("q", [info(0, paused=True, status="paused")], [], now=i * 0.2)
        assert job not in polled.changed and not polled.urgent
    assert job.version == version and list(job.rate_history) == history


def test_paused_job_keeps_its_rate_and_stops_changing():
    t = JobTracker()
    for i in range(5):
        t.on_poll("q", [info(i * 100)], [], now=i * 0.2)
    job = t.get("q", "s1")
    rate = job.rate
    assert rate > 0
    t.on_poll("q", [info(400, paused=True, status="paused")], [], now=1.0)
    version = job.version
    for i in range(40):
        assert job not in t.on_poll("q", [info(400, paused=True, status="paused")], [], now=1.2 + i * 0.2).changed
    assert job.version == version and job.rate == rate


def test_moving_job_changes_every_poll_and_rate_follows_new_samples():
    t = JobTracker()
    seen = []
    for i in range(6):
        changed = t.on_poll("q", [info(i * 100)], [], now=i * 0.5).changed
        seen.append(t.get("q", "s1") in changed)
    job = t.get("q", "s1")
    assert all(seen)
    assert job.rate == 200  # 100 bytes per 0.5 s over the window
    t.on_poll("q", [info(900)], [], now=3.0)
    assert job.rate > 200  # recomputed for the new sample, not a stale cached value


def test_poll_says_when_a_state_changed_not_only_progress():
    """Progress waits for the next tick; a state change or an ended job is shown at once (urgent)."""
    t = JobTracker()
    assert t.on_poll("q", [info(0)], [], now=0.0).urgent  # a new job: its state is new
    progress = t.on_poll("q", [info(100)], [], now=0.2)
    assert progress.changed and not progress.urgent
    assert t.on_poll("q", [info(100, paused=True, status="paused")], [], now=0.4).urgent
    gone = t.on_poll("q", [], [], now=0.6)  # QEMU no longer has it
    assert gone.urgent and gone.changed == [t.get("q", "s1")] and t.get("q", "s1").outcome


def test_sessions_whose_jobs_are_all_paused_are_polled_once_a_second():
    """Paused jobs do not move and their resuming is an event: 1 poll in PAUSED_EVERY ticks, not every tick."""
    t = JobTracker()
    t.on_poll("q", [info(0, paused=True, status="paused"), dict(info(5, paused=True, status="paused"), device="s2")], [],
              now=0.0)
    paused = t.active_for("q")
    assert len(paused) == 2
    assert sum(poll_due(paused, tick, full=False) for tick in range(1, 1 + 10 * PAUSED_EVERY)) == 10
    assert all(poll_due(paused, tick, full=True) for tick in range(1, 11))  # after a command: at once
    t.on_poll("q", [info(0, paused=True, status="paused"), dict(info(9), device="s2")], [], now=0.2)
    assert all(poll_due(t.active_for("q"), tick, full=False) for tick in range(1, 11))  # one runs: every tick
    assert poll_due([], 3, full=False)


def test_rate_after_a_resume_is_the_copys_pace_not_diluted_by_the_pause():
    """Seen in tmux: 52 KiB/s for ~10 s after a resume of a stream copying at 128-256 KiB/s."""
    t = JobTracker()
    for i in range(10):
        t.on_poll("q", [info(i * 100)], [], now=i * 0.2)  # 500 B/s
    job = t.get("q", "s1")
    assert job.rate == 500
    for i in range(50):  # paused for 10 s
        t.on_poll("q", [info(900, paused=True, status="paused")], [], now=2.0 + i * 0.2)
    assert job.rate == 500  # a paused card keeps the rate it ran at
    t.on_poll("q", [info(900)], [], now=12.0)  # running again
    t.on_poll("q", [info(1000)], [], now=12.2)
    # the pause counted: 600 bytes over 11 s, ~55 B/s; cut out: the steps around it are 0.4 s apart
    assert 400 < job.rate <= 500, job.rate
