"""Faults against real QEMU: killed QEMU, dead or strange sockets, another
client steering our jobs, chaintui itself going away, the lab cleaning up."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from qemu.qmp import QMPClient

from tui.backend import ops
from tui.backend.errors import ChainTuiError, ConnectFailed
from tui.backend.hub import Hub
from tui.backend.lab import Lab

from .conftest import MiB, connect, same, wait_for


def start_job(hub: Hub, s: str, kind: str, lab: Lab):
    d = hub.drive(s, "drive0")
    if kind == "stream":
        return ops.plan_stream(d, None, "16K", "job-1")
    if kind == "commit":
        return ops.plan_commit(d, "A", None, "16K", "job-1")
    return ops.plan_mirror(d, str(lab.dir / "target.qcow2"), "qcow2", "full", "1M", "job-1")


@pytest.mark.parametrize("kind", ["stream", "mirror", "commit"])
async def test_qemu_killed_mid_job_then_back(lab, hub: Hub, kind):
    paths = lab.make_chain(4, 64 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    s = (await connect(hub, q)).name
    [job] = await hub.run_plan(start_job(hub, s, kind, lab))
    await hub.wait_job(s, job.id, lambda j: j.status == "running")
    q.proc.send_signal(signal.SIGKILL)
    q.proc.wait()
    sess = hub.sessions[s]
    await wait_for(lambda: sess.state.value == "lost", what="lost")
    assert job.state_text == "lost (connection to its QEMU gone)"
    # a QEMU comes back on the same socket, and another client starts a job on it
    q2 = lab.start(paths[-1], name=q.qmp.stem, named_nodes=True)
    other = QMPClient("other")
    await other.connect(str(q2.spare))
    await other.execute("block-stream", {"job-id": "after", "device": "D", "base-node": "B", "speed": 16384})
    await wait_for(lambda: sess.state.value == "connected", timeout=15, what="reconnect")
    again = await hub.wait_job(s, "after", lambda j: j.drive == "drive0" and j.active)
    assert again.type == "stream"
    await wait_for(lambda: job.finished, what="the old job marked ended")
    assert job.result == "lost"
    await other.execute("block-job-set-speed", {"device": "after", "speed": 0})
    await hub.wait_job(s, "after", lambda j: j.finished)
    await other.disconnect()
    await hub.close()
    q2.stop()
    same(lab, paths[-1], ref)  # a killed job loses nothing the guest had


def listening(path: Path) -> socket.socket:
    """A unix socket at ``path`` that accepts connections (a stand-in server; parsing tests only)."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen()
    return srv


async def test_socket_closing_during_greeting(tmp_path):
    path = tmp_path / "rude.sock"
    srv = listening(path)

    def serve():
        for _ in range(3):
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b'{"QMP": {"version": {')  # half a greeting
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    hub = Hub()
    try:
        with pytest.raises(ConnectFailed, match="closed the connection during the QMP greeting|not a QMP server"):
            await hub.add(str(path), reconnect=False)
    finally:
        await hub.close()
        srv.close()


async def test_a_message_qemu_sends_that_cannot_be_read_is_named_not_called_a_close(tmp_path):
    """A server that greets, takes qmp_capabilities, then sends a line that is not JSON: the session
    is lost, and its reason says the message could not be read (not "connection closed by QEMU")."""
    from tui.backend.session import QemuSession, SessionState

    path = tmp_path / "garbled.sock"
    srv = listening(path)

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, '
                     b'"capabilities": []}}\r\n')
        conn.recv(4096)  # qmp_capabilities
        conn.sendall(b'{"return": {}}\r\n')
        conn.recv(4096)  # the first command once connected: answered with a line that is not JSON
        conn.sendall(b'{"return": this is not json}\r\n')
        while conn.recv(4096):  # until the client hangs up
            pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    session = QemuSession(str(path), reconnect=False)
    try:
        await session.start()
        with pytest.raises(ChainTuiError):
            await session.execute("query-version")
        await wait_for(lambda: session.state is SessionState.LOST, what="the session lost")
        assert "could not be read" in session.last_error and "closed by QEMU" not in session.last_error
    finally:
        await session.close()
        srv.close()


async def test_socket_that_speaks_something_else(tmp_path):
    path = tmp_path / "http.sock"
    srv = listening(path)

    def serve():
        try:
            conn, _ = srv.accept()
        except OSError:
            return
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        conn.settimeout(30)
        try:  # open until chaintui hangs up, so it reads the answer, not an end of file
            while conn.recv(4096):
                pass
        except OSError:
            pass
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    hub = Hub()
    try:
        with pytest.raises(ConnectFailed) as exc:
            await hub.add(str(path), reconnect=False)
        assert str(path) in str(exc.value)
    finally:
        await hub.close()
        srv.close()


async def test_dead_socket_keeps_retrying_and_connects_later(lab, hub: Hub):
    paths = lab.make_chain(2, 16 * MiB)
    sock = lab.dir / "later.qmp"
    session = await hub.add(str(sock))  # nothing there yet: lost, retrying
    assert session.state.value == "lost" and "no such socket" in session.last_error
    lab.start(paths[-1], name="later")
    await wait_for(lambda: session.state.value == "connected", timeout=15, what="connected later")
    await wait_for(lambda: hub.drives.get(session.name), what="drives")


