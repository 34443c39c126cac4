"""A real libvirtd for the tests: started when none runs (and stopped only then), and
TCG domains with no OS on qcow2 chains."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tui.backend.libvirt_demo import domain_xml

URI = "qemu:///system"
PIDFILES = {"virtlogd": Path("/run/virtlogd.pid"), "libvirtd": Path("/run/libvirtd.pid")}


def virsh(*args: str, uri: str = URI, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def answers(uri: str = URI) -> bool:
    try:
        return virsh("version", uri=uri, check=False, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


class Daemons:
    """libvirtd and virtlogd, started only when libvirtd does not answer; stop() ends only those."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def ensure(self, timeout: float = 60.0) -> None:
        kvm_for_qemu_user()
        if answers():
            return
        if os.geteuid() != 0:
            raise RuntimeError("libvirtd does not run and only root can start it for qemu:///system")
        for daemon in ("virtlogd", "libvirtd"):
            if not shutil.which(daemon) and not os.path.exists(f"/usr/sbin/{daemon}"):
                raise RuntimeError(f"{daemon} is not installed (apt-get install libvirt-daemon-system)")
        for daemon in ("virtlogd", "libvirtd"):
            pid = _pid(daemon)
            if pid is None:
                subprocess.run([daemon, "-d"], check=True, timeout=30)
                self.started.append(daemon)
        deadline = time.monotonic() + timeout
        while not answers():
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd did not answer `virsh version`")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.started and virsh("list", "--all", "--name", check=False).stdout.strip():
            # someone else (another test run on this machine) has domains on the libvirtd we
            # started meanwhile: it is theirs to use now, so it stays
            self.started.clear()
            return
        for daemon in reversed(self.started):
            pid = _pid(daemon)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
                for _ in range(200):
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.05)
        self.started.clear()


def kvm_for_qemu_user() -> None:
    """/dev/kvm as udev leaves it (group kvm, 0660) on machines without udev.

    A root-only /dev/kvm makes libvirtd think KVM comes and goes (probed as root, checked
    as libvirt-qemu): it then re-probes QEMU's capabilities on every call, and starting a
    domain takes ~45 s instead of ~1 s.
    """
    try:
        st = os.stat("/dev/kvm")
    except OSError:
        return
    if os.geteuid() == 0 and st.st_mode & 0o070 == 0 and st.st_gid == 0:
        import grp

        try:
            os.chown("/dev/kvm", -1, grp.getgrnam("kvm").gr_gid)
            os.chmod("/dev/kvm", 0o660)
        except (KeyError, OSError):
            pass


def _pid(daemon: str) -> int | None:
    try:
        pid = int(PIDFILES[daemon].read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


class Domains:
    """Domains a test made: transient ones (``virsh create``) or persistent ones; all removed at the end."""

    def __init__(self, prefix: str = "ctui") -> None:
        self.prefix = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.names: list[str] = []

    def create(self, disks: list[str], *, persistent: bool = False, name: str | None = None) -> str:
        name = name or f"{self.prefix}-{len(self.names) + 1}"
        xml = Path(disks[0]).parent / f"{name}.xml"
        xml.write_text(domain_xml(name, disks))
        self.names.append(name)
        if persistent:
            virsh("define", str(xml))
            virsh("start", name)
        else:
            virsh("create", str(xml))
        return name

    def remove(self) -> None:
        for name in self.names:
            virsh("destroy", name, check=False)
            virsh("undefine", name, check=False)
        self.names.clear()
