"""QEMU's block graph turned into drives: pure functions of QEMU's answers.

:mod:`tui.backend.qmp_read` asks QEMU for ``x-debug-query-block-graph`` (nodes and edges, including
block-job nodes and filters), ``query-named-block-nodes`` (sizes, files,
formats), the ``drive`` property of the devices with an id (qemu-system, only for ``-drive``
backends: see :func:`device_names`) and ``query-block-exports`` (NBD exports,
qemu-storage-daemon).  The functions here turn those answers into
:class:`~tui.backend.chain.Drive` objects, so they can be tested on recorded answers as well as
on a live QEMU.

None of these answers nests the backing chain: ``query-block`` does (``backing-image`` inside
``backing-image``), which Python's JSON parser cannot read beyond ~970 images, so it is not asked.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

from .chain import Drive, Image, JobTarget, Leftover, is_pseudo, unattached

# Nodes QEMU inserts above an image while a job runs; never shown as images.
FILTER_DRIVERS = frozenset(
    {"copy-on-read", "mirror_top", "commit_top", "throttle", "preallocate", "compress", "snapshot-access"}
)
# Protocol nodes: the file under a format node; folded into it.
PROTOCOL_DRIVERS = frozenset(
    {"file", "host_device", "host_cdrom", "nbd", "nfs", "ssh", "http", "https", "ftp", "ftps",
     "null-co", "null-aio", "iscsi", "rbd", "gluster", "nvme", "io_uring"}
)
# Filters a job inserts above a drive's root when given no filter-node-name: QEMU calls them
# implicit, and names a device's root below them.
IMPLICIT_FILTERS = frozenset({"mirror_top", "commit_top", "copy-on-read"})




def _label(info: dict[str, Any], node: str) -> str:
    name = info.get(node, {}).get("file", "") or node
    return node if is_pseudo(name) else os.path.basename(name)


class _Graph:
    """QEMU's block graph indexed for walking: nodes by id, edges both ways, node details by name."""

    def __init__(self, graph: dict[str, Any], named_nodes: list[dict[str, Any]]) -> None:
        self.info = {n["node-name"]: n for n in named_nodes if n.get("node-name")}
        self.nodes = {n["id"]: n for n in graph.get("nodes", [])}
        self.children: dict[int, list[tuple[str, int]]] = defaultdict(list)
        self.parents: dict[int, list[tuple[str, int]]] = defaultdict(list)
        for e in graph.get("edges", []):
            self.children[e["parent"]].append((e["name"], e["child"]))
            self.parents[e["child"]].append((e["name"], e["parent"]))
        self.held_by: dict[int, str] = {}  # node id -> the job holding it
        for nid, node in self.nodes.items():
            if node["type"] == "block-job":
                for _, child in self.children[nid]:
                    self.held_by.setdefault(child, node["name"])
        self.ids = {n.get("name"): nid for nid, n in self.nodes.items()}

    def name(self, nid: int) -> str:
        return self.nodes[nid].get("name", "")

    def driver(self, nid: int) -> str:
        return self.info.get(self.name(nid), {}).get("drv", "")

    def child(self, nid: int, *roles: str) -> int | None:
        for role in roles:
            for name, c in self.children[nid]:
                if name == role:
                    return c
        return None

    def is_format(self, nid: int) -> bool:
        return self.nodes[nid]["type"] == "block-driver"

    def below_implicit_filters(self, nid: int) -> int:
        """The node under the filters a job inserted above ``nid`` without a filter-node-name
        (QEMU's implicit filters: a generated ``#`` name, the main node of the job)."""
        seen: set[int] = set()
        while nid not in seen and self.name(nid).startswith("#") and self.driver(nid) in IMPLICIT_FILTERS and any(
            role == "main node" and self.nodes[p]["type"] == "block-job" for role, p in self.parents[nid]
        ):
            seen.add(nid)
            below = self.child(nid, "backing", "file")
            if below is None:
                break
            nid = below
        return nid

    def image(self, nid: int, seen: set[int]) -> Image:
        """The image a format node is; ``seen``: the chain walked so far (its users outside it are named)."""
        name = self.name(nid)
        entry = self.info.get(name, {})
        image = entry.get("image", {})
        filename = entry.get("file") or image.get("filename", name)
        if is_pseudo(filename):
            # opened with explicit options (-blockdev): the protocol child knows the file
            proto = self.child(nid, "file")
            if proto is not None:
                proto_file = self.info.get(self.name(proto), {}).get("file", "")
                if proto_file and not is_pseudo(proto_file):
                    filename = proto_file
        return Image(
            node_name=name,
            filename=filename,
            format=self.driver(nid) or image.get("format", "?"),
            virtual_size=int(image.get("virtual-size", 0)),
            actual_size=image.get("actual-size"),
            backing_file=image.get("backing-filename") or entry.get("backing_file") or None,
            read_only=bool(entry.get("ro", False)),
            job=self.held_by.get(nid),
            partial=name not in self.info,
            users=tuple(
                _label(self.info, self.name(p))
                for role, p in self.parents[nid]
                if role == "backing" and p not in seen and self.is_format(p) and self.driver(p) not in FILTER_DRIVERS
            ),
        )

    def walk(self, root: int) -> tuple[list[Image], list[str], set[int]]:
        """A root's chain through filters and backing children: images (top first), the jobs
        holding any of its nodes, and every node walked."""
        images: list[Image] = []
        jobs: list[str] = []
        cur: int | None = root
        seen: set[int] = set()
        while cur is not None and cur not in seen:
            seen.add(cur)
            if cur in self.held_by and self.held_by[cur] not in jobs:
                jobs.append(self.held_by[cur])
            if self.driver(cur) in FILTER_DRIVERS:
                cur = self.child(cur, "backing", "file")
                continue
            images.append(self.image(cur, seen))
            cur = self.child(cur, "backing")
        return images, jobs, seen


