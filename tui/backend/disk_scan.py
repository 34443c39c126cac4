"""Image files on disk: the directories read with ``qemu-img info --output=json -U``.

:class:`DiskScanner` caches by (path, size, mtime), works in threads, reports
progress and honours a cancel flag.  Unreadable files are skipped and counted,
never fatal.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .chain import is_pseudo

IMAGE_SUFFIXES = (".qcow2", ".qcow", ".raw", ".img", ".qed", ".vmdk", ".vdi", ".vhd", ".vhdx")
# the first bytes of formats that can have a backing file (qcow2, QED, VMDK)
MAGICS = (b"QFI\xfb", b"QED\x00", b"KDMV")
MAX_FILES = 20000  # per scan: a directory bigger than this is read only in part (and says so)
WORKERS = 4


@dataclass(frozen=True)
class DiskImage:
    """One image file found on disk, as ``qemu-img info -U`` saw it."""

    path: str  # real path
    format: str
    virtual_size: int
    actual_size: int | None
    backing: str | None  # real path of its backing file (None: it stands alone)
    backing_raw: str | None = None  # as recorded in the image


@dataclass
class ScanResult:
    images: dict[str, DiskImage] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)
    files: int = 0  # candidate image files looked at
    unreadable: int = 0  # skipped: no permission, not an image qemu-img can open
    cached: int = 0  # answered from the cache
    cancelled: bool = False
    truncated: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        parts = [f"{len(self.images)} images in {len(self.directories)} director{'y' if len(self.directories) == 1 else 'ies'}"]
        if self.unreadable:
            parts.append(f"{self.unreadable} unreadable skipped")
        if self.truncated:
            parts.append(f"only the first {MAX_FILES} files")
        if self.cancelled:
            parts.append("scan cancelled: incomplete")
        return ", ".join(parts)


Progress = Callable[[int, int], None]


def _qemu_img_info(path: str) -> DiskImage | None:
    proc = subprocess.run(
        ["qemu-img", "info", "--output=json", "-U", path], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if proc.returncode != 0:
        return None
    try:
        info = json.loads(proc.stdout)
    except ValueError:
        return None
    backing = info.get("full-backing-filename") or info.get("backing-filename")
    real_backing = None
    if backing and not is_pseudo(backing) and "://" not in backing:
        if not os.path.isabs(backing):
            backing = os.path.join(os.path.dirname(path), backing)
        real_backing = os.path.realpath(backing)
    elif backing:
        real_backing = backing
    return DiskImage(
        path=path,
        format=info.get("format", "?"),
        virtual_size=int(info.get("virtual-size", 0)),
        actual_size=info.get("actual-size"),
        backing=real_backing,
        backing_raw=info.get("backing-filename"),
    )


def _looks_like_image(entry: os.DirEntry[str]) -> bool | None:
    """True for a file with an image suffix or magic; None when it cannot be read."""
    if entry.name.endswith(IMAGE_SUFFIXES):
        return True
    try:
        with open(entry.path, "rb") as f:
            head = f.read(4)
    except OSError:
        return None
    return head in MAGICS


class DiskScanner:
    """Reads image files with ``qemu-img info -U``, remembering answers by (path, size, mtime)."""

    def __init__(self, workers: int = WORKERS) -> None:
        self.workers = workers
        self._cache: dict[str, tuple[int, int, DiskImage | None]] = {}
        self._lock = threading.Lock()

    def candidates(self, directory: str, limit: int = MAX_FILES) -> tuple[list[tuple[str, int, int]], int, bool]:
        """(path, size, mtime_ns) of the image-looking files in one directory, unreadable count, truncated."""
        out: list[tuple[str, int, int]] = []
        unreadable = 0
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return [], 1, False
        for entry in entries:
            try:
                if not entry.is_file(follow_symlinks=True):
                    continue
                st = entry.stat(follow_symlinks=True)
            except OSError:
                unreadable += 1
                continue
            real = os.path.realpath(entry.path)
            cached = self._cache.get(real)
            if cached is not None and cached[:2] == (st.st_size, st.st_mtime_ns):
                out.append((real, st.st_size, st.st_mtime_ns))
                continue
            looks = _looks_like_image(entry)
            if looks is None:
                unreadable += 1
                continue
            if looks:
                out.append((real, st.st_size, st.st_mtime_ns))
            if len(out) >= limit:
                return out, unreadable, True
        return out, unreadable, False

    def scan(
        self,
        directories: Iterable[str],
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> ScanResult:
        """Blocking: run it in a thread (:meth:`Usage.scan` does)."""
        started = time.monotonic()
        result = ScanResult(directories=sorted({os.path.realpath(d) for d in directories if d}))
        todo: list[tuple[str, int, int]] = []
        seen: set[str] = set()
        for directory in result.directories:
            found, unreadable, truncated = self.candidates(directory)
            result.unreadable += unreadable
            result.truncated |= truncated
            for item in found:
                if item[0] not in seen:
                    seen.add(item[0])
                    todo.append(item)
        result.files = len(todo)
        fresh: list[tuple[str, int, int]] = []
        for path, size, mtime in todo:
            cached = self._cache.get(path)
            if cached is not None and cached[:2] == (size, mtime):
                result.cached += 1
                if cached[2] is not None:
                    result.images[path] = cached[2]
                else:
                    result.unreadable += 1
            else:
                fresh.append((path, size, mtime))
        done = result.cached
        if progress:
            progress(done, len(todo))
        if fresh:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                # submitted in small windows, so a cancel stops within a few files
                window = self.workers * 2
                for start in range(0, len(fresh), window):
                    if cancel is not None and cancel.is_set():
                        result.cancelled = True
                        break
                    batch = fresh[start : start + window]
                    for (path, size, mtime), image in zip(batch, pool.map(lambda t: _qemu_img_info(t[0]), batch)):
                        with self._lock:
                            self._cache[path] = (size, mtime, image)
                        if image is None:
                            result.unreadable += 1
                        else:
                            result.images[path] = image
                    done += len(batch)
                    if progress:
                        progress(done, len(todo))
        result.seconds = time.monotonic() - started
        return result
