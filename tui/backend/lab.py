"""The embedded lab: real chains served by a real QEMU, cleaned up on exit.

Used by ``chaintui --demo`` and by the tests.  Every QEMU tool runs with an
argument list, never through a shell.  Children get ``PR_SET_PDEATHSIG`` so a
killed chaintui leaves no QEMU behind, and :meth:`Lab.close` (also run at
exit and from the signal handlers the demo installs) stops them and removes
the temporary directory.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from qemu.qmp import ExecuteError, QMPClient, QMPError

from .plan import make_node_name

T = TypeVar("T")
MiB = 1 << 20
REQUIRED_TOOLS = ("qemu-img", "qemu-io", "qemu-storage-daemon")
DEBIAN_PACKAGES = "qemu-utils qemu-system-x86"


class LabError(RuntimeError):
    pass


def missing_tools(tools: tuple[str, ...] = REQUIRED_TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def _pdeathsig() -> None:  # runs in the child before exec
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


def _keyval(path: str | os.PathLike[str]) -> str:
    """Escape a value for QEMU's key=value option syntax."""
    return str(path).replace(",", ",,")


def pattern_for(index: int) -> int:
    """The byte image ``index`` of a lab chain is filled with (0x11, 0x22, ...)."""
    return (0x11 * (index + 1)) % 0xEF + 0x10


def image_names(n: int) -> list[str]:
    if n <= 26:
        return [chr(ord("A") + i) for i in range(n)]
    width = len(str(n))
    return [f"img{i:0{width}d}" for i in range(n)]


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


