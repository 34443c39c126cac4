"""The image graph: live chains and image files on disk joined into one tree.

Bases at the root, overlays as branches, each node with its live users (drive,
QEMU, read-only or read-write), its other users (a libvirt domain defined but shut
off, or running but not opened in chaintui: :class:`~tui.backend.backend.ImageUser`)
and its overlays on disk.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from .backend import ImageUser
from .chain import Drive, Image, JobTarget, is_pseudo
from .disk_scan import DiskImage


@dataclass(frozen=True)
class LiveUse:
    """A drive that has an image in its chain."""

    session: str
    drive: str
    node_name: str
    read_only: bool
    active: bool
    job: str | None = None
    seen: str | None = None  # its QEMU is not connected ("lost", "stopped"): the use as last seen

    @property
    def text(self) -> str:
        mode = "rw" if not self.read_only else "ro"
        text = f"{self.drive}@{self.session} {mode}" + (" active" if self.active else "")
        return text if self.seen is None else f"{text} (✗ {self.seen}: as last seen)"

    @property
    def current(self) -> bool:
        """Known now (its QEMU is connected), not as last seen."""
        return self.seen is None


@dataclass(frozen=True)
class OtherUse:
    """A user that is not a drive chaintui shows live, with this image in its chain."""

    user: ImageUser
    top: bool  # the disk's own source (else an image of its backing chain)
    active: ClassVar[bool] = False  # as LiveUse's: no drive shown here writes through it
    current: ClassVar[bool] = True
    job: ClassVar[str | None] = None

    @property
    def text(self) -> str:
        return self.user.text + ("" if self.top else " (backing chain)")


@dataclass
class GraphNode:
    key: str  # real path, or SESSION:NODE for an image without a file name
    label: str
    format: str
    virtual_size: int
    actual_size: int | None
    backing: str | None  # key of its backing image
    live: list[LiveUse] = field(default_factory=list)
    on_disk: bool = False
    target_of: str | None = None  # a job writes to it
    children: list[str] = field(default_factory=list)
    others: list[OtherUse] = field(default_factory=list)
    left_open: list[str] = field(default_factory=list)  # still open in a QEMU, left by a drive's job

    @property
    def in_use(self) -> bool:
        return bool(self.live) or bool(self.others) or self.target_of is not None or bool(self.left_open)

    @property
    def live_now(self) -> bool:
        """In a chain of a QEMU that is connected (not only as a lost one was last seen)."""
        return any(u.current for u in self.live)

    @property
    def active(self) -> bool:
        """The image a connected QEMU's guest writes (a lost QEMU's, as last seen, is not known)."""
        return any(u.active and u.current for u in self.live)


def image_key(session: str, img: Image) -> str:
    if img.partial:
        return f"{session}:{img.node_name}"
    return file_key(session, img.node_name, img.filename)


def file_key(session: str, node_name: str, filename: str) -> str:
    """A file's real path; SESSION:NODE for a node without one (a ``json:`` pseudo name, a URL)."""
    if is_pseudo(filename) or "://" in filename or not filename.startswith("/"):
        return f"{session}:{node_name}"
    return os.path.realpath(filename)


def drive_keys(drive: Drive) -> list[str]:
    """The graph keys of a drive's chain, base first."""
    return [image_key(drive.session, img) for img in drive.images]


