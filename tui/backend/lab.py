"""The embedded lab: real chains served by a real QEMU, cleaned up on exit.

Used by ``chaintui --demo`` and by the tests.  Every QEMU tool runs with an
argument list, never through a shell.  Children get ``PR_SET_PDEATHSIG`` so a
killed chaintui leaves no QEMU behind, and :meth:`Lab.close` (also run at
exit and from the signal handlers the demo installs) stops them and removes
the temporary directory.  How each kind of QEMU is started and spoken to is
in :mod:`tui.backend.lab_qemu`.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .lab_qemu import LabError, LabQemu, chain_info, export_drives, pdeathsig, qsd_args, run, system_args

__all__ = ["DEBIAN_PACKAGES", "Lab", "LabError", "LabQemu", "MiB", "image_names", "missing_tools", "pattern_for",
           "run"]

MiB = 1 << 20
REQUIRED_TOOLS = ("qemu-img", "qemu-io", "qemu-storage-daemon")
DEBIAN_PACKAGES = "qemu-utils qemu-system-x86"


def missing_tools(tools: tuple[str, ...] = REQUIRED_TOOLS) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def pattern_for(index: int) -> int:
    """The byte image ``index`` of a lab chain is filled with (0x11, 0x22, ...)."""
    return (0x11 * (index + 1)) % 0xEF + 0x10


def image_names(n: int) -> list[str]:
    if n <= 26:
        return [chr(ord("A") + i) for i in range(n)]
    width = len(str(n))
    return [f"img{i:0{width}d}" for i in range(n)]


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
        return chain_info(image)

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
            args = qsd_args(self.dir, tops, drives, named_nodes, (qmp, ctl, spare), nbd)
        elif kind in ("system", "libvirt", "q35"):
            args, drives = system_args(self.dir, kind, tops, drives, (qmp, ctl, spare))
        else:
            raise LabError(f"unknown QEMU kind {kind!r}")
        with open(logf, "wb") as log:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=pdeathsig, cwd=self.dir,
            )
        q = LabQemu(kind, proc, qmp, nbd, list(drives), logf, ctl, spare)
        self.processes.append(q)
        q.wait_for_monitors(args[0], timeout)
        if kind != "qsd":
            export_drives(q, timeout)
        return q

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
