"""What the job model does per poll: cheap for jobs whose card would not change."""

from tui.backend.jobs import JobTracker


def info(offset: int, paused: bool = False, status: str = "running") -> dict:
    return {"device": "s1", "type": "stream", "offset": offset, "len": 1000, "speed": 0, "status": status,
            "ready": False, "paused": paused, "io-status": "ok", "busy": not paused}


def test_paused_job_stops_changing_once_its_rate_is_zero():
    t = JobTracker()
    for i in range(5):
        t.on_poll("q", [info(i * 100)], [], now=i * 0.2)
    job = t.get("q", "s1")
    assert job.rate > 0 and len(job.rate_history) >= 4
    # paused: the rate decays to 0 over the rate window, then nothing on the card changes
    now = 1.0
    for _ in range(40):
        now += 0.2
        t.on_poll("q", [info(400, paused=True, status="paused")], [], now=now)
    assert job.rate == 0
    version, history = job.version, list(job.rate_history)
    for _ in range(20):
        now += 0.2
        changed = t.on_poll("q", [info(400, paused=True, status="paused")], [], now=now)
        assert job not in changed
    assert job.version == version and list(job.rate_history) == history


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
