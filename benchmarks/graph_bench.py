#!/usr/bin/env python3
"""Benchmarks of the image graph (issue 15): the graph view and the on-disk scan.

Prints one table (min / median / max over the repeats, and the goal):

* graph view (``g``) of a 1000-image chain served by qemu-storage-daemon: from the key
  to the tree painted, and one highlight step (cursor move + repaint of the view);
* graph view of one base shared by 200 overlays (one live in QEMU, 199 on disk);
* the model alone (ImageGraph.build + layout) for both;
* the on-disk scan of 2000 image files with ``qemu-img info -U``: cold, then cached.

    python benchmarks/graph_bench.py            # full sizes
    python benchmarks/graph_bench.py --smoke    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual.geometry import Region  # noqa: E402

from tui.app import ChainApp  # noqa: E402
from tui.backend.hub import Hub  # noqa: E402
from tui.backend.lab import Lab, run  # noqa: E402
from tui.backend.disk_scan import DiskScanner  # noqa: E402
from tui.screens.graph import GraphScreen  # noqa: E402
from tui.widgets import ChainGraph  # noqa: E402
from tui.widgets.image_tree import ImageTree, layout  # noqa: E402

MiB = 1 << 20
ROWS: list[tuple[str, list[float], str, str]] = []


def row(case: str, values: list[float], unit: str, goal: str = "") -> None:
    ROWS.append((case, values, unit, goal))
    print(f"  .. {case}: {statistics.median(values):.1f} {unit}", file=sys.stderr, flush=True)


def print_table() -> None:
    head = f"| {'case':<58} | {'min':>9} | {'median':>9} | {'max':>9} | {'goal':<12} |"
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for case, values, unit, goal in ROWS:
        cells = [f"{v:.1f} {unit}" for v in (min(values), statistics.median(values), max(values))]
        print(f"| {case:<58} | {cells[0]:>9} | {cells[1]:>9} | {cells[2]:>9} | {goal:<12} |")


async def view(sock: str, repeat: int, what: str, steps: int = 20) -> None:
    paint, idle, step, model = [], [], [], []
    painted: list[float] = []
    original = ImageTree.render_line

    def spy(self: ImageTree, y: int):  # type: ignore[no-untyped-def]
        if not painted and self.rows:
            painted.append(time.perf_counter())
        return original(self, y)

    ImageTree.render_line = spy  # type: ignore[method-assign]
    for _ in range(repeat):
        app = ChainApp([sock], hub=Hub())
        async with app.run_test(size=(120, 40)) as pilot:
            hub = app.hub
            while True:  # the chain in full (big graphs are sketched first), and the scan done
                screen = app.main_screen
                ready = screen is not None and screen.is_mounted and screen.query_one("#graph", ChainGraph).drive
                drives = hub.all_drives()
                if ready and drives and not any(i.partial for d in drives for i in d.images):
                    break
                await asyncio.sleep(0.01)
            await app.usage.scan()
            t0 = time.perf_counter()
            graph = app.usage.graph()
            layout(graph)
            model.append((time.perf_counter() - t0) * 1000)
            painted.clear()
            t0 = time.perf_counter()
            screen.action_graph()
            while True:
                g = app.screen
                if isinstance(g, GraphScreen) and g.is_mounted and g.query_one(ImageTree).rows:
                    break
                await asyncio.sleep(0.001)
            while not painted:
                await asyncio.sleep(0.001)
            paint.append((painted[0] - t0) * 1000)
            await pilot.pause()
            idle.append((time.perf_counter() - t0) * 1000)
            tree = g.query_one(ImageTree)
            for _ in range(steps):
                t1 = time.perf_counter()
                tree.action_cursor_up()
                tree.render_lines(Region(0, 0, tree.size.width, tree.size.height))
                step.append((time.perf_counter() - t1) * 1000)
            rows = len(tree.rows)
    ImageTree.render_line = original  # type: ignore[method-assign]
    row(f"{what}: model (graph + layout, {rows} rows)", model, "ms")
    row(f"{what}: key g to first paint of the tree", paint, "ms", "<= 200 ms")
    row(f"{what}: key g to app idle (Pilot)", idle, "ms")
    row(f"{what}: one highlight step", step, "ms", "<= 16 ms")


def start(lab: Lab, top: Path):  # type: ignore[no-untyped-def]
    """qemu-storage-daemon opens a 1000-image chain in 7 s or more on a busy 2-core VM."""
    return lab.start(top, timeout=120)


def bench_views(lab: Lab, n_chain: int, n_overlays: int, repeat: int) -> None:
    paths = lab.make_chain(n_chain, 16 * MiB, prefix="c-", data=False, subdir="chain")
    q = start(lab, paths[-1])
    asyncio.run(view(str(q.qmp), repeat, f"chain of {n_chain} images in QEMU"))
    q.stop()
    shared = lab.dir / "shared"
    [base] = lab.make_chain(1, 16 * MiB, names=["base"], data=False, subdir="shared")
    for i in range(n_overlays):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2",
             f"vm{i:03d}.qcow2", str(16 * MiB)], cwd=shared)
    q = start(lab, shared / "vm000.qcow2")
    asyncio.run(view(str(q.qmp), repeat, f"1 base x {n_overlays} overlays"))
    q.stop()


def bench_scan(lab: Lab, n_files: int, repeat: int) -> None:
    where = lab.dir / "many"
    where.mkdir()
    [base] = lab.make_chain(1, 16 * MiB, names=["base"], data=False, subdir="many")
    for i in range(n_files - 1):
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "base.qcow2", "-F", "qcow2",
             f"f{i:04d}.qcow2", str(16 * MiB)], cwd=where)
    cold, cached = [], []
    for _ in range(repeat):
        scanner = DiskScanner()
        t0 = time.perf_counter()
        first = scanner.scan([str(where)])
        cold.append((time.perf_counter() - t0) * 1000)
        assert len(first.images) == n_files, first.summary()
        t0 = time.perf_counter()
        again = scanner.scan([str(where)])
        cached.append((time.perf_counter() - t0) * 1000)
        assert again.cached == n_files
    row(f"on-disk scan of {n_files} files, cold (qemu-img info -U)", cold, "ms", "background")
    row(f"on-disk scan of {n_files} files, cached (stat only)", cached, "ms", "<= 100 ms")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes")
    p.add_argument("--repeat", type=int, default=None)
    args = p.parse_args()
    repeat = args.repeat or (1 if args.smoke else 3)
    n_chain, n_overlays, n_files = (30, 20, 100) if args.smoke else (1000, 200, 2000)
    with Lab() as lab:
        bench_views(lab, n_chain, n_overlays, repeat)
        bench_scan(lab, n_files, repeat)
    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
