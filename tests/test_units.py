"""Pure parsing and bookkeeping: speeds, addresses, graphs, job events.

These use recorded QEMU answers; the real-QEMU tests are the evidence that
features work, these pin down the parsing rules.
"""

from __future__ import annotations

import pytest

from tui.backend.block_graph import build_drives
from tui.backend.chain import chain_notation
from tui.backend.errors import ValidationError
from tui.backend.job_tracker import JobTracker
from tui.backend.fmt import human_duration, human_size, parse_speed
from tui.backend.plan import make_id, make_node_name
from tui.backend.session import address_warning, is_loopback, parse_address


@pytest.mark.parametrize(
    "text,value",
    [("", 0), ("0", 0), ("unlimited", 0), ("1048576", 1 << 20), ("10M", 10 << 20), ("512K", 512 << 10),
     ("1.5G", int(1.5 * (1 << 30))), ("2MiB/s", 2 << 20), ("64k", 64 << 10)],
)
def test_parse_speed(text, value):
    assert parse_speed(text) == value


@pytest.mark.parametrize("text,msg", [("-1", "negative"), ("fast", "not a number"), ("99999P", "absurdly"), ("1e9", "not a number")])
def test_parse_speed_rejects(text, msg):
    with pytest.raises(ValidationError, match=msg) as exc:
        parse_speed(text)
    assert exc.value.field == "speed"


def test_addresses():
    assert parse_address("127.0.0.1:4444") == ("127.0.0.1", 4444)
    assert parse_address("tcp:localhost:4444") == ("localhost", 4444)
    assert parse_address("/run/q.sock") == "/run/q.sock"
    assert parse_address("unix:/run/q.sock") == "/run/q.sock"
    assert is_loopback(("127.0.0.1", 1)) and is_loopback("/x") and not is_loopback(("10.1.2.3", 1))
    assert address_warning(("127.0.0.1", 4444)) is None and address_warning("/run/q.sock") is None
    assert "no authentication" in address_warning(parse_address("qemu-host.example:4444"))


def test_sizes_and_ids():
    assert human_size(1536) == "1.5 KiB" and human_size(3) == "3 B"
    assert human_duration(75) == "1m15s" and human_duration(None) == "--"
    assert make_id("stream", "drive0", {"stream-drive0-1"}) == "stream-drive0-2"
    assert make_id("mirror", "#block12", set()).startswith("mirror-block12")
    assert make_node_name("/x/2 my disk.qcow2", set()) == "n2_my_disk"
    assert chain_notation(["A", "B"]) == "[A] -> [B]"


def _node(name, nid, typ="block-driver"):
    return {"name": name, "id": nid, "type": typ}


def _named(name, drv, filename, backing=None):
    image = {"virtual-size": 1 << 26, "filename": filename, "format": drv, "actual-size": 4096}
    if backing:
        image["backing-filename"] = backing
    return {"node-name": name, "drv": drv, "file": filename, "ro": False, "image": image}


def test_build_drives_hides_filters_and_marks_jobs():
    # export BB -> copy-on-read filter -> top (D) -> C ; stream job holds top and C
    graph = {
        "nodes": [_node("", 1, "block-backend"), _node("#cor", 2), _node("top", 3), _node("#c", 4),
                  _node("s1", 5, "block-job"), _node("#f3", 6), _node("#f4", 7)],
        "edges": [
            {"parent": 1, "child": 2, "name": "root"},
            {"parent": 2, "child": 3, "name": "file"},
            {"parent": 3, "child": 4, "name": "backing"},
            {"parent": 3, "child": 6, "name": "file"},
            {"parent": 4, "child": 7, "name": "file"},
            {"parent": 5, "child": 2, "name": "main node"},
            {"parent": 5, "child": 3, "name": "active node"},
            {"parent": 5, "child": 4, "name": "intermediate node"},
        ],
    }
    named = [
        _named("#cor", "copy-on-read", "/i/D.qcow2"),
        _named("top", "qcow2", "/i/D.qcow2", "C.qcow2"),
        _named("#c", "qcow2", "/i/C.qcow2"),
        _named("#f3", "file", "/i/D.qcow2"),
        _named("#f4", "file", "/i/C.qcow2"),
    ]
    exports = [{"id": "drive0", "node-name": "#cor", "type": "nbd"}]
    drives, targets = build_drives("q", graph, named, [], exports)
    assert len(drives) == 1 and not targets
    d = drives[0]
    assert d.name == "drive0" and d.device == "top" and not d.has_device
    assert d.notation() == "[C.qcow2] -> [D.qcow2]"
    assert d.jobs == ["s1"] and d.active.job == "s1" and d.base.job == "s1"
    assert d.active.backing_file == "C.qcow2"


