"""QMP on another machine through OpenSSH unix-socket forwarding, against a real
sshd started by the test on loopback with throwaway keys."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tui.backend import ops
from tui.backend.errors import ConnectFailed
from tui.backend.hub import Hub

from .conftest import MiB, same, wait_for

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@pytest.fixture
def sshd(tmp_path, monkeypatch):
    if not os.path.exists(SSHD):
        pytest.fail(f"the ssh:// tests start a real sshd, and {SSHD} is missing: apt-get install openssh-server "
                    "(or run `make test`)", pytrace=False)
    d = tmp_path / "ssh"
    d.mkdir(mode=0o700)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "AllowStreamLocalForwarding yes\nLogLevel ERROR\n"
    )
    (d / "ssh_config").write_text(
        f"Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
        "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "sshd did not start"
            time.sleep(0.05)
    monkeypatch.setenv("CHAINTUI_SSH_CONFIG", str(d / "ssh_config"))
    yield f"ssh://{getpass.getuser()}@127.0.0.1:{port}"
    proc.terminate()
    proc.wait()


def test_chains_over_ssh(lab, sshd):
    paths = lab.make_chain(3, 16 * MiB)
    q = lab.start(paths[-1])
    out = subprocess.run([sys.executable, "-m", "tui", "chains", f"{sshd}{q.qmp}"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "drive0: [A.qcow2] -> [B.qcow2] -> [C.qcow2]" in out.stdout


async def test_job_over_ssh_and_tunnel_restarted(lab, sshd):
    paths = lab.make_chain(4, 32 * MiB, absolute=True)
    ref = lab.flatten(paths[-1])
    q = lab.start(paths[-1], named_nodes=True)
    hub = Hub(poll_interval=0.05)
    try:
        session = await hub.add(f"{sshd}{q.qmp}")
        assert session.state.value == "connected", session.last_error
        assert session.name == f"127.0.0.1:{q.qmp.name}" and session.address_text.startswith("ssh://")
        await wait_for(lambda: hub.drives.get(session.name), what="drives over ssh")
        d = hub.drive(session.name, "drive0")
        [job] = await hub.run_plan(ops.plan_stream(d, "B", "64K", "s1"))
        # the ssh client dies: the session is lost, the tunnel is made again, the job is found again
        session.tunnel.proc.kill()
        await wait_for(lambda: session.state.value == "lost", what="lost")
        await wait_for(lambda: session.state.value == "connected", timeout=20, what="reconnected over a new tunnel")
        await hub.poll(session.name)
        again = hub.tracker.get(session.name, "s1")
        assert again is not None and again.active
        await hub.set_speed(session.name, "s1", 0)
        await hub.wait_job(session.name, "s1", lambda j: j.finished)
        local_dir = os.path.dirname(session.tunnel.local)
    finally:
        await hub.close()
    assert not os.path.exists(local_dir), "the tunnel's socket directory is removed"
    q.stop()
    same(lab, paths[-1], ref)


async def test_ssh_failure_is_one_clear_line(lab, sshd):
    port = sshd.rsplit(":", 1)[1]
    hub = Hub()
    try:
        with pytest.raises(ConnectFailed, match=r"ssh failed: .*(No such file|open failed|Connection refused|forward)|QMP greeting|closed the connection"):
            await hub.add(f"ssh://{getpass.getuser()}@127.0.0.1:{port}/nonexistent/qmp.sock", reconnect=False)
        with pytest.raises(ConnectFailed, match="ssh failed: .*Connection refused"):
            await hub.add(f"ssh://{getpass.getuser()}@127.0.0.1:1/x.sock", reconnect=False)
        with pytest.raises(ConnectFailed, match="expected ssh://"):
            await hub.add("ssh://host-only", reconnect=False)
    finally:
        await hub.close()


def test_config_names_endpoints(lab, tmp_path, sshd):
    """`chaintui` with no argument opens every endpoint of config.toml (local and ssh)."""
    from tui.config import ConfigError, load_endpoints

    a = lab.start(lab.make_chain(2, 16 * MiB, prefix="a")[-1])
    b = lab.start(lab.make_chain(3, 16 * MiB, prefix="b")[-1])
    cfg = tmp_path / "chaintui" / "config.toml"
    cfg.parent.mkdir()
    cfg.write_text(
        f'[[endpoint]]\nname = "local-vm"\naddress = "{a.qmp}"\n\n[[endpoint]]\naddress = "{sshd}{b.qmp}"\n'
    )
    eps = load_endpoints(cfg)
    assert [e.name for e in eps] == ["local-vm", None] and eps[1].address.startswith("ssh://")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[endpoint]]\nname = 'x'\n")
    with pytest.raises(ConfigError, match="needs an address"):
        load_endpoints(bad)

    import asyncio

    from tui.app import ChainApp

    async def run() -> None:
        app = ChainApp([(e.address, e.name) for e in eps], hub=Hub(poll_interval=0.05))
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(400):
                if len(app.hub.all_drives()) == 2:
                    break
                await pilot.pause(0.05)
            assert sorted(app.hub.sessions) == sorted(["local-vm", f"127.0.0.1:{b.qmp.name}"])
            assert {d.notation() for d in app.hub.all_drives()} == {
                "[aA.qcow2] -> [aB.qcow2]", "[bA.qcow2] -> [bB.qcow2] -> [bC.qcow2]"}

    asyncio.run(run())