@dataclass
class Lab:
    """A temporary directory of images and the QEMU processes serving them."""

    root: Path | None = None
    keep: bool = False
    processes: list[LabQemu] = field(default_factory=list)
    _made_root: bool = False
    _counter: int = 0

    def __post_init__(self) -> None:
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="chaintui-lab-"))
            self._made_root = True
        else:
            self.root = Path(self.root)
            self.root.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dir(self) -> Path:
        assert self.root is not None
        return self.root

    # -- images ----------------------------------------------------------
    def make_chain(
        self,
        n: int = 4,
        size: int = 64 * MiB,
        *,
        prefix: str = "",
        names: list[str] | None = None,
        raw_base: bool = False,
        data: bool = True,
        chunk: int | None = None,
        subdir: str | None = None,
        absolute: bool = False,
    ) -> list[Path]:
        """Make a chain of ``n`` images, bottom first; image i holds pattern_for(i) at i*chunk.

        Backing files are recorded relative (as ``qemu-img create -b NAME``),
        or as absolute paths with ``absolute``.
        """
        where = self.dir / subdir if subdir else self.dir
        where.mkdir(parents=True, exist_ok=True)
        names = names or image_names(n)
        if chunk is None:
            chunk = max(64 * 1024, min(4 * MiB, (size // max(n, 1)) // (64 * 1024) * 64 * 1024))
        paths: list[Path] = []
        for i, name in enumerate(names[:n]):
            fmt = "raw" if (raw_base and i == 0) else "qcow2"
            path = where / f"{prefix}{name}.{fmt}"
            args = ["qemu-img", "create", "-q", "-f", fmt] + (["-u"] if i > 0 else [])
            if i > 0:
                prev = paths[-1]
                backing = str(prev) if absolute else prev.name
                args += ["-b", backing, "-F", "raw" if (raw_base and i == 1) else "qcow2"]
            args += [path.name, str(size)]
            run(args, cwd=where)
            if data and (i + 1) * chunk <= size:
                run(["qemu-io", "-f", fmt, "-c", f"write -P {pattern_for(i)} {i * chunk} {chunk}", path.name], cwd=where)
            paths.append(path)
        return paths

    def fill(self, image: Path, offset: int, length: int, pattern: int, fmt: str = "qcow2") -> None:
        run(["qemu-io", "-f", fmt, "-c", f"write -P {pattern} {offset} {length}", str(image)])

    def flatten(self, top: Path, out: Path | None = None) -> Path:
        """A standalone copy of what the guest sees now: the reference for later compares."""
        out = out or self.dir / f"ref-{top.stem}-{self._next()}.qcow2"
        run(["qemu-img", "convert", "-U", "-O", "qcow2", str(top), str(out)])
        return out

    def compare(self, a: Path | str, b: Path | str) -> tuple[bool, str]:
        """``qemu-img compare``: (identical, message). Only on images QEMU has closed."""
        proc = run(["qemu-img", "compare", str(a), str(b)], check=False)
        if proc.returncode not in (0, 1):
            raise LabError(f"qemu-img compare failed: {proc.stderr.strip()}")
        return proc.returncode == 0, (proc.stdout + proc.stderr).strip()

    def info(self, image: Path | str) -> list[dict]:
        proc = run(["qemu-img", "info", "-U", "--backing-chain", "--output=json", str(image)])
        data = json.loads(proc.stdout)
        return data if isinstance(data, list) else [data]

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    # -- QEMU ------------------------------------------------------------
    def start(
        self,
        tops: Path | list[Path],
        kind: str = "qsd",
        drives: list[str] | None = None,
        name: str | None = None,
        named_nodes: bool = False,
        timeout: float = 10.0,
    ) -> LabQemu:
        """Serve images with QMP on a unix socket and an NBD export of each drive.

        qemu-storage-daemon opens the top image with its file's stem as node
        name and lets QEMU open the backing files (generated node names), as
        ``-drive`` would.  ``named_nodes`` opens every image explicitly with a
        readable node name instead (stable names for pictures); QEMU then calls
        images opened that way by ``json:{...}`` pseudo names unless the chain
        records absolute backing paths (``make_chain(absolute=True)``).
        """
        tops = [tops] if isinstance(tops, (str, Path)) else list(tops)
        drives = drives or [f"drive{i}" for i in range(len(tops))]
        n = self._next()
        name = name or f"{kind}{n}"
        qmp = self.dir / f"{name}.qmp"
        nbd = self.dir / f"{name}.nbd"
        logf = self.dir / f"{name}.log"
        ctl = self.dir / f"{name}.ctl"
        spare = self.dir / f"{name}.spare"
        for p in (qmp, nbd, ctl, spare):
            if p.exists():
                p.unlink()
        if kind == "qsd":
            args = self._qsd_args(tops, drives, named_nodes, (qmp, ctl, spare), nbd)
        elif kind in ("system", "libvirt", "q35"):
            args, drives = self._system_args(kind, tops, drives, (qmp, ctl, spare))
        else:
            raise LabError(f"unknown QEMU kind {kind!r}")
        with open(logf, "wb") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig, cwd=self.dir,
            )
        q = LabQemu(kind, proc, qmp, nbd, list(drives), logf, ctl, spare)
        self.processes.append(q)
        self._wait_for_monitors(q, args[0], timeout)
        if kind != "qsd":
            self._export_system(q)
        return q

    def _qsd_args(self, tops: list[Path], drives: list[str], named_nodes: bool, monitors: tuple[Path, ...],
                  nbd: Path) -> list[str]:
        """qemu-storage-daemon: one --blockdev per top (its backing files opened by QEMU unless
        ``named_nodes``), a monitor per socket, an NBD export per drive."""
        args = ["qemu-storage-daemon"]
        top_nodes: list[str] = []
        for top, _drive in zip(tops, drives):
            if named_nodes:
                spec = self._blockdev_spec(Path(top))
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

    def _system_args(self, kind: str, tops: list[Path], drives: list[str],
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
                specs, counter = self._libvirt_blockdevs(Path(top), counter)
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

    def _wait_for_monitors(self, q: LabQemu, program: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (q.qmp.exists() and q.ctl.exists() and q.spare.exists()):
            if q.proc.poll() is not None:
                raise LabError(f"{program} exited with {q.proc.returncode}: {q.log.read_text(errors='replace').strip()}")
            if time.monotonic() > deadline:
                q.kill()
                raise LabError(f"{program} did not open its QMP socket within {timeout:g} s")
            time.sleep(0.005)

    def _libvirt_blockdevs(self, top: Path, counter: int) -> tuple[list[dict], int]:
        """A chain as libvirt opens it: one ``-blockdev`` per layer and per file, bottom first,
        named ``libvirt-N-storage`` (the file) and ``libvirt-N-format`` (the image)."""
        chain = self.info(top)  # top first
        specs: list[dict] = []
        below: str | None = None
        for depth, entry in enumerate(reversed(chain)):
            n = counter + len(chain) - depth  # the top gets the lowest number of its disk, as libvirt numbers a fresh domain
            filename = entry["filename"]
            if not os.path.isabs(filename):
                filename = str(Path(self.dir, filename).resolve())
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

    def _blockdev_spec(self, top: Path) -> dict:
        """Every image of the chain opened with a readable node name (its file's stem)."""
        chain = self.info(top)  # top first
        taken: set[str] = set()
        spec: dict | None = None
        for entry in reversed(chain):
            name = make_node_name(entry["filename"], taken)
            taken.add(name)
            node: dict = {
                "driver": entry["format"],
                "node-name": name,
                "file": {"driver": "file", "filename": str(Path(self.dir, entry["filename"]).resolve())
                         if not os.path.isabs(entry["filename"]) else entry["filename"]},
            }
            if entry["format"] != "raw":
                node["backing"] = spec
            spec = node
        assert spec is not None
        return spec

    def _export_system(self, q: LabQemu) -> None:
        """qemu-system: add the NBD server and exports over QMP (a writer plays the guest)."""

        async def export(client: QMPClient) -> None:
            await client.execute("nbd-server-start", {"addr": {"type": "unix", "data": {"path": str(q.nbd)}}})
            block = {}
            for d in await client.execute("query-block"):
                block[d["device"]] = d
                qdev = d.get("qdev") or ""
                if qdev.startswith("/machine/peripheral/"):
                    block[qdev.split("/")[3]] = d
            for drive in q.drives:
                node = block[drive]["inserted"]["node-name"]
                await client.execute("block-export-add", {"type": "nbd", "id": drive, "node-name": node, "name": drive,
                                                          "writable": True})

        try:
            _on_monitor(q.ctl, export)
        except ExecuteError as exc:
            raise LabError(f"exporting the drives of {q.qmp.stem}: {exc}") from None

    def close(self) -> None:
        for q in self.processes:
            try:
                q.stop(timeout=5)
            except Exception:  # noqa: BLE001
                q.kill()
        self.processes.clear()
        if self._made_root and not self.keep and self.root is not None and self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001
            pass
