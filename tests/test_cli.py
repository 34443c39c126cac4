"""The command line against real QEMU: chains, --json, dead sockets, --version."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from .conftest import MiB


def chaintui(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True, timeout=timeout)


def test_version():
    out = chaintui("--version")
    assert out.returncode == 0 and out.stdout.startswith("chaintui ")


def test_no_arguments_explains():
    out = chaintui()
    assert out.returncode == 2 and "--demo" in out.stderr


def test_chains_prints_notation_and_jobs(lab):
    paths = lab.make_chain(4, 64 * MiB)
    q = lab.start(paths[-1])
    # a job another client runs, throttled so it is still there
    import asyncio

    from qemu.qmp import QMPClient

    async def start_job():
        c = QMPClient("other")
        await c.connect(str(q.spare))
        await c.execute("block-stream", {"job-id": "s1", "device": "D", "speed": 1024})
        await c.disconnect()

    asyncio.run(start_job())
    out = chaintui("chains", str(q.qmp))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "drive0: [A.qcow2] -> [B.qcow2] -> [C.qcow2] -> [D.qcow2]"
    assert lines[1].startswith("  job s1 (stream on drive0): running")
    js = chaintui("chains", "--json", str(q.qmp))
    data = json.loads(js.stdout)
    drive = data["qemus"][0]["drives"][0]
    assert [i["file"].rsplit("/", 1)[1] for i in drive["chain"]] == ["A.qcow2", "B.qcow2", "C.qcow2", "D.qcow2"]
    assert data["qemus"][0]["jobs"][0]["id"] == "s1"
    q.stop()


def test_chains_two_qemus(lab):
    a = lab.make_chain(2, 16 * MiB, prefix="a")
    b = lab.make_chain(3, 16 * MiB, prefix="b")
    q1 = lab.start(a[-1])
    q2 = lab.start(b[-1], kind="system")
    out = chaintui("chains", str(q1.qmp), str(q2.qmp))
    assert out.returncode == 0, out.stderr
    assert "drive0: [aA.qcow2] -> [aB.qcow2]" in out.stdout
    assert "drive0: [bA.qcow2] -> [bB.qcow2] -> [bC.qcow2]" in out.stdout


def test_dead_sockets(tmp_path):
    out = chaintui("chains", str(tmp_path / "none.sock"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"chaintui: {tmp_path / 'none.sock'}: no such socket"
    # a socket file nobody listens on
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    out = chaintui("chains", str(dead))
    assert out.returncode == 1 and "connection refused" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_socket_that_is_not_qmp(tmp_path):
    path = tmp_path / "silent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()
    try:
        out = chaintui("chains", str(path), timeout=20)
    finally:
        srv.close()
    assert out.returncode == 1 and "no QMP greeting" in out.stderr
