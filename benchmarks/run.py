#!/usr/bin/env python3
"""chaintui benchmarks: the UI against a bare qemu.qmp script, same run, same QEMU.

Prints one table: case, min / median / max over the repeats, the reference
measured in the same run, the ratio, and the goal.  ``--smoke`` uses tiny
sizes (the test suite runs it to check this script still works).

    python benchmarks/run.py            # full sizes (1 GiB mirror, 64 jobs, 1000-image chain)
    python benchmarks/run.py --smoke    # seconds, not minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from qemu.qmp import QMPClient  # noqa: E402

from tui.app import ChainApp  # noqa: E402
from tui.backend import ops  # noqa: E402
from tui.backend.qmp_read import read_drives  # noqa: E402
from tui.backend.hub import Hub, JobsChanged  # noqa: E402
from tui.backend.lab import Lab, run  # noqa: E402
from tui.widgets import ChainGraph  # noqa: E402
from tui.widgets.jobs import JobsPanel  # noqa: E402

MiB = 1 << 20
ROWS: list[tuple[str, list[float], str, float | None, str, str]] = []


def row(case: str, values: list[float], unit: str, ref: float | None = None, goal: str = "", ok: str = "") -> None:
    ROWS.append((case, values, unit, ref, goal, ok))
    print(f"  .. {case}: {fmt(statistics.median(values), unit)}", file=sys.stderr, flush=True)


def fmt(v: float, unit: str) -> str:
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "MB":
        return f"{v:.0f} MB"
    return f"{v:.3g}"


def print_table() -> str:
    head = f"| {'case':<46} | {'min':>10} | {'median':>10} | {'max':>10} | {'reference':>10} | {'ratio':>6} | {'goal':<14} | ok |"
    sep = "|" + "|".join("-" * (len(c) ) for c in head.split("|")[1:-1]) + "|"
    lines = [head, sep]
    for case, values, unit, ref, goal, ok in ROWS:
        med = statistics.median(values)
        ratio = f"{med / ref:.3f}" if ref else ""
        lines.append(
            f"| {case:<46} | {fmt(min(values), unit):>10} | {fmt(med, unit):>10} | {fmt(max(values), unit):>10} | "
            f"{fmt(ref, unit) if ref else '':>10} | {ratio:>6} | {goal:<14} | {ok:<2} |"
        )
    out = "\n".join(lines)
    print(out)
    return out


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- 1. job overhead ---------------------------------------------------------
def _event_time(event: dict) -> float:
    ts = event["timestamp"]
    return ts["seconds"] + ts["microseconds"] / 1e6


async def mirror_bare(sock: str, target: str) -> float:
    """The reference: a plain qemu.qmp script polling query-block-jobs every 0.5 s.

    Timed from the command to QEMU's own BLOCK_JOB_READY timestamp, so the
    0.5 s polling step does not count, only how fast the job itself ran.
    """
    c = QMPClient("bare")
    await c.connect(sock)
    with c.listener("BLOCK_JOB_READY") as listener:
        t0 = time.time()
        await c.execute("drive-mirror", {"job-id": "m", "device": "D", "target": target, "format": "qcow2", "sync": "full"})
        while True:
            jobs = await c.execute("query-block-jobs")
            if jobs and jobs[0]["ready"]:
                break
            await asyncio.sleep(0.5)
        ready = await listener.get()
    dt = _event_time(ready) - t0
    await c.execute("block-job-cancel", {"device": "m"})
    while await c.execute("query-block-jobs"):
        await asyncio.sleep(0.05)
    await c.disconnect()
    return dt


async def mirror_ui(sock: str, target: str) -> float:
    """The same mirror started and watched live by chaintui's headless app."""
    app = ChainApp([sock], hub=Hub())
    async with app.run_test(size=(120, 40)) as pilot:
        while app.main_screen is None or app.main_screen.query_one("#graph", ChainGraph).drive is None:
            await pilot.pause(0.01)
        hub = app.hub
        s = next(iter(hub.sessions))
        d = hub.drive(s, "drive0")
        t0 = time.time()
        [job] = await hub.run_plan(ops.plan_mirror(d, target, "qcow2", "full", 0, "m"))
        ready = None
        while ready is None:  # the poll can see "ready" before the event is in
            await asyncio.sleep(0.005)
            ready = next(
                (e.data for e in reversed(hub.log) if isinstance(e.data, dict) and e.data.get("event") == "BLOCK_JOB_READY"),
                None,
            )
        dt = _event_time(ready) - t0
        await hub.cancel(s, job.id)
        await hub.wait_job(s, job.id, lambda j: j.finished)
    return dt


