"""What the job model does per poll: cheap for jobs whose card would not change."""

from tui.backend.jobs import JobTracker


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
        changed = t.on_poll("q", [info(0, paused=True, status="paused")], [], now=i * 0.2)
        assert job not in changed
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
        assert job not in t.on_poll("q", [info(400, paused=True, status="paused")], [], now=1.2 + i * 0.2)
    assert job.version == version and job.rate == rate


def test_moving_job_changes_every_poll_and_rate_follows_new_samples():
    t = JobTracker()
    seen = []
    for i in range(6):
        changed = t.on_poll("q", [info(i * 100)], [], now=i * 0.5)
        seen.append(t.get("q", "s1") in changed)
    job = t.get("q", "s1")
    assert all(seen)
    assert job.rate == 200  # 100 bytes per 0.5 s over the window
    t.on_poll("q", [info(900)], [], now=3.0)
    assert job.rate > 200  # recomputed for the new sample, not a stale cached value