def test_job_events_lifecycle_mirror_cancel_after_ready():
    t = JobTracker()
    t.on_event("q", {"event": "JOB_STATUS_CHANGE", "data": {"id": "m1", "status": "created"}}, now=0)
    t.on_event("q", {"event": "JOB_STATUS_CHANGE", "data": {"id": "m1", "status": "running"}}, now=0)
    t.on_poll("q", [{"device": "m1", "type": "mirror", "offset": 0, "len": 100, "speed": 0,
                     "status": "running", "ready": False, "paused": False, "io-status": "ok"}], [], now=0)
    t.on_poll("q", [{"device": "m1", "type": "mirror", "offset": 50, "len": 100, "speed": 0,
                     "status": "running", "ready": False, "paused": False, "io-status": "ok"}], [], now=1)
    job = t.get("q", "m1")
    assert job.rate == pytest.approx(50) and job.eta == pytest.approx(1)
    t.on_event("q", {"event": "BLOCK_JOB_READY", "data": {"device": "m1", "type": "mirror", "len": 100, "offset": 100, "speed": 0}}, now=2)
    assert job.ready and job.eta is None
    job.cancel_requested = True
    t.on_event("q", {"event": "BLOCK_JOB_COMPLETED", "data": {"device": "m1", "type": "mirror", "len": 100, "offset": 100, "speed": 0}}, now=3)
    assert job.outcome.startswith("cancelled after ready")
    assert not job.active


def test_job_vanished_and_lost():
    t = JobTracker()
    t.on_poll("q", [{"device": "s1", "type": "stream", "offset": 1, "len": 9, "status": "running"}], [], now=0)
    assert t.on_lost("q")[0].state_text.startswith("lost")
    t.on_poll("q", [], [], now=1)
    assert t.get("q", "s1").outcome.startswith("lost: its QEMU went away")
    assert t.get("q", "s1").result == "lost" and t.get("q", "s1").stopped_at == "11% (1 B of 9 B)"


def test_convergence_from_samples():
    from tui.backend.jobs import Job

    j = Job(id="m", session="q", type="mirror")
    # remaining grows: the guest dirties 3 MB/s, the copy makes 1 MB/s
    for t in range(12):
        j.remaining_samples.append((float(t), t * 1_000_000, 50_000_000 + t * 3_000_000))
    c = j.convergence(window=10)
    assert not c.converging and c.copy_rate == 1_000_000 and c.dirty_rate == 3_000_000
    assert c.reason == "the guest dirties 2.9 MiB/s, the copy makes 976.6 KiB/s"
    j.speed = 1_000_000
    assert "speed limit 976.6 KiB/s holds the copy back" in j.convergence(window=10).reason
    # shrinking: fine
    k = Job(id="n", session="q", type="mirror")
    for t in range(12):
        k.remaining_samples.append((float(t), t * 4_000_000, 60_000_000 + t * 1_000_000))
    assert k.convergence(window=10).converging
    # too early to say
    assert Job(id="o", session="q", type="mirror").convergence() is None


def test_mirror_counting_its_work_at_start_is_not_flagged():
    """QEMU reports a mirror as offset 0, len 0 before it has counted the disk (seen under load):
    the jump to the disk's size is not the guest writing (a false "speed limit holds the copy back")."""
    t = JobTracker()
    mib = 1 << 20

    def poll(now: float, offset: int, length: int) -> None:
        t.on_poll("q", [{"device": "m", "type": "mirror", "offset": offset, "len": length, "speed": 4 * mib,
                         "status": "running", "ready": False}], [], now=now)

    poll(0.0, 0, 0)
    assert t.get("q", "m").convergence(window=2) is None
    for step in range(1, 20):
        now = step * 0.1
        poll(now, 16 * mib + int(now * 4 * mib), 96 * mib)
        c = t.get("q", "m").convergence(window=2)
        assert c is None or c.converging, (now, c)
    # QEMU still at 0/0 after a whole window: too early to say, not "all copied and not ready"
    u = JobTracker()
    for step in range(25):
        u.on_poll("q", [{"device": "m", "type": "mirror", "offset": 0, "len": 0, "speed": 4 * mib,
                         "status": "running", "ready": False}], [], now=step * 0.1)
    assert u.get("q", "m").convergence(window=2) is None