def bench_overhead(lab: Lab, size: int, repeat: int) -> None:
    paths = lab.make_chain(1, size, data=False, names=["D"])
    lab.fill(paths[0], 0, size, 0x5A)
    q = lab.start(paths[-1])
    bare, ui, conv = [], [], []
    for i in range(repeat):
        for fn, out in ((mirror_bare, bare), (mirror_ui, ui)):
            t = lab.dir / f"t-{fn.__name__}-{i}.qcow2"
            out.append(asyncio.run(fn(str(q.qmp), str(t))))
            t.unlink()
        t = lab.dir / f"conv-{i}.qcow2"
        t0 = time.perf_counter()
        run(["qemu-img", "convert", "-U", "-O", "qcow2", str(paths[0]), str(t)])
        conv.append(time.perf_counter() - t0)
        t.unlink()
    q.stop()
    ref = statistics.median(bare)
    r = statistics.median(ui) / ref
    row(f"mirror {size // MiB} MiB to ready: qemu.qmp script", bare, "s")
    row(f"mirror {size // MiB} MiB to ready: chaintui UI live", ui, "s", ref, "ratio <= 1.02", "✓" if r <= 1.02 else "✗")
    row(f"qemu-img convert {size // MiB} MiB (disk limit)", conv, "s")


# -- 2. latency ------------------------------------------------------------
async def latency_run(sock: str, jobs: int) -> list[float]:
    app = ChainApp([sock], hub=Hub())
    arrived: dict[tuple[str, str], float] = {}
    shown: dict[tuple[str, str], float] = {}
    samples: list[float] = []
    original = JobsPanel._build_card

    def build(self: JobsPanel, job, width, lit):  # type: ignore[no-untyped-def]
        shown.setdefault((job.id, job.status), time.perf_counter())
        return original(self, job, width, lit)

    JobsPanel._build_card = build  # type: ignore[method-assign]
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            while app.main_screen is None or app.main_screen.query_one("#graph", ChainGraph).drive is None:
                await pilot.pause(0.01)
            hub = app.hub

            def on_change(change):  # type: ignore[no-untyped-def]
                if isinstance(change, JobsChanged):
                    for j in change.jobs:
                        arrived.setdefault((j.id, j.status), time.perf_counter())

            hub._listeners.insert(0, on_change)  # first: the moment the event reached the client
            s = next(iter(hub.sessions))
            d = hub.drive(s, "drive0")
            target = str(Path(d.active.filename).with_name("lat.qcow2"))
            [job] = await hub.run_plan(ops.plan_mirror(d, target, "qcow2", "full", "64K", "lat"))
            await hub.wait_job(s, job.id, lambda j: j.status == "running")
            await pilot.pause(0.1)
            for _ in range(jobs):  # each command brings a JOB_STATUS_CHANGE event
                await hub.pause(s, job.id)
                await hub.wait_job(s, job.id, lambda j: j.paused)
                await pilot.pause(0.06)
                arrived.pop((job.id, "running"), None)
                shown.pop((job.id, "running"), None)
                await hub.resume(s, job.id)
                await hub.wait_job(s, job.id, lambda j: not j.paused)
                await pilot.pause(0.06)
                samples.extend((shown[k] - arrived[k]) * 1000 for k in list(arrived) if k in shown)
                arrived.clear()
                shown.clear()
            await hub.cancel(s, job.id, force=True)
            await hub.wait_job(s, job.id, lambda j: j.finished)
            os.unlink(target)
    finally:
        JobsPanel._build_card = original  # type: ignore[method-assign]
    return samples


