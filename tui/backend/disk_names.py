"""File names for a big graph's first picture, read from the files QEMU has open.

QEMU answers ``query-named-block-nodes`` (the only QMP source of a node's file
name on qemu-storage-daemon) in time growing with the square of the chain depth:
11-13 s for 1000 images on a loaded 2-core machine.  Meanwhile the chain is drawn
from ``x-debug-query-block-graph`` (node names only).  When chaintui runs on the
QEMU's host, the monitor is a unix socket and the peer's pid (``SO_PEERCRED``)
names the QEMU process: ``/proc/PID/fd`` lists the files it has open, and each
qcow2 header records its backing file.  Those give a chain of files, which is
matched to the chain of nodes **only when nothing else is possible**:

- the graph is one drive whose images form one linear chain (each image a format
  node over one protocol node, or a lone protocol node at the bottom; no other
  child roles such as ``data-file``, no job or filter nodes);
- the open qcow2 files form one linear chain through their recorded backing files,
  every backing file (resolved as QEMU does, from the image's directory) is one of
  the files QEMU has open, and nothing is left over;
- both have the same length.

Otherwise nothing is guessed.  The names found this way are *provisional*: the
images stay ``partial`` (nothing acts on them, see :class:`~tui.backend.chain.Image`)
and say so on screen until QEMU's own answer replaces them.

Everything here reads /proc and files: call it off the UI loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections import defaultdict
from dataclasses import replace
from typing import Any

from .chain import Drive

QCOW2_MAGIC = b"QFI\xfb"
HEADER = struct.Struct(">4sIQI")  # magic, version, backing_file_offset, backing_file_size
MAX_BACKING = 1023  # QEMU refuses longer backing file names
MAX_FILES = 100_000  # more open files than this: not worth a look


def peer_pid(sock: Any) -> int | None:
    """The pid of the process at the other end of a connected unix socket (None: not one, or unknown)."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    pid = struct.unpack("3i", raw)[0]
    return pid if pid > 0 else None


def qcow2_backing(header: bytes, read_at: Any) -> tuple[bool, str | None]:
    """(is qcow2, its backing file string or None) from the first bytes of a file;
    ``read_at(offset, size)`` reads more of it."""
    if len(header) < HEADER.size or header[:4] != QCOW2_MAGIC:
        return False, None
    _magic, version, offset, size = HEADER.unpack_from(header)
    if version not in (2, 3) or offset == 0 or size == 0:
        return True, None
    if size > MAX_BACKING:
        raise ValueError("backing file name too long")
    data = read_at(offset, size)
    if len(data) != size:
        raise ValueError("short read of the backing file name")
    return True, data.decode("utf-8", "strict")


def read_open_images(pid: int) -> tuple[dict[str, str | None], set[str]] | None:
    """The regular files process ``pid`` has open, as its /proc links name them:
    ({qcow2 file: its backing file string or None}, {other regular files}).
    None when they cannot all be read (another user's process, a file that vanished, a bad header)."""
    base = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(base)
    except OSError:
        return None
    if len(fds) > MAX_FILES:
        return None
    qcow2: dict[str, str | None] = {}
    other: set[str] = set()
    for fd in fds:
        link = f"{base}/{fd}"
        try:
            target = os.readlink(link)
        except FileNotFoundError:
            continue  # closed meanwhile
        except OSError:
            return None
        if not target.startswith("/") or target in qcow2 or target in other:
            continue  # sockets, pipes, anonymous inodes; a file open twice
        deleted = target.endswith(" (deleted)")  # a temporary file, a memfd; or an image someone removed
        try:
            st = os.stat(link)  # follows the link without opening: devices and FIFOs are left alone
        except FileNotFoundError:
            continue
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            continue
        try:
            fd_here = os.open(link, os.O_RDONLY | os.O_NOCTTY)
            try:
                is_qcow2, backing = qcow2_backing(os.pread(fd_here, HEADER.size, 0),
                                                  lambda o, n, f=fd_here: os.pread(f, n, o))
            finally:
                os.close(fd_here)
        except (OSError, ValueError):
            return None
        if is_qcow2 and deleted:
            return None  # an image without a name now: nothing to show for it
        if is_qcow2:
            qcow2[target] = backing
        elif not deleted:
            other.add(target)
    return qcow2, other