def backends_named_by_id(graph: dict[str, Any]) -> bool:
    """Whether a block-backend with a medium is called by a bare name (a ``-drive`` id, or the id of
    a device that is not a virtio proxy): only then is :func:`device_names` helped by the devices'
    ``drive`` properties.  A libvirt-style VM's backends are named by a qdev path, qsd's by nothing."""
    roots = {e["parent"] for e in graph.get("edges", []) if e.get("name") == "root"}
    return any(
        n.get("type") == "block-backend" and n["id"] in roots and n.get("name") and not n["name"].startswith("/")
        for n in graph.get("nodes", [])
    )


def device_names(g: _Graph, drive_of_device: dict[str, str] | None) -> dict[str, tuple[str, str | None]]:
    """Device names by the node at their root: (name shown, block-backend name or None).
    Shown: the qdev id (virtio-disk0), else the -drive id, else nothing (the root node name).

    From the block-backend nodes of ``x-debug-query-block-graph``, named as ``query-block`` names
    them: QEMU calls a backend by its name (the ``-drive`` id), else by the id of the device it is
    attached to, else by that device's QOM path (``/machine/peripheral/virtio-disk0/virtio-backend``).
    ``drive_of_device``: each device with an id (``/machine/peripheral/ID``) and its ``drive``
    property (a backend's name, or the root node of a backend without one) tells which device
    uses a ``-drive`` backend, and which bare names are device ids.  Its root: the edge named
    ``root``, below the filters a job inserted on its own (as ``query-block`` skips them).
    """
    devices = drive_of_device or {}
    user_of = {}  # a -drive id -> the device using it
    for dev, drive in sorted(devices.items(), reverse=True):
        user_of[drive] = dev
    device_of_root: dict[str, tuple[str, str | None]] = {}
    for nid, node in g.nodes.items():
        name = node.get("name") or ""
        top = g.child(nid, "root") if node["type"] == "block-backend" else None
        if top is None or not name:
            continue  # no medium, or nobody's drive (an export's backend, a job's)
        if name.startswith("/"):
            shown, device = qdev_id(name), None
        elif name in user_of:
            shown, device = user_of[name], name
        elif devices.get(name) == g.name(top):
            shown, device = name, None  # the id of the device a backend without a name is attached to
        else:
            shown, device = name, name
        if shown:
            device_of_root[g.name(g.below_implicit_filters(top))] = (shown, device)
    return device_of_root


