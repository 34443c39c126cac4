"""A libvirt domain's drives, read from its live XML (``<backingStore>`` nesting, layers
named ``vda[N]`` as libvirt names them) and its block stats (sizes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from .chain import Drive, Image


def build_libvirt_drives(session: str, xml: str, stats: dict[str, Any], jobs: dict[str, str]) -> list[Drive]:
    """Drives from a live domain XML (``<backingStore>`` nesting) and block stats (sizes)."""
    root = ET.fromstring(xml)
    sizes: dict[str, tuple[int, int | None]] = {}
    for i in range(int(stats.get("block.count", 0))):
        path = stats.get(f"block.{i}.path")
        if path:
            sizes[path] = (int(stats.get(f"block.{i}.capacity", 0)),
                           stats.get(f"block.{i}.physical", stats.get(f"block.{i}.allocation")))
    drives = []
    for disk in root.findall("./devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        target = disk.find("target")
        if target is None:
            continue
        dev = target.get("dev", "")
        layers: list[tuple[str, str, str]] = []  # (vda[N], file, format), top first
        node: ET.Element | None = disk
        top_format = (disk.find("driver").get("type", "?") if disk.find("driver") is not None else "?")
        while node is not None:
            source = node.find("source")
            if source is None:
                break
            path = source.get("file") or source.get("dev") or source.get("name") or ""
            index = source.get("index") or node.get("index") or ""
            fmt_el = node.find("format")
            fmt = fmt_el.get("type", "?") if fmt_el is not None else top_format
            layers.append((f"{dev}[{index}]" if index else dev, path, fmt))
            node = node.find("backingStore")
        if not layers:
            continue
        images = []
        known = [sizes[p][0] for _, p, _ in layers if p in sizes]
        for i, (name, path, fmt) in enumerate(reversed(layers)):
            # a layer new since the sizes were read: the disk's size, allocation unknown
            capacity, physical = sizes.get(path, (known[0] if known else 0, None))
            below = layers[len(layers) - i] if i > 0 else None
            images.append(Image(
                node_name=name, filename=path, format=fmt, virtual_size=capacity,
                actual_size=int(physical) if physical is not None else None,
                backing_file=below[1] if below else None,
                read_only=i < len(layers) - 1,
                job=jobs.get(dev),
            ))
        job = jobs.get(dev)
        drives.append(Drive(session=session, name=dev, device=dev, has_device=True, images=images,
                            root_node=dev, jobs=[job] if job else []))
    return drives