@pytest.mark.parametrize("verb", ["cancel", "complete"])
async def test_another_client_steers_our_job(lab, hub: Hub, verb):
    paths = lab.make_chain(3, 32 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    s = (await connect(hub, q)).name
    d = hub.drive(s, "drive0")
    target = lab.dir / "t.qcow2"
    [job] = await hub.run_plan(ops.plan_mirror(d, str(target), "qcow2", "full", 0, "m1"))
    await hub.wait_job(s, job.id, lambda j: j.ready)
    other = QMPClient("other")
    await other.connect(str(q.spare))
    await other.execute(f"block-job-{verb}", {"device": "m1"})
    await other.disconnect()
    await hub.wait_job(s, job.id, lambda j: j.finished)
    # while QEMU switches the export to the target, one re-read may not find drive0 yet: wait for it, jobs gone
    await wait_for(lambda: any(d.name == "drive0" and not d.jobs for d in hub.drives.get(s, [])), what="chain refreshed")
    expected = "t.qcow2" if verb == "complete" else "C.qcow2"
    assert hub.drive(s, "drive0").active.label == expected
    await hub.close()
    q.stop()
    same(lab, target, ref)


@pytest.mark.qemu
def test_lab_cleans_up_after_an_exception(tmp_path):
    with pytest.raises(RuntimeError):
        with Lab(root=None) as lab:
            root = lab.dir
            q = lab.start(lab.make_chain(2, 16 * MiB)[-1])
            pid = q.proc.pid
            raise RuntimeError("boom")
    assert not root.exists()
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not a QEMU
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except FileNotFoundError:
        return False


def _qemus_under(directory: Path) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu" in cmd and str(directory).encode() in cmd and _alive(int(d.name)):
                out.append(int(d.name))
    return out


@pytest.mark.qemu
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGHUP", "ctrl+q", "SIGKILL"])
def test_demo_leaves_nothing_behind(tmp_path, how):
    """chaintui --demo in a terminal, stopped in each way: no QEMU, no temporary files."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), TERM="xterm-256color", COLUMNS="100", LINES="30",
               XDG_STATE_HOME=str(tmp_path / "state"))
    pid, fd = pty.fork()
    if pid == 0:  # child: the demo on a terminal of its own
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell's background job inherits SIGINT ignored
        os.execvpe(sys.executable, [sys.executable, "-m", "tui", "--demo"], env)
    output = bytearray()

    def read_some(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                import select

                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    output.extend(os.read(fd, 65536))
            except OSError:
                return

    deadline = time.monotonic() + 30
    while not _qemus_under(tmp) or b"drive0" not in output:
        read_some(0.2)
        assert time.monotonic() < deadline, "the demo did not start: " + output[-500:].decode(errors="replace")
    read_some(0.5)
    if how == "ctrl+q":
        os.write(fd, b"\x11")
    else:
        os.kill(pid, getattr(signal, how))
    end = time.monotonic() + 20
    status = None
    while time.monotonic() < end:
        read_some(0.1)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"chaintui did not exit after {how}")
    os.close(fd)
    deadline = time.monotonic() + 5
    while _qemus_under(tmp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _qemus_under(tmp), f"QEMU left running after {how}"
    if how != "SIGKILL":  # a killed process cannot remove its files; its QEMU still dies with it
        assert list(tmp.iterdir()) == [], f"files left after {how}: {list(tmp.iterdir())}"
    assert b"Traceback" not in output


def test_chaintui_killed_while_its_job_runs(lab):
    """chaintui on a running QEMU starts a merge by keystrokes and is then killed:
    the job goes on inside QEMU, and a new chaintui finds it with its progress."""
    paths = lab.make_chain(4, 64 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", XDG_STATE_HOME=str(lab.dir / "state"))
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "tui", str(q.qmp)], env)
    output = bytearray()

    def pump(seconds: float) -> None:
        import select

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r, _, _ = select.select([fd], [], [], 0.05)
            if r:
                try:
                    output.extend(os.read(fd, 65536))
                except OSError:
                    return

    deadline = time.monotonic() + 20
    while b"ACTIVE" not in output:
        pump(0.2)
        assert time.monotonic() < deadline, output[-400:].decode(errors="replace")
    os.write(fd, b"s")  # merge, flatten (the active image is highlighted)
    pump(1.0)
    os.write(fd, b"16K\r")
    deadline = time.monotonic() + 10
    while b"stream-drive0-1" not in output:
        pump(0.2)
        assert time.monotonic() < deadline, "the job did not start"
    pump(0.5)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(fd)

    async def check() -> None:
        hub = Hub(poll_interval=0.05)
        try:
            s = (await hub.add(str(q.qmp), reconnect=False)).name
            await hub.poll(s)
            job = hub.tracker.get(s, "stream-drive0-1")
            assert job is not None and job.active and job.length > 0 and job.speed == 16 * 1024
            await hub.refresh(s)
            assert job.drive == "drive0"
            await hub.set_speed(s, job.id, 0)
            await hub.wait_job(s, job.id, lambda j: j.finished)
            assert job.outcome == "completed"
        finally:
            await hub.close()

    asyncio.run(check())
    from tui.backend.audit import AuditLog

    trail = list(AuditLog(lab.dir / "state" / "chaintui" / "audit.jsonl").read(job="stream-drive0-1"))
    assert [e["command"] for e in trail] == ["block-stream"] and trail[0]["ok"]
    q.stop()
    same(lab, paths[-1], ref)
