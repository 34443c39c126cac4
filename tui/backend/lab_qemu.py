"""The QEMU processes of the embedded lab: their command lines, their monitors, their exports.

:class:`~tui.backend.lab.Lab` keeps the images and the list of processes; this
module says how each kind of QEMU is started (``qsd``: qemu-storage-daemon;
``system``: qemu-system-x86_64 ``-M none``; ``libvirt`` and ``q35``: a q35 that
never runs its CPUs, with its drives named as libvirt names them) and talks to
the lab's own monitors with ``qemu.qmp`` (quit, NBD exports).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from .plan import make_node_name

T = TypeVar("T")


class LabError(RuntimeError):
    pass


def pdeathsig() -> None:  # runs in the child before exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run(args: list[str], cwd: str | os.PathLike[str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(map(str, args))} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def chain_info(image: Path | str) -> list[dict]:
    """``qemu-img info --backing-chain`` of an image, top first."""
    proc = run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(image)])
    data = json.loads(proc.stdout)
    return data if isinstance(data, list) else [data]


def _keyval(path: str | os.PathLike[str]) -> str:
    """Escape a value for QEMU's key=value option syntax."""
    return str(path).replace(",", ",,")


@dataclass
class LabQemu:
    """One QEMU process the lab started, serving one or more drives."""

    kind: str  # "qsd" (qemu-storage-daemon), "system" (qemu-system-x86_64 -M none),
    # "libvirt" (q35, -blockdev chains with libvirt's node names, -device virtio-blk-pci,id=virtio-diskN)
    # or "q35" (q35, -drive + -device virtio-blk-pci,drive=driveN,id=virtio-diskN)
    proc: subprocess.Popen[bytes]
    qmp: Path
    nbd: Path | None
    drives: list[str]
    log: Path
    ctl: Path  # a monitor of the lab's own (quit, exports)
    spare: Path  # a monitor for "another QMP client" (QEMU serves one client per monitor)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def nbd_uri(self, drive: str = "drive0") -> str:
        if self.nbd is None:
            raise LabError("this QEMU has no NBD export")
        return f"nbd+unix:///{drive}?socket={self.nbd}"

    def write(self, offset: int, length: int, pattern: int, drive: str = "drive0") -> None:
        """Write through the NBD export, as the guest would."""
        run(["qemu-io", "-f", "raw", "-c", f"write -P {pattern} {offset} {length}", self.nbd_uri(drive)])

    def stop(self, timeout: float = 10.0) -> None:
        """Ask QEMU to quit (closing its images cleanly), kill it if it will not."""
        if self.alive:
            try:
                _on_monitor(self.ctl, _quit, timeout=5.0)
            except (QMPError, OSError, asyncio.TimeoutError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for p in (self.qmp, self.nbd, self.ctl, self.spare):
            if p is not None:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass

    def kill(self) -> None:
        if self.alive:
            self.proc.kill()
            self.proc.wait()

    def wait_for_monitors(self, program: str, timeout: float) -> None:
        """Until QEMU has opened its three monitor sockets (a LabError if it exits or takes too long)."""
        deadline = time.monotonic() + timeout
        while not (self.qmp.exists() and self.ctl.exists() and self.spare.exists()):
            if self.proc.poll() is not None:
                raise LabError(f"{program} exited with {self.proc.returncode}: {self.log.read_text(errors='replace').strip()}")
            if time.monotonic() > deadline:
                self.kill()
                raise LabError(f"{program} did not open its QMP socket within {timeout:g} s")
            time.sleep(0.005)


def _on_monitor(path: Path, talk: Callable[[QMPClient], Awaitable[T]], timeout: float = 10.0) -> T:
    """Run ``talk`` on a fresh ``qemu.qmp`` connection to one of the lab's own monitors.

    The lab is synchronous and may be called from inside a running event loop (an
    async test): the conversation runs on its own loop in a short-lived thread."""

    async def conversation() -> T:
        client = QMPClient("chaintui-lab")
        await asyncio.wait_for(client.connect(str(path)), timeout)
        try:
            return await asyncio.wait_for(talk(client), timeout)
        finally:
            try:
                await client.disconnect()
            except (QMPError, EOFError, OSError):
                pass  # QEMU went away first (after quit)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, conversation()).result()


async def _quit(client: QMPClient) -> None:
    try:
        await client.execute("quit")
    except (QMPError, EOFError, OSError):
        pass  # QEMU may close the connection before it answers


def export_drives(q: LabQemu, timeout: float = 10.0) -> None:
    """qemu-system: add the NBD server and exports over QMP (a writer plays the guest).

    Each drive's root node comes from the block graph: its backend is named by the drive
    (``-drive id``) or by its device's path; a device's ``drive`` property names a ``-drive``
    backend.  Never ``query-block``: its answer nests the chain, too deep to read for ~1000 images.
    ``timeout``: for QEMU to answer (it greets only once it has opened every image)."""

    async def export(client: QMPClient) -> None:
        await client.execute("nbd-server-start", {"addr": {"type": "unix", "data": {"path": str(q.nbd)}}})
        graph = await client.execute("x-debug-query-block-graph")
        names = {n["id"]: n["name"] for n in graph["nodes"]}
        root = {names[e["parent"]]: names[e["child"]] for e in graph["edges"] if e["name"] == "root"}
        for drive in q.drives:
            node = root.get(drive) or root.get(f"/machine/peripheral/{drive}/virtio-backend")
            if node is None:
                used = await client.execute("qom-get", {"path": f"/machine/peripheral/{drive}", "property": "drive"})
                node = root.get(used, used)
            await client.execute("block-export-add", {"type": "nbd", "id": drive, "node-name": node, "name": drive,
                                                      "writable": True})

    try:
        _on_monitor(q.ctl, export, timeout)
    except ExecuteError as exc:
        raise LabError(f"exporting the drives of {q.qmp.stem}: {exc}") from None


# -- command lines ---------------------------------------------------------
def qsd_args(root: Path, tops: list[Path], drives: list[str], named_nodes: bool, monitors: tuple[Path, ...],
             nbd: Path) -> list[str]:
    """qemu-storage-daemon: one --blockdev per top (its backing files opened by QEMU unless
    ``named_nodes``), a monitor per socket, an NBD export per drive."""
    args = ["qemu-storage-daemon"]
    top_nodes: list[str] = []
    for top, _drive in zip(tops, drives):
        if named_nodes:
            spec = _blockdev_spec(root, Path(top))
        else:
            fmt = "raw" if str(top).endswith(".raw") else "qcow2"
            spec = {
                "driver": fmt,
                "node-name": make_node_name(str(top), set(top_nodes)),
                "file": {"driver": "file", "filename": str(Path(top).resolve())},
            }
        top_nodes.append(spec["node-name"])
        args += ["--blockdev", json.dumps(spec)]
    for i, sock in enumerate(monitors):
        args += ["--chardev", f"socket,path={_keyval(sock)},server=on,wait=off,id=m{i}", "--monitor", f"chardev=m{i}"]
    args += ["--nbd-server", f"addr.type=unix,addr.path={_keyval(nbd)}"]
    for drive, node in zip(drives, top_nodes):
        args += ["--export", f"type=nbd,id={drive},node-name={node},name={drive},writable=on"]
    return args


def system_args(root: Path, kind: str, tops: list[Path], drives: list[str],
                monitors: tuple[Path, ...]) -> tuple[list[str], list[str]]:
    """qemu-system-x86_64 (``-M none``, or a q35 that never runs its CPUs) and the drives'
    names as it calls them."""
    machine = "none" if kind == "system" else "q35"
    args = ["qemu-system-x86_64", "-M", machine, "-nodefaults", "-display", "none", "-accel", "tcg"]
    if kind != "system":
        args.append("-S")  # the CPUs never run: no firmware, no guest writes
    if kind == "libvirt":
        counter = 0
        for i, top in enumerate(tops):
            specs, counter = _libvirt_blockdevs(root, Path(top), counter)
            for spec in specs:
                args += ["-blockdev", json.dumps(spec)]
            args += ["-device", f"virtio-blk-pci,drive={specs[-1]['node-name']},id=virtio-disk{i},share-rw=on"]
    else:
        for i, (top, drive) in enumerate(zip(tops, drives)):
            fmt = "raw" if str(top).endswith(".raw") else "qcow2"
            args += ["-drive", f"if=none,id={drive},file={_keyval(Path(top).resolve())},format={fmt}"]
            if kind == "q35":
                args += ["-device", f"virtio-blk-pci,drive={drive},id=virtio-disk{i},share-rw=on"]
    if kind in ("libvirt", "q35"):
        drives = [f"virtio-disk{i}" for i in range(len(tops))]
    for sock in monitors:
        args += ["-qmp", f"unix:{_keyval(sock)},server=on,wait=off"]
    return args, drives


def _libvirt_blockdevs(root: Path, top: Path, counter: int) -> tuple[list[dict], int]:
    """A chain as libvirt opens it: one ``-blockdev`` per layer and per file, bottom first,
    named ``libvirt-N-storage`` (the file) and ``libvirt-N-format`` (the image)."""
    chain = chain_info(top)  # top first
    specs: list[dict] = []
    below: str | None = None
    for depth, entry in enumerate(reversed(chain)):
        n = counter + len(chain) - depth  # the top gets the lowest number of its disk, as libvirt numbers a fresh domain
        filename = entry["filename"]
        if not os.path.isabs(filename):
            filename = str(Path(root, filename).resolve())
        is_top = depth == len(chain) - 1
        specs.append({"driver": "file", "filename": filename, "node-name": f"libvirt-{n}-storage",
                      "auto-read-only": True, "discard": "unmap"})
        fmt: dict = {"node-name": f"libvirt-{n}-format", "read-only": not is_top, "driver": entry["format"],
                     "file": f"libvirt-{n}-storage"}
        if entry["format"] != "raw":
            fmt["backing"] = below
        specs.append(fmt)
        below = fmt["node-name"]
    return specs, counter + len(chain)


def _blockdev_spec(root: Path, top: Path) -> dict:
    """Every image of the chain opened with a readable node name (its file's stem)."""
    chain = chain_info(top)  # top first
    taken: set[str] = set()
    spec: dict | None = None
    for entry in reversed(chain):
        name = make_node_name(entry["filename"], taken)
        taken.add(name)
        node: dict = {
            "driver": entry["format"],
            "node-name": name,
            "file": {"driver": "file", "filename": str(Path(root, entry["filename"]).resolve())
                     if not os.path.isabs(entry["filename"]) else entry["filename"]},
        }
        if entry["format"] != "raw":
            node["backing"] = spec
        spec = node
    assert spec is not None
    return spec
