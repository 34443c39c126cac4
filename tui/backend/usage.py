"""Who uses an image: live drives of every connected QEMU, and image files on disk.

Three parts, none of which imports Textual:

* :class:`~tui.backend.disk_scan.DiskScanner` reads the directories the connected chains live in (and
  the ones named in ``config.toml``) with ``qemu-img info --output=json -U``,
  cached by (path, size, mtime), in worker threads, with progress and a cancel
  flag.  Unreadable files are skipped and counted, never fatal.
* :class:`~tui.backend.image_graph.ImageGraph` joins the live chains and the scanned files into one
  tree: bases at the root, overlays as branches, each node with its live users
  (drive, QEMU, read-only or read-write) and its overlays on disk.
* :class:`Usage` keeps the latest scan and the other users of images the backends
  report (every domain defined on a libvirt connection: shut off, or running but not
  opened here; :class:`~tui.backend.backend.ImageUser`), notices images that left a
  drive's chain ("no longer used by DRIVE"), and checks whether such an image may be
  deleted (:func:`~tui.backend.deletion.deletion_checks`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backend import ImageUser, image_users_of
from .chain import Drive
from .deletion import Candidate, chain_directories, deletion_checks, live_state, user_chains, user_directories
from .disk_scan import DiskScanner, ScanResult
from .image_graph import ImageGraph, drive_keys

if TYPE_CHECKING:
    from .hub import Hub

# -- the service the app holds --------------------------------------------
@dataclass
class ScanState:
    running: bool = False
    done: int = 0
    total: int = 0
    result: ScanResult | None = None

    @property
    def text(self) -> str:
        if self.running:
            return f"scanning image files {self.done}/{self.total}…"
        if self.result is None:
            return "not scanned yet"
        return self.result.summary()


class Usage:
    """The app's view of who uses what: the latest scan, leftovers of finished operations."""

    def __init__(self, hub: Hub, extra_dirs: Iterable[str] = (), scanner: DiskScanner | None = None) -> None:
        self.hub = hub
        self.extra_dirs = [os.path.realpath(os.path.expanduser(d)) for d in extra_dirs]
        self.scanner = scanner or DiskScanner()
        self.state = ScanState()
        self.leftovers: dict[str, str] = {}  # real path -> "no longer used by DRIVE on QEMU"
        self.left_by: dict[str, tuple[str, str]] = {}  # real path -> (QEMU, drive) whose chain it left
        self._chains: dict[tuple[str, str], set[str]] = {}
        self._cancel: threading.Event | None = None
        self._task: asyncio.Task[ScanResult] | None = None
        self._listeners: list[Callable[[], None]] = []
        # users of images no drive here shows: each domain defined on a libvirt connection
        self.others: list[ImageUser] = []
        self.others_problems: dict[str, str] = {}  # source -> why it could not be read
        self._others_task: asyncio.Future[None] | None = None
        hub.subscribe(self._on_hub)
        for d in hub.all_drives():  # the chains as they are now: what leaves them later is a leftover
            keys = _chain_files(d)
            if keys is not None:
                self._chains[d.key] = keys

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._listeners):
            listener()

    def directories(self) -> list[str]:
        return sorted(set(chain_directories(self.hub.all_drives())) | set(self.extra_dirs)
                      | set(user_directories(self.other_users())))

    # -- other users (domains defined but not shown live) ----------------
    async def read_others(self) -> list[ImageUser]:
        """Ask every source the backends report (once per source) for its users of images, now."""
        sources = {}
        for backend in list(self.hub.sessions.values()):
            source = image_users_of(backend)
            if source is not None:
                sources.setdefault(source.key, source)
        found: list[ImageUser] = []
        for key, source in sources.items():
            try:
                found.extend(await source.read())
            except Exception as exc:  # noqa: BLE001 - a lost connection, a libvirt error: said, not fatal
                why = str(exc) or type(exc).__name__
                if self.others_problems.get(key) != why:
                    self.hub.note(f"cannot list the domains of {key} ({why}): the image graph and the "
                                  "shared-image check do not know its shut-off domains", kind="warning")
                self.others_problems[key] = why
                continue
            self.others_problems.pop(key, None)
        self.others = found
        return self.other_users()

    def other_users(self) -> list[ImageUser]:
        """The last read users but those whose disk a drive shown live is (not counted twice)."""
        shown = {(self.hub.sessions[d.session].address_text, d.name)
                 for d in self.hub.all_drives() if d.session in self.hub.sessions}
        return [u for u in self.others if (u.address, u.disk) not in shown]

    def files_of_others(self) -> dict[str, str]:
        """Real path -> the domain that has it in its chain (as last read)."""
        images = self.state.result.images if self.state.result else {}
        return user_chains(self.other_users(), images)

    # -- scanning --------------------------------------------------------
    def scan(self, directories: Iterable[str] | None = None) -> asyncio.Task[ScanResult]:
        """Start a scan in worker threads (or return the one that runs); progress goes to listeners."""
        if self._task is not None and not self._task.done():
            return self._task
        dirs = list(directories) if directories is not None else self.directories()
        self._cancel = threading.Event()
        self.state.running, self.state.done, self.state.total = True, 0, 0
        loop = asyncio.get_running_loop()
        last = [0.0]

        def progress(done: int, total: int) -> None:
            self.state.done, self.state.total = done, total
            now = time.monotonic()
            if now - last[0] > 0.1 or done == total:
                last[0] = now
                loop.call_soon_threadsafe(self._changed)

        async def run() -> ScanResult:
            try:
                # the domains first: the directories of their images are read too
                others = await self.read_others()
                todo = sorted(set(dirs) | set(user_directories(others)))
                result = await asyncio.to_thread(self.scanner.scan, todo, progress, self._cancel)
            finally:
                self.state.running = False
            self.state.result = result
            self._changed()
            return result

        self._task = asyncio.ensure_future(run())
        return self._task

    async def ensure(self, directories: Iterable[str] | None = None) -> ScanResult:
        """A complete scan that covers ``directories`` (default: every chain's): the one that
        runs if it does, else a new one (a cancelled or narrower scan is not enough)."""
        want = {os.path.realpath(d) for d in (directories if directories is not None else self.directories())}
        for _ in range(3):
            result = await self.scan(want | set(self.directories()))
            if not result.cancelled and want <= set(result.directories):
                return result
        return result

    def cancel_scan(self) -> bool:
        if self._cancel is not None and self.state.running:
            self._cancel.set()
            return True
        return False

    def graph(self) -> ImageGraph:
        return ImageGraph.build(*self.graph_inputs())

    def graph_inputs(self) -> tuple[Any, ...]:
        """What :meth:`ImageGraph.build` reads, taken now (on the event loop), so that the build
        itself can run in a thread while the hub goes on."""
        targets = [(s, t) for s, ts in self.hub.targets.items() for t in ts]
        disk = self.state.result.images if self.state.result else {}
        not_connected = {name: sess.state.value for name, sess in self.hub.sessions.items() if not sess.connected}
        return (self.hub.all_drives(), targets, disk, self.other_users(), not_connected)

    # -- leftovers -------------------------------------------------------
    def _on_hub(self, change: Any) -> None:
        from .hub import DrivesChanged

        if isinstance(change, DrivesChanged):
            self.note_chains(change.session)
            self._reread_others(change.session)

    def _reread_others(self, session: str) -> None:
        """A drive of a backend that reports other users changed: read them again, in the background
        (one read at a time), so the graph and the target checks know the domains defined now."""
        backend = self.hub.sessions.get(session)
        if backend is None or image_users_of(backend) is None:
            return
        if self._others_task is not None and not self._others_task.done():
            return

        async def read() -> None:
            await self.read_others()
            self._changed()

        self._others_task = asyncio.ensure_future(read())

    def note_chains(self, session: str) -> None:
        """Compare each drive's chain with the last one seen: images that left it are leftovers."""
        left_now: list[tuple[str, list[str]]] = []
        drives = self.hub.drives.get(session, [])
        for d in drives:
            keys = _chain_files(d)
            if keys is None:
                continue
            old = self._chains.get(d.key)
            self._chains[d.key] = keys
            for k in keys:
                self.leftovers.pop(k, None)
            if old is None:
                continue
            gone = sorted(old - keys)
            if gone:
                left_now.append((d.name, gone))
                for k in gone:
                    self.leftovers[k] = f"no longer used by {d.name} on {session}"
                    self.left_by[k] = d.key
        if left_now:
            in_use = {**self.files_of_others(), **self.hub.files_in_use()}
            # a -blockdev QEMU keeps what a job took out of a chain open (the drive's "left open")
            still_open = {os.path.realpath(f) for d in drives for left in d.leftovers for f in left.files}
            for name, gone in left_now:
                free = [k for k in gone if k not in in_use]
                if not free:
                    continue
                labels = ", ".join(os.path.basename(k) for k in free)
                hint = ("still open in QEMU: o closes them, then Delete cleans up" if still_open & set(free)
                        else "Delete key: clean up")
                self.hub.note(
                    f"no longer used by {name}: {labels} ({hint})", session, "info",
                    data={"leftovers": free, "drive": name},
                )
            self._changed()

    def candidates(self) -> list[Candidate]:
        return [Candidate(p, why, drive=self.left_by.get(p)) for p, why in sorted(self.leftovers.items())]

    async def check(self, candidates: list[Candidate]) -> list[Candidate]:
        """The checks in a worker thread, with the domains defined now."""
        live = live_state(self.hub, await self.read_others())
        return await asyncio.to_thread(deletion_checks, candidates, live, self.scanner, self.extra_dirs)

    async def delete(self, candidates: list[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
        """Check again, then delete what passes; (deleted, refused).  Each deletion is audited."""
        checked = await self.check([Candidate(c.path, c.left, drive=c.drive) for c in candidates])
        deleted, refused = [], []
        for c in checked:
            if not c.deletable:
                refused.append(c)
                continue
            try:
                await asyncio.to_thread(os.unlink, c.path)
            except OSError as exc:
                c.reasons.append(f"delete failed: {exc.strerror}")
                refused.append(c)
                continue
            deleted.append(c)
            self.leftovers.pop(c.path, None)
            qemu, drive = c.drive or ("", None)
            self.hub.note(f"deleted {c.path} ({c.left}; freed {c.size} bytes)", qemu, "action")
            if self.hub.audit is not None:
                self.hub.audit.record("localhost", qemu, "delete-image", {"file": c.path, "bytes": c.size}, drive=drive)
        if deleted:
            self._changed()
        return deleted, refused


def _chain_files(drive: Drive) -> set[str] | None:
    """The image files of a drive's chain (graph keys that are paths); None while its details are read."""
    if any(img.partial for img in drive.images):
        return None
    return {k for k in drive_keys(drive) if k.startswith("/")}