def build_drives(
    session: str,
    graph: dict[str, Any],
    named_nodes: list[dict[str, Any]],
    drive_of_device: dict[str, str] | None = None,
    exports: list[dict[str, Any]] | None = None,
    previous: list[Drive] | None = None,
) -> tuple[list[Drive], list[JobTarget]]:
    """Turn QEMU's answers into drives (and the targets jobs write to); ``drive_of_device``: see
    :func:`device_names`; ``previous``: the drives as last read (see :func:`_attach_leftovers`)."""
    g = _Graph(graph, named_nodes)
    device_of_root = device_names(g, drive_of_device)
    export_of_node = {e["node-name"]: e["id"] for e in exports or [] if e.get("node-name")}
    candidates: list[Drive] = []
    walked: dict[str, set[str]] = {}
    targets: list[JobTarget] = []
    for nid, node in sorted(g.nodes.items()):
        if not g.is_format(nid):
            continue
        node_parents = g.parents[nid]
        used = node["name"] in device_of_root or node["name"] in export_of_node
        if not used and any(g.is_format(p) for _, p in node_parents):
            continue  # not a root
        target_of = next((g.name(p) for role, p in node_parents if role == "target" and g.nodes[p]["type"] == "block-job"),
                         None)
        if g.driver(nid) in PROTOCOL_DRIVERS and not node_parents and node["name"] not in export_of_node:
            continue  # a bare protocol node nobody uses
        images, jobs, seen = g.walk(nid)
        walked[node["name"]] = {g.name(i) for i in seen if i != nid}
        if not images:
            continue
        if target_of is not None:
            top = images[0]
            targets.append(JobTarget(target_of, top.node_name, top.filename, top.format))
            continue
        images.reverse()
        candidates.append(_drive(session, node["name"], images, jobs, device_of_root, export_of_node))
    # A node reached from another root (a filter above it: a device is named by the
    # image under an implicit filter) is not a drive of its own.
    candidates = [
        d
        for d in candidates
        if not any(o is not d and o.name == d.name and d.root_node in walked[o.root_node] for o in candidates)
    ]
    drives = _attach_leftovers(candidates, g, previous or [])
    loose = {id(d) for d in drives if unattached(d, drives)}  # (a list being sorted reads as empty)
    drives.sort(key=lambda d: (id(d) in loose, d.name))  # a VM's disks first, a root no device uses last
    _unique_names(drives)
    return drives, targets


def _drive(session: str, root_name: str, images: list[Image], jobs: list[str],
           device_of_root: dict[str, tuple[str, str | None]], export_of_node: dict[str, str]) -> Drive:
    """A chain's drive, named by its device, else its export, else its top node."""
    top_name = images[-1].node_name
    dev = device_of_root.get(root_name) or device_of_root.get(top_name)
    export = export_of_node.get(root_name) or export_of_node.get(top_name)
    if dev and dev[1]:
        name, device, has_device = dev[0], dev[1], True
    elif dev:
        name, device, has_device = dev[0], top_name, False
    elif export:
        name, device, has_device = export, top_name, False
    else:
        name, device, has_device = top_name, top_name, False
    return Drive(session=session, name=name, device=device, has_device=has_device, images=images,
                 root_node=root_name, jobs=jobs, export=export)


def _attach_leftovers(candidates: list[Drive], g: _Graph, previous: list[Drive]) -> list[Drive]:
    """The drives; a root nobody uses (only the monitor holds it) is what a job left behind, a
    leftover of the drive it belonged to: one whose chain shares images with it (an old top after an
    active commit or a pivot), or one whose chain had its images when last read (the old images below
    a flatten, the old chain after a mirror's pivot: they share nothing with the chain now)."""
    used_nodes = {img.node_name for d in candidates if not d.detached for img in d.images}
    had: dict[str, str] = {}  # node -> the drive that had it in its chain (or left open) when last read
    for p in previous:
        for node in [img.node_name for img in p.images] + [n for left in p.leftovers for n in left.nodes]:
            had.setdefault(node, p.name)
    drives: list[Drive] = []
    leftovers: list[Drive] = []
    for d in candidates:
        if d.detached and any(img.node_name in used_nodes or had.get(img.node_name, d.name) != d.name
                              for img in d.images):
            leftovers.append(d)
            continue
        drives.append(d)
    for left in leftovers:
        owner = _owner(left, drives, had)
        if owner is None:
            drives.append(left)  # nobody to give it to: shown as it is, a root of its own
            continue
        mine = {img.node_name for img in owner.images}
        own = [img for img in reversed(left.images) if img.node_name not in mine]  # top first
        if not own:
            continue
        owner.leftovers.append(
            Leftover(
                node_name=left.root_node,
                labels=tuple(img.label for img in own),
                files=tuple(img.filename for img in own),
                nodes=tuple(img.node_name for img in own),
                deletable=tuple(_deletable(own, g)),
                held_by_job=left.jobs[0] if left.jobs else None,
            )
        )
    return drives