def bench_latency(lab: Lab, jobs: int) -> None:
    paths = lab.make_chain(2, 32 * MiB, prefix="lat")
    q = lab.start(paths[-1])
    lat = asyncio.run(latency_run(str(q.qmp), jobs))
    q.stop()
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    row(f"event → job card, ms ({len(lat)} status changes)", lat, "ms", None, "p99 <= 50 ms", "✓" if p99 <= 50 else "✗")
    ROWS[-1] = (ROWS[-1][0] + f", p99 {p99:.1f}", *ROWS[-1][1:])


# -- 3. many jobs ------------------------------------------------------------
async def many_run(socks: list[str], seconds: float, per: int) -> tuple[float, float]:
    app = ChainApp(socks, hub=Hub())
    async with app.run_test(size=(140, 50)) as pilot:
        hub = app.hub
        while sum(len(v) for v in hub.drives.values()) < len(socks) * per:
            await pilot.pause(0.05)
        for s in list(hub.sessions):
            for d in hub.drives[s]:
                await hub.run_plan(ops.plan_stream(d, None, "16K", hub.new_job_id("stream", d)))
        await pilot.pause(1.0)
        prof = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - t0) * 100
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.environ["BENCH_PROFILE"])
        running = sum(1 for j in hub.tracker.jobs.values() if j.active)
        mem = rss_mb()
        for j in list(hub.tracker.jobs.values()):
            if j.active:
                await hub.cancel(j.session, j.id)
        print(f"  .. {running} jobs were running", file=sys.stderr)
    return cpu, mem


def bench_many(lab: Lab, qemus: int, per: int, seconds: float) -> None:
    procs = []
    for i in range(qemus):
        tops = [lab.make_chain(2, 16 * MiB, prefix=f"q{i}d{k}-")[-1] for k in range(per)]
        procs.append(lab.start(tops, drives=[f"drive{k}" for k in range(per)]))
    cpu, mem = asyncio.run(many_run([str(p.qmp) for p in procs], seconds, per))
    for p in procs:
        p.stop()
    row(f"{qemus} QEMUs, {qemus * per} jobs: UI CPU % of a core", [cpu], "%", None, "<= 5 %", "✓" if cpu <= 5 else "✗")
    row(f"{qemus} QEMUs, {qemus * per} jobs: UI RSS", [mem], "MB", None, "<= 150 MB", "✓" if mem <= 150 else "✗")


# -- 4. big chains -----------------------------------------------------------
async def bare_queries(sock: str) -> float:
    c = QMPClient("bare")
    await c.connect(sock)
    t0 = time.perf_counter()
    await c.execute("x-debug-query-block-graph")
    await c.execute("query-named-block-nodes", {"flat": True})
    await c.execute("query-block")
    await c.execute("query-block-exports")
    dt = (time.perf_counter() - t0) * 1000
    await c.disconnect()
    return dt


async def chain_run(sock: str, repeat: int) -> tuple[list[float], list[float], list[float], list[float]]:
    model, paint, step, connected = [], [], [], []
    hub = Hub()
    s = (await hub.add(sock)).name
    for _ in range(repeat):
        t0 = time.perf_counter()
        await read_drives(hub.sessions[s])
        model.append((time.perf_counter() - t0) * 1000)
    await hub.close()
    for _ in range(repeat):
        await bare_queries(sock)  # QEMU answers one query at a time: let the last run's finish first
        t0 = time.perf_counter()
        app = ChainApp([sock], hub=Hub())
        async with app.run_test(size=(120, 40)) as pilot:
            mounted = None
            while True:
                screen = app.main_screen
                if screen is not None and screen.is_mounted:
                    mounted = mounted or time.perf_counter()
                    g = screen.query_one("#graph", ChainGraph)
                    if g.drive is not None:
                        break
                await asyncio.sleep(0.001)
            await pilot.pause()
            paint.append((time.perf_counter() - t0) * 1000)
            connected.append((time.perf_counter() - mounted) * 1000)
            from textual.geometry import Region

            for _ in range(20):
                t1 = time.perf_counter()
                g.action_cursor_up()
                g.render_lines(Region(0, 0, g.size.width, g.size.height))
                step.append((time.perf_counter() - t1) * 1000)
    return model, paint, step, connected


