"""What chaintui reads from a QEMU over QMP: the one home of its queries.

Commands that change anything are built elsewhere, each in one function: the
operations in :mod:`tui.backend.ops`, job control in :mod:`tui.backend.qmp_control`.
``tests/test_qmp_home.py`` holds the list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from . import disk_names
from .block_graph import backends_named_by_id, build_drives, graph_signature
from .chain import Drive, JobTarget, NodeInfoCache
from .errors import QMPCommandError

PERIPHERAL = "/machine/peripheral"  # QOM: the devices given an id (-device ...,id=NAME)

async def read_graph(session: Any) -> dict[str, Any]:
    """The block graph: nodes and edges, including block-job nodes and filters."""
    return await session.execute("x-debug-query-block-graph")


async def read_structure(
    session: Any, sign: Callable[[dict[str, Any]], tuple[Any, ...]] = graph_signature
) -> tuple[Any, ...]:
    """The block graph's structure by names (see :func:`~tui.backend.block_graph.graph_signature`;
    ``sign``: a :class:`~tui.backend.block_graph.StructureMemo` to skip an unchanged answer)."""
    return sign(await read_graph(session))


async def read_named_nodes(session: Any) -> list[dict[str, Any]]:
    return await session.execute("query-named-block-nodes", {"flat": True})


async def read_device_drives(session: Any) -> dict[str, str]:
    """Each device with an id and its ``drive`` property (a ``-drive`` id, or the root node of a
    backend without a name); devices without one are left out.  Flat answers, one per device
    (``query-block`` would tell the same, nesting each drive's whole backing chain)."""
    try:
        children = await session.execute("qom-list", {"path": PERIPHERAL})
    except QMPCommandError:
        return {}  # no machine (qemu-storage-daemon)
    drives: dict[str, str] = {}
    for child in children:
        if not str(child.get("type", "")).startswith("child<"):
            continue
        try:
            drive = await session.execute("qom-get", {"path": f"{PERIPHERAL}/{child['name']}", "property": "drive"})
        except QMPCommandError:
            continue  # not a block device
        if isinstance(drive, str) and drive:
            drives[child["name"]] = drive
    return drives


READ_TRIES = 3  # reads of a graph that changed while it was being read (a job ending between the answers)


async def read_drives(session: Any, cache: NodeInfoCache | None = None,
                      previous: list[Drive] | None = None) -> tuple[list[Drive], list[JobTarget]]:
    """Ask a live :class:`~tui.backend.session.QemuSession` and build its drives.

    With a cache, a big graph seen for the first time comes back as a sketch (images
    with ``partial`` set); ask again for the details.  When QEMU runs on this host the
    sketch's file names come from the files it has open, marked ``provisional``
    (:mod:`tui.backend.disk_names`).

    The answers are separate commands: a job that ends between them leaves a graph with
    its filter and a node list without (so the filter reads as an image, and the drive
    came out twice under one name).  Answers that disagree are read again.  ``previous``: the
    drives as last read (old images a job left open are given to the drive that had them).
    """
    for attempt in range(READ_TRIES):
        answers = await _read_answers(session, cache)
        if attempt == READ_TRIES - 1 or _agree(*answers[:3]):
            break
    graph, named, exports, devices, guess = answers
    drives, targets = build_drives(session.name, graph, named or [], devices, exports, previous)
    if guess is not None:
        drives = disk_names.with_names(drives, await guess)
    return drives, targets


async def _read_answers(session: Any, cache: NodeInfoCache | None) -> tuple[Any, ...]:
    """The graph, node details, exports, devices' drives and (for a sketch) a file-name guess."""
    pid = getattr(session, "peer_pid", None)
    opened: asyncio.Future[Any] | None = None
    if cache is not None and cache.signature is None and pid is not None:
        # the first look at this QEMU may be a big graph's sketch: read the files it has open
        # (off the loop) while it answers; dropped when the details come at once
        opened = asyncio.ensure_future(asyncio.to_thread(disk_names.read_open_images, pid))
    graph = await read_graph(session)
    guess: asyncio.Future[dict[str, str]] | None = None
    if cache is None:
        named = await read_named_nodes(session)
    else:
        cache.signature = graph_signature(graph)
        names = {n["name"] for n in graph.get("nodes", []) if n.get("type") == "block-driver" and n.get("name")}
        now = time.monotonic()
        if cache.sketch_first(names, graph):
            named = None  # nothing to compare: a sketch
            if opened is not None:
                guess = asyncio.ensure_future(_match(graph, opened))
        elif cache.wants_query(names, now):
            named = cache.store(await read_named_nodes(session), now)
        else:
            named = cache.cached(names)
    devices = await read_device_drives(session) if backends_named_by_id(graph) else {}
    return graph, named, await read_exports(session), devices, guess


async def read_exports(session: Any) -> list[dict[str, Any]]:
    """The block exports (NBD, ...) and the node each serves."""
    try:
        return await session.execute("query-block-exports")
    except Exception:  # noqa: BLE001 - older QEMU without exports
        return []


def _agree(graph: dict[str, Any], named: list[dict[str, Any]] | None, exports: list[dict[str, Any]]) -> bool:
    """Whether the answers describe one graph: the same image nodes, exports on nodes it has."""
    nodes = {n.get("name") for n in graph.get("nodes", []) if n.get("type") == "block-driver"}
    if named is not None and {n.get("node-name") for n in named} != nodes:
        return False
    return all(e.get("node-name") in nodes for e in exports if e.get("node-name"))


async def _match(graph: dict[str, Any], opened: asyncio.Future[Any]) -> dict[str, str]:
    return await asyncio.to_thread(disk_names.provisional_names, graph, await opened)


async def read_jobs(
    session: Any, full: bool, open_jobs: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """``query-block-jobs`` (progress) every time; ``query-jobs`` (concluded and vanished jobs, jobs that
    are not block jobs) only when ``full`` or when QEMU's count disagrees with the ``open_jobs`` we know."""
    block_jobs = await session.execute("query-block-jobs")
    jobs = await session.execute("query-jobs") if full or len(block_jobs) != open_jobs else None
    return block_jobs, jobs