def _owner(left: Drive, drives: list[Drive], had: dict[str, str]) -> Drive | None:
    """The drive a leftover root belongs to: the one sharing images with it, else the one that had them."""
    nodes = {img.node_name for img in left.images}
    for owner in drives:
        if any(img.node_name in nodes for img in owner.images):
            return owner
    names = {had[n] for n in nodes if n in had} - {left.name}
    by_name = [d for d in drives if d.name in names]
    return by_name[0] if len(by_name) == 1 else None


def _deletable(own: list[Image], g: _Graph) -> list[str]:
    """What blockdev-del closes, in order: nodes opened by name, and their files opened by name
    that nothing else uses (QEMU closes the nodes it named itself with their parent)."""
    deletable: list[str] = []
    for img in own:
        if not img.node_name.startswith("#"):
            deletable.append(img.node_name)
        proto = g.child(g.ids[img.node_name], "file") if img.node_name in g.ids else None
        proto_name = g.name(proto) if proto is not None else ""
        if proto_name and not proto_name.startswith("#") and len(g.parents[proto]) == 1:
            deletable.append(proto_name)
    return deletable


def qdev_id(qdev: str | None) -> str | None:
    """The id an operator gave a device (``-device ...,id=virtio-disk0``) from its QOM path (a
    block-backend's name in the graph, as query-block's ``qdev``).

    ``/machine/peripheral/virtio-disk0/virtio-backend`` -> ``virtio-disk0``; a device without an id
    (``/machine/peripheral-anon/device[0]/...``) has none; old QEMU reports the bare id.
    """
    if not qdev:
        return None
    if not qdev.startswith("/"):
        return qdev
    parts = qdev.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "machine" and parts[1] == "peripheral":
        return parts[2]
    return None


def _unique_names(drives: list[Drive]) -> None:
    """Never two drives with one name: a repeated name gets its root node name appended."""
    seen: dict[str, int] = {}
    for d in drives:
        seen[d.name] = seen.get(d.name, 0) + 1
    taken = {d.name for d in drives}
    for d in drives:
        if seen[d.name] > 1:
            new = f"{d.name}({d.root_node})"
            n = 2
            while new in taken:
                new = f"{d.name}({d.root_node})#{n}"
                n += 1
            taken.add(new)
            d.name = new


def graph_signature(graph: dict[str, Any]) -> tuple[Any, ...]:
    """The structure of a block graph by names (QEMU's node ids are not stable between answers):
    which nodes exist (type, name) and which child each holds in which role."""
    nodes = {n["id"]: (n.get("type", ""), n.get("name", "")) for n in graph.get("nodes", [])}
    edges = sorted(
        (nodes.get(e["parent"], ("", "?")), e.get("name", ""), nodes.get(e["child"], ("", "?")))
        for e in graph.get("edges", [])
    )
    return (tuple(sorted(nodes.values())), tuple(edges))


class StructureMemo:
    """:func:`graph_signature` of the last graph seen: an answer equal to the last one (the usual
    case, compared as data: ~10 times cheaper than signing 40 nodes) is not signed again."""

    __slots__ = ("graph", "signature")

    def __init__(self) -> None:
        self.graph: dict[str, Any] | None = None
        self.signature: tuple[Any, ...] = ()

    def __call__(self, graph: dict[str, Any]) -> tuple[Any, ...]:
        if graph != self.graph:
            self.graph, self.signature = graph, graph_signature(graph)
        return self.signature
