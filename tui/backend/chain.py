"""The chain model: drives, their images bottom to top, and what earlier jobs left open.

:mod:`tui.backend.block_graph` builds it from a QEMU's answers (read by
:mod:`tui.backend.qmp_read`); the libvirt backend from libvirt's domain XML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Image:
    """One image of a chain (a format node, or a raw protocol node at the bottom)."""

    node_name: str
    filename: str
    format: str
    virtual_size: int
    actual_size: int | None
    backing_file: str | None
    read_only: bool
    job: str | None = None  # id of the job that holds this node, if any
    users: tuple[str, ...] = ()  # other images that use this one as backing file (outside this chain)
    partial: bool = False  # only the structure is known yet; details are being read
    # with partial: ``filename`` was matched from the files QEMU has open (tui.backend.disk_names),
    # not told by QEMU; shown as unconfirmed, used for nothing
    provisional: bool = False

    @property
    def pseudo(self) -> bool:
        """Its file name is a ``json:{...}`` pseudo name (see :func:`is_pseudo`)."""
        return is_pseudo(self.filename)

    @property
    def label(self) -> str:
        if self.pseudo:
            return self.node_name
        return os.path.basename(self.filename) or self.filename


@dataclass(frozen=True)
class Leftover:
    """Images a finished job left open in QEMU: a root nothing but the monitor holds
    (an old top after an active commit or a pivot), with the images only it holds."""

    node_name: str  # the root: nothing uses it
    labels: tuple[str, ...]  # its images that are not in the drive's chain, top first
    files: tuple[str, ...]
    nodes: tuple[str, ...]  # node names of those images, top first
    deletable: tuple[str, ...]  # what blockdev-del closes, in order (nodes opened by name, files too)
    held_by_job: str | None = None  # a job holds it: nothing may be closed

    @property
    def text(self) -> str:
        return ", ".join(f"{label} ({node})" for label, node in zip(self.labels, self.nodes))


@dataclass
class Drive:
    """A drive: a device of qemu-system, or a root node of qemu-storage-daemon."""

    session: str
    name: str
    device: str  # what to pass as ``device`` to block-stream & co.
    has_device: bool  # a named BlockBackend exists (``device`` is its name)
    images: list[Image]  # bottom (no backing file) first, active image last
    root_node: str  # node at the root, a job filter while one runs
    jobs: list[str] = field(default_factory=list)  # ids of jobs holding any of its nodes
    export: str | None = None
    leftovers: list[Leftover] = field(default_factory=list)  # left open on its chain by earlier jobs

    @property
    def key(self) -> tuple[str, str]:
        return (self.session, self.name)

    @property
    def where(self) -> str:
        """``virtio-disk0 @ vm1``: the drive and its QEMU, as dialogs and confirmations name them."""
        return f"{self.name} @ {self.session}"

    @property
    def active(self) -> Image:
        return self.images[-1]

    @property
    def base(self) -> Image:
        return self.images[0]

    def index_of(self, node_name: str) -> int:
        for i, img in enumerate(self.images):
            if img.node_name == node_name:
                return i
        raise KeyError(node_name)

    def find(self, name: str) -> Image | None:
        """An image by node name, file name or label."""
        for img in self.images:
            if name in (img.node_name, img.filename, img.label):
                return img
        return None

    def notation(self) -> str:
        return chain_notation(img.label for img in self.images)

    @property
    def detached(self) -> bool:
        """A root node no device or export uses (qemu-storage-daemon keeps such nodes
        open, e.g. the old top after a pivot, until ``blockdev-del``)."""
        return not self.has_device and self.export is None and self.name == self.device


def unattached(drive: Drive, drives: Any) -> bool:
    """A root no device or export uses, in a QEMU whose other roots are used (a chain a job left
    open before chaintui connected, a node added by hand): not one of its disks."""
    return drive.detached and any(not d.detached for d in drives)


def is_pseudo(filename: str) -> bool:
    """QEMU's ``json:{...}`` pseudo file name for an image opened with explicit options:
    no file to point at, compare with or record as a backing file."""
    return filename.startswith("json:")


def chain_notation(labels: Any) -> str:
    """``[A] -> [B] -> [C]``, the notation of the live-block-operations text."""
    return " -> ".join(f"[{label}]" for label in labels)


@dataclass
class JobTarget:
    """A node a job writes to that is not part of any drive's chain (a mirror target)."""

    job: str
    node_name: str
    filename: str
    format: str


BIG_GRAPH = 100  # nodes; above this, per-node details are re-read at most every NODE_INFO_MAX_AGE
NODE_INFO_MAX_AGE = 5.0


class NodeInfoCache:
    """``query-named-block-nodes`` answers, kept for big graphs.

    QEMU answers that query in time growing with the square of the chain depth
    (1.9 s for 1000 images on a 2-core machine), holding its monitor meanwhile.
    For big graphs the structure is re-read on every refresh (cheap), but the
    per-node details only when new nodes appear or the cached ones are older
    than NODE_INFO_MAX_AGE (allocated sizes may lag that long).
    """

    def __init__(self) -> None:
        self.signature: tuple[Any, ...] | None = None  # the structure the drives were last built from
        self.entries: dict[str, dict[str, Any]] = {}
        self.at = float("-inf")
        self.queries = 0
        self.sketched = False  # a first picture from the structure alone was given

    def sketch_first(self, names: set[str], graph: dict[str, Any]) -> bool:
        """For a big graph seen for the first time, draw the structure at once and read
        the details afterwards.  Only without jobs: filter nodes cannot be told apart
        from images without their driver names."""
        if self.sketched or self.entries or len(names) <= BIG_GRAPH:
            return False
        if any(n.get("type") == "block-job" for n in graph.get("nodes", [])):
            return False
        self.sketched = True
        return True

    def wants_query(self, names: set[str], now: float) -> bool:
        """Ask QEMU again (small graph, new nodes, or details older than NODE_INFO_MAX_AGE)."""
        return len(names) <= BIG_GRAPH or not names <= self.entries.keys() or now - self.at > NODE_INFO_MAX_AGE

    def store(self, named: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        self.queries += 1
        self.entries = {n["node-name"]: n for n in named if n.get("node-name")}
        self.at = now
        return named

    def cached(self, names: set[str]) -> list[dict[str, Any]]:
        return [self.entries[n] for n in names]