def resolve_backing(image: str, backing: str) -> str:
    """Where QEMU looks for ``backing`` recorded in ``image`` (a relative name is relative to
    the image's directory), written the way /proc links name files."""
    return os.path.normpath(os.path.join(os.path.dirname(image), backing))


def file_chain(qcow2: dict[str, str | None], other: set[str]) -> list[str] | None:
    """The one linear chain the open files form, bottom first; None when they do not form exactly one.

    Every qcow2 file is in it; its bottom is a qcow2 without backing file or an open file that
    is not qcow2 (a raw base).  Other open files nobody names as a backing file (logs) are not."""
    below: dict[str, str | None] = {}
    for path, backing in qcow2.items():
        if backing is None:
            below[path] = None
            continue
        if "://" in backing or backing.startswith("json:"):
            return None  # a protocol or options QEMU parsed: not a file here
        target = resolve_backing(path, backing)
        if target not in qcow2 and target not in other:
            return None  # its backing file is not open in this process under that name
        below[path] = target
    users: dict[str, int] = defaultdict(int)
    for target in below.values():
        if target is not None:
            users[target] += 1
    if any(n > 1 for n in users.values()):
        return None  # two images on one backing file: a tree, not a chain
    tops = [p for p in qcow2 if users[p] == 0]
    if len(tops) != 1:
        return None
    chain: list[str] = []
    cur: str | None = tops[0]
    while cur is not None:
        if cur in chain:
            return None  # a loop
        chain.append(cur)
        cur = below.get(cur)
    if len([p for p in chain if p in qcow2]) != len(qcow2):
        return None
    chain.reverse()
    return chain


def node_chain(graph: dict[str, Any]) -> list[str] | None:
    """The node names of the one linear chain a block graph is, bottom first; None when it is
    anything else (several roots, jobs, filters or other children than ``file`` and ``backing``)."""
    nodes: dict[int, dict[str, Any]] = {}
    backends: set[int] = set()
    for n in graph.get("nodes", []):
        if n.get("type") == "block-driver":
            nodes[n["id"]] = n
        elif n.get("type") == "block-backend":
            backends.add(n["id"])  # a device's or an export's backend
        else:
            return None  # a job holds nodes: filters and targets come and go
    children: dict[int, dict[str, int]] = defaultdict(dict)
    parents: dict[int, int] = defaultdict(int)
    for e in graph.get("edges", []):
        role, parent, child = e.get("name"), e.get("parent"), e.get("child")
        if parent in backends:
            if role != "root" or child not in nodes:
                return None
            continue
        if parent not in nodes or child not in nodes or role not in ("file", "backing") or role in children[parent]:
            return None
        children[parent][role] = child
        parents[child] += 1
    if any(n > 1 for n in parents.values()):
        return None
    roots = [nid for nid in nodes if parents[nid] == 0]
    if len(roots) != 1:
        return None
    chain: list[str] = []
    covered = 0
    cur: int | None = roots[0]
    while cur is not None:
        kids = children[cur]
        proto = kids.get("file")
        if proto is not None:
            if children[proto]:
                return None  # a protocol node over something: not the plain case
            covered += 1
        covered += 1
        name = nodes[cur].get("name")
        if not name:
            return None
        chain.append(name)
        cur = kids.get("backing")
    if covered != len(nodes):
        return None
    chain.reverse()
    return chain


def match_names(graph: dict[str, Any], qcow2: dict[str, str | None], other: set[str]) -> dict[str, str] | None:
    """{node name: file} when the graph's one chain and the open files' one chain match
    one to one (see the module text); None otherwise."""
    nodes = node_chain(graph)
    files = file_chain(qcow2, other)
    if nodes is None or files is None or len(nodes) != len(files):
        return None
    return dict(zip(nodes, files))


def provisional_names(graph: dict[str, Any], found: tuple[dict[str, str | None], set[str]] | None) -> dict[str, str]:
    """What :func:`match_names` finds in what :func:`read_open_images` found; empty when nothing."""
    try:
        if found is None:
            return {}
        return match_names(graph, *found) or {}
    except Exception:  # noqa: BLE001 - an odd answer: no names rather than a wrong one
        return {}


def with_names(drives: list[Drive], names: dict[str, str]) -> list[Drive]:
    """The sketch's drives with the provisional file names filled in (their images stay ``partial``)."""
    if not names:
        return drives
    for d in drives:
        d.images = [
            replace(img, filename=names[img.node_name], provisional=True)
            if img.partial and img.node_name in names else img
            for img in d.images
        ]
    return drives
