"""May an image be deleted?  The checks cleanup runs before it deletes anything.

:func:`deletion_checks` (blocking: a worker thread) says, for each candidate, every reason
to keep it: in an open chain, in the chain of a defined domain, the backing file of an image
on disk that stays, open by a process on this host, locked, a job's target.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backend import ImageUser
from .chain import Drive
from .disk_scan import DiskImage, DiskScanner

if TYPE_CHECKING:
    from .hub import Hub

def processes_holding(paths: set[str]) -> dict[str, list[str]]:
    """Which processes on this host have one of ``paths`` open (``/proc/*/fd``): path -> ["pid (comm)"]."""
    out: dict[str, list[str]] = {}
    me = os.getpid()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return out
    for pid in pids:
        if int(pid) == me:
            continue
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        hit: set[str] = set()
        for fd in fds:
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target in paths:
                hit.add(target)
        if hit:
            try:
                with open(f"/proc/{pid}/comm") as f:
                    comm = f.read().strip()
            except OSError:
                comm = "?"
            for path in hit:
                out.setdefault(path, []).append(f"{pid} ({comm})")
    return out


def lock_problem(path: str) -> str | None:
    """``qemu-img info`` without ``-U``: fails when a process holds the image's lock."""
    proc = subprocess.run(["qemu-img", "info", "--output=json", path], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode == 0:
        return None
    err = (proc.stderr.strip().splitlines() or ["qemu-img info failed"])[-1]
    if "lock" in err.lower():
        return f"locked by another process ({err.split(': ', 1)[-1]})"
    return f"qemu-img cannot open it: {err}"


@dataclass
class Candidate:
    """An image offered for deletion, with what the checks found."""

    path: str
    left: str  # "no longer used by DRIVE on QEMU"
    size: int = 0  # bytes it frees (allocated blocks)
    drive: tuple[str, str] | None = None  # (QEMU, drive) whose chain it left
    reasons: list[str] = field(default_factory=list)

    @property
    def deletable(self) -> bool:
        return not self.reasons


@dataclass
class LiveState:
    """What the connected QEMUs hold, copied on the UI side and read in a worker thread."""

    drives: list[Drive]
    open_files: dict[str, str]  # real path -> who (a node any QEMU has open, in a chain or not)
    job_targets: dict[str, str]  # real path -> job
    others: list[ImageUser] = field(default_factory=list)  # domains not shown live (shut off, ...)


def live_state(hub: Hub, others: Iterable[ImageUser] = ()) -> LiveState:
    drives = hub.all_drives()
    open_files: dict[str, str] = {}
    for session, cache in hub.node_info.items():
        for name, entry in cache.entries.items():
            f = entry.get("file", "")
            if f.startswith("/"):
                open_files.setdefault(os.path.realpath(f), f"node {name} on {session}")
    for d in drives:
        for img in d.images:
            if img.filename.startswith("/"):
                open_files[os.path.realpath(img.filename)] = f"{d.name} on {d.session} ({img.label})"
    targets: dict[str, str] = {}
    for session, ts in hub.targets.items():
        for t in ts:
            if t.filename.startswith("/"):
                targets[os.path.realpath(t.filename)] = f"{t.job} on {session}"
    for job in hub.tracker.jobs.values():
        if job.target and not job.finished:
            targets.setdefault(os.path.realpath(job.target), f"{job.id} on {job.session}")
    return LiveState(drives, open_files, targets, list(others))


def user_chains(others: Iterable[ImageUser], images: dict[str, DiskImage]) -> dict[str, str]:
    """Real path -> who needs it, for every file of each user's chain: the files its XML names,
    then their backing files as the disk scan found them."""
    out: dict[str, str] = {}
    for u in others:
        chain, seen = list(u.chain), set(u.chain)
        cur = images.get(chain[-1])
        while cur is not None and cur.backing and cur.backing not in seen:
            seen.add(cur.backing)
            chain.append(cur.backing)
            cur = images.get(cur.backing)
        for i, path in enumerate(chain):
            how = "" if i == 0 else f" (through {os.path.basename(chain[i - 1])})"
            out.setdefault(path, f"domain {u.text}{how} on {u.address.partition('#')[0]}")
    return out


def user_directories(others: Iterable[ImageUser]) -> list[str]:
    """The directories of the other users' files on this machine (the disk scan reads them)."""
    return sorted({os.path.dirname(p) for u in others if u.local for p in u.chain})


def deletion_checks(
    candidates: list[Candidate], live: LiveState, scanner: DiskScanner, extra_dirs: Iterable[str] = ()
) -> list[Candidate]:
    """Blocking (a worker thread): fill in each candidate's reasons not to delete it and its size."""
    dirs = {os.path.dirname(c.path) for c in candidates} | set(chain_directories(live.drives)) | set(extra_dirs)
    scan = scanner.scan(dirs | set(user_directories(live.others)))
    holders = processes_holding({c.path for c in candidates})
    domains = user_chains(live.others, scan.images)
    for c in candidates:
        c.reasons.clear()
        try:
            st = os.stat(c.path)
        except FileNotFoundError:
            c.reasons.append("already gone")
            continue
        except OSError as exc:
            c.reasons.append(f"cannot stat it: {exc.strerror}")
            continue
        c.size = st.st_blocks * 512
        if c.path in live.open_files:
            c.reasons.append(f"still in an open chain: {live.open_files[c.path]}")
        if c.path in domains:
            c.reasons.append(f"in the chain of {domains[c.path]}")
        if c.path in live.job_targets:
            c.reasons.append(f"target of job {live.job_targets[c.path]}")
        if c.path in holders:
            c.reasons.append(f"open in process {', '.join(holders[c.path])}")
    # An image that stays on disk needs its whole backing chain: every image found on
    # disk that is not deleted here keeps its backing files, and a candidate kept for any
    # reason keeps its own backing files too (until nothing changes).
    by_path = {c.path: c for c in candidates}
    images = scan.images
    keepers = [p for p in images if p not in by_path] + [c.path for c in candidates if c.reasons]
    done: set[str] = set()
    needed_by: dict[str, list[str]] = {}
    while keepers:
        keeper = keepers.pop()
        if keeper in done:
            continue
        done.add(keeper)
        cur, seen, direct = images.get(keeper), {keeper}, True
        while cur is not None and cur.backing and cur.backing not in seen:
            seen.add(cur.backing)
            c = by_path.get(cur.backing)
            if c is not None and c.size:
                how = "" if direct else f" (through {os.path.basename(cur.path)})"
                needed_by.setdefault(c.path, []).append(os.path.basename(keeper) + how)
                keepers.append(c.path)
            direct = False
            cur = images.get(cur.backing)
    for path, who in needed_by.items():
        who.sort(key=lambda w: ("(" in w, w))
        shown = ", ".join(who[:4]) + (f" and {len(who) - 4} more" if len(who) > 4 else "")
        by_path[path].reasons.append(f"backing file of {shown}, which stay{'s' if len(who) == 1 else ''} on disk")
    for c in candidates:
        if not c.reasons and c.size:
            problem = lock_problem(c.path)
            if problem:
                c.reasons.append(problem)
    return candidates


def chain_directories(drives: Iterable[Drive]) -> list[str]:
    out: set[str] = set()
    for d in drives:
        for img in d.images:
            if img.filename.startswith("/") and not img.partial:
                out.add(os.path.dirname(os.path.realpath(img.filename)))
    return sorted(out)