class ImageGraph:
    """Everything known, as a forest: bases at the roots, overlays as branches."""

    def __init__(self) -> None:
        self.nodes: dict[str, GraphNode] = {}
        self.roots: list[str] = []

    @classmethod
    def build(
        cls,
        drives: Iterable[Drive],
        targets: Iterable[tuple[str, JobTarget]] = (),
        disk: dict[str, DiskImage] | None = None,
        others: Iterable[ImageUser] = (),
        not_connected: dict[str, str] | None = None,
    ) -> ImageGraph:
        """``not_connected``: sessions whose QEMU is not connected now, and their state ("lost",
        "stopped"); their drives are shown as last seen."""
        g = cls()
        g._add_on_disk(disk or {})
        g._add_drives(drives, not_connected or {})
        g._add_targets(targets)
        g._add_others(others)
        g._distinct_labels()
        g._link()
        return g

    def _distinct_labels(self) -> None:
        """Files of one name in different directories (``vm1/disk.qcow2``, ``vm2/disk.qcow2``) are
        labelled with as many of their directories as tell them apart."""
        by_label: dict[str, list[str]] = {}
        for key, node in self.nodes.items():
            if key.startswith("/") and node.label == os.path.basename(key):
                by_label.setdefault(node.label, []).append(key)
        for keys in by_label.values():
            if len(keys) < 2:
                continue
            parts = {k: k.strip("/").split("/") for k in keys}
            depth = 2
            while depth < max(len(p) for p in parts.values()):
                if len({"/".join(p[-depth:]) for p in parts.values()}) == len(keys):
                    break
                depth += 1
            for k, p in parts.items():
                self.nodes[k].label = "/".join(p[-depth:])

    def _add_on_disk(self, disk: dict[str, DiskImage]) -> None:
        """The images found on disk, keyed by real path."""
        for path, d in disk.items():
            self.nodes[path] = GraphNode(
                path, os.path.basename(path), d.format, d.virtual_size, d.actual_size, d.backing, on_disk=True
            )

    def _add_drives(self, drives: Iterable[Drive], not_connected: dict[str, str]) -> None:
        """Every open drive's chain: QEMU's word on format, sizes and backing wins over the scan's."""
        nodes = self.nodes
        for drive in drives:
            seen = not_connected.get(drive.session)
            keys = drive_keys(drive)
            for i, (img, key) in enumerate(zip(drive.images, keys)):
                node = nodes.get(key)
                if node is None:
                    node = nodes[key] = GraphNode(
                        key, img.node_name if img.partial else img.label, img.format, img.virtual_size,
                        img.actual_size, None
                    )
                elif not img.partial:
                    node.format, node.virtual_size = img.format, img.virtual_size
                    node.actual_size = img.actual_size if img.actual_size is not None else node.actual_size
                node.backing = keys[i - 1] if i > 0 else (node.backing if node.on_disk and img.backing_file else None)
                node.live.append(
                    LiveUse(drive.session, drive.name, img.node_name, img.read_only and i < len(keys) - 1,
                            i == len(keys) - 1, img.job, seen)
                )
            for left in drive.leftovers:  # out of the chain, still open in QEMU (o closes them)
                for file, node_name in zip(left.files, left.nodes):
                    key = file_key(drive.session, node_name, file)
                    node = nodes.get(key)
                    if node is None:
                        node = nodes[key] = GraphNode(key, os.path.basename(file) or node_name, "?", 0, None, None)
                    node.left_open.append(f"left open in {drive.session} by a job of {drive.name}")

    def _add_targets(self, targets: Iterable[tuple[str, JobTarget]]) -> None:
        """Job targets (a mirror's new file): marked with the job that writes them."""
        nodes = self.nodes
        for session, t in targets:
            key = os.path.realpath(t.filename) if t.filename.startswith("/") else f"{session}:{t.node_name}"
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = GraphNode(key, os.path.basename(t.filename) or t.node_name, t.format, 0, None, None)
            node.target_of = f"{t.job}@{session}"

    def _add_others(self, others: Iterable[ImageUser]) -> None:
        """Users chaintui does not open (libvirt domains shut off or not opened), top first."""
        nodes = self.nodes
        for user in others:
            for i, key in enumerate(user.chain):
                node = nodes.get(key)
                if node is None:  # not scanned (yet): what the domain's XML says
                    node = nodes[key] = GraphNode(key, os.path.basename(key), "?", 0, None, None)
                if node.backing is None and i + 1 < len(user.chain):
                    node.backing = user.chain[i + 1]
                node.others.append(OtherUse(user, i == 0))

    def _link(self) -> None:
        """Overlays under their backing image, bases (and images in a backing loop) as roots, used first."""
        nodes = self.nodes
        for key, node in nodes.items():
            if node.backing is not None and node.backing in nodes and node.backing != key:
                nodes[node.backing].children.append(key)
            elif node.backing is not None and node.backing not in nodes:
                pass  # backing file outside the directories looked at: a root here
        for node in nodes.values():
            node.children.sort(key=lambda k: (not nodes[k].in_use, nodes[k].label, k))
        roots = [k for k, n in nodes.items() if n.backing is None or n.backing not in nodes or n.backing == k]
        roots.sort(key=lambda k: (not any(nodes[j].in_use for j in self.walk(k)), nodes[k].label, k))
        # nodes in a backing loop (broken images) are reached from no root: show them as roots
        reached = set()
        for r in roots:
            reached.update(self.walk(r))
        for k in nodes:
            if k not in reached:
                roots.append(k)
                reached.update(self.walk(k))
        self.roots = roots

    def walk(self, key: str) -> Iterable[str]:
        """``key`` and everything that backs onto it, depth first (loops stopped)."""
        seen: set[str] = set()
        stack = [key]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            yield k
            stack.extend(reversed(self.nodes[k].children))

    def dependents(self, key: str, exclude: Iterable[str] = ()) -> list[str]:
        """Every image that backs onto ``key``, directly or not, but those in ``exclude``."""
        skip = set(exclude)
        return [k for k in self.walk(key) if k != key and k not in skip]

    def users(self, key: str) -> list[LiveUse]:
        node = self.nodes.get(key)
        return list(node.live) if node else []

    def overlays_on_disk(self, key: str) -> list[str]:
        node = self.nodes.get(key)
        return [c for c in node.children if self.nodes[c].on_disk] if node else []

    def describe(self, key: str) -> str:
        """How an image is used, in a few words: ``drive0@qsd1 rw``, ``on disk only``."""
        node = self.nodes[key]
        if node.live or node.others or node.left_open:
            return ", ".join([u.text for u in node.live] + [u.text for u in node.others] + node.left_open)
        if node.target_of:
            return f"target of job {node.target_of}"
        return "on disk only"


def shared_with_others(graph: ImageGraph, drive: Drive, base_key: str) -> list[str]:
    """The images that would let someone else see a commit into ``base_key``: those outside
    ``drive``'s chain that back onto it, and those of its chain (the base too) that another
    user has in its chain (a domain defined but shut off, say)."""
    if base_key not in graph.nodes:
        return []
    chain = set(drive_keys(drive))
    return [k for k in graph.walk(base_key) if (k != base_key and k not in chain) or graph.nodes[k].others]


def describe_dependents(graph: ImageGraph, keys: list[str]) -> list[str]:
    out = []
    for k in keys:
        node = graph.nodes[k]
        where = k if k.startswith("/") else node.label
        out.append(f"{where} ({graph.describe(k)})")
    return out
