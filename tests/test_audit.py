"""The audit trail: every action sent, with its result or QEMU's error; `chaintui log`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tui.backend import ops
from tui.backend.audit import AuditLog
from tui.backend.errors import QMPCommandError
from tui.backend.hub import Hub

from .conftest import MiB, connect


async def test_actions_are_audited_and_printed(lab, tmp_path):
    state = tmp_path / "state"
    audit = AuditLog(state / "chaintui" / "audit.jsonl")
    hub = Hub(poll_interval=0.05, audit=audit)
    paths = lab.make_chain(4, 32 * MiB, absolute=True)
    q = lab.start(paths[-1], named_nodes=True)
    try:
        s = (await connect(hub, q)).name
        d = hub.drive(s, "drive0")
        [job] = await hub.run_plan(ops.plan_stream(d, "B", "64K", "stream-drive0-1"))
        await hub.set_speed(s, job.id, 0)
        await hub.wait_job(s, job.id, lambda j: j.finished)
        await hub.settle(s)  # the chain as it is after the job (its nodes no longer busy)
        bad = ops.plan_stream(hub.drive(s, "drive0"), None, 0, "s2")
        bad.steps[0].arguments["base-node"] = "gone"
        with pytest.raises(QMPCommandError):
            await hub.run_plan(bad)
    finally:
        await hub.close()
        q.stop()
    entries = list(audit.read())
    assert [e["command"] for e in entries] == ["block-stream", "block-job-set-speed", "block-stream"]
    first = entries[0]
    assert first["ok"] and first["drive"] == "drive0" and first["job"] == "stream-drive0-1"
    assert first["endpoint"] == str(q.qmp) and first["user"] and first["arguments"]["base-node"] == "B"
    assert entries[1]["job"] == "stream-drive0-1"
    assert not entries[2]["ok"] and "gone" in entries[2]["error"]["desc"]
    # only what chaintui sent: no query answers, nothing of the guest's data
    assert all(not e["command"].startswith("query") for e in entries)
    env = dict(os.environ, XDG_STATE_HOME=str(state))
    out = subprocess.run([sys.executable, "-m", "tui", "log", "--job", "stream-drive0-1"], capture_output=True, text=True, env=env)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and "block-stream" in lines[0] and lines[0].endswith("→ ok")
    js = subprocess.run([sys.executable, "-m", "tui", "log", "--json", "--drive", "drive0"], capture_output=True, text=True, env=env)
    assert len([json.loads(x) for x in js.stdout.splitlines()]) == 3