def bench_chains(lab: Lab, sizes: list[int], repeat: int) -> None:
    for n in sizes:
        paths = lab.make_chain(n, 16 * MiB, prefix=f"c{n}-", data=False)
        q = lab.start(paths[-1])
        bare = [asyncio.run(bare_queries(str(q.qmp))) for _ in range(repeat)]
        model, paint, step, connected = asyncio.run(chain_run(str(q.qmp), repeat))
        q.stop()
        row(f"chain of {n}: the 4 queries, bare qemu.qmp", bare, "ms")
        row(f"chain of {n}: build the model", model, "ms", statistics.median(bare))
        row(f"chain of {n}: app start to first paint", paint, "ms")
        ok = statistics.median(connected) <= 200 if n >= 1000 else True
        row(f"chain of {n}: screen up to chain painted", connected, "ms", None,
            "<= 200 ms @1000" if n >= 1000 else "", "✓" if ok else "✗")
        if n == max(sizes):
            row(f"chain of {n}: one highlight step", step, "ms", None, "<= 16 ms", "✓" if statistics.median(step) <= 16 else "✗")


# -- 5. start-up -------------------------------------------------------------
def bench_startup(lab: Lab, repeat: int) -> None:
    paths = lab.make_chain(4, 64 * MiB, prefix="s")
    q = lab.start(paths[-1])
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tui", "chains", str(q.qmp)], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    q.stop()
    row("chaintui chains SOCKET (process wall time)", times, "s")

    async def demo_paint() -> float:
        t0 = time.perf_counter()
        with Lab() as demo:
            p = demo.make_chain(4, 256 << 20, chunk=16 << 20, absolute=True)
            dq = demo.start(p[-1], named_nodes=True)
            app = ChainApp([str(dq.qmp)], hub=Hub(), lab=demo)
            async with app.run_test(size=(120, 40)) as pilot:
                while app.main_screen is None or app.main_screen.query_one("#graph", ChainGraph).drive is None:
                    await asyncio.sleep(0.001)
                await pilot.pause()
                return time.perf_counter() - t0

    row("chaintui --demo to first paint (headless)", [asyncio.run(demo_paint()) for _ in range(repeat)], "s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: check that it runs")
    p.add_argument("--repeat", type=int, default=None)
    p.add_argument("--only", default="",
                   help="comma list of: overhead,latency,many,chains,startup (headless); pty16,pty64,ptyidle,ptyready,ptychain "
                        "(chaintui in a real tmux terminal, see pty_bench.py); pty = all five")
    p.add_argument("--seconds", type=float, default=None, help="CPU window of the terminal cases (default 15)")
    args = p.parse_args()

    def _term(signum, frame):  # type: ignore[no-untyped-def]
        raise SystemExit(128 + signum)  # so the lab's `with` removes its QEMUs and files

    signal.signal(signal.SIGTERM, _term)
    repeat = args.repeat or (1 if args.smoke else 3)
    only = set(filter(None, args.only.split(",")))
    if "pty" in only:
        only |= {"pty16", "pty64", "ptyidle", "ptyready", "ptychain"}
    want = lambda name: not only or name in only  # noqa: E731
    print(f"# chaintui benchmarks, {time.strftime('%Y-%m-%d')}, {platform.node()}: {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, {subprocess.run(['qemu-img', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    with Lab() as lab:
        if want("overhead"):
            bench_overhead(lab, 32 * MiB if args.smoke else 1024 * MiB, repeat)
        if want("latency"):
            bench_latency(lab, 3 if args.smoke else 50)
        if want("many"):
            bench_many(lab, 2 if args.smoke else 8, 2 if args.smoke else 8, 1.0 if args.smoke else 10.0)
        if want("chains"):
            bench_chains(lab, [10, 50] if args.smoke else [10, 200, 1000], repeat)
        if want("startup"):
            bench_startup(lab, repeat)
        pty = {"pty16", "pty64", "ptyidle", "ptyready", "ptychain"}
        if not only or only & pty:
            from pty_bench import bench_pty

            bench_pty(lab, row, args.smoke, args.seconds, repeat, only & pty or None)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print()
    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
