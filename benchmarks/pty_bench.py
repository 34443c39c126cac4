#!/usr/bin/env python3
"""chaintui in a REAL terminal: a tmux pane of a stated size, measured from outside.

Nothing here runs inside chaintui: it is started as ``python -m tui SOCKETS`` in
its own pseudo-terminal (a private tmux server), its CPU time and RSS are read
from ``/proc/PID``, and what it draws is read back with ``tmux capture-pane``.

- CPU share: CPU seconds per wall second of the chaintui process, beside a bare
  ``qemu.qmp`` poller (query-block-jobs 5 times a second per QEMU, query-jobs
  once a second) measured over the same window of the same run;
- visible refresh rate: distinct progress texts a second on screen for a stream
  QEMU advances faster than 5 Hz;
- a ready event at another client -> "ready" visible on the terminal;
- a keystroke (Down in the chain graph) -> the details line shows the new image;
- idle with 8 QEMUs and no jobs (also alone, over 60 s windows: ptyidle); RSS with 64 jobs;
- a 1000-image chain: the active image's file name on screen, from launch.

Jobs are block-streams from a base full of *zero clusters*: QEMU streams (and
throttles) them like data, but nothing is written to disk, so hundreds of
seconds of 1 MiB/s jobs cost no space.

    python benchmarks/pty_bench.py [--smoke] [--seconds 15] [--runs 3]
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from qemu.qmp import QMPClient  # noqa: E402

from tui.backend.lab import Lab, LabQemu, run  # noqa: E402

MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent

# The reference: what any client watching these jobs at 5 Hz must spend at least.
BARE_POLLER = r"""
import asyncio, sys, time
from qemu.qmp import QMPClient
async def watch(sock):
    c = QMPClient("bare")
    await c.connect(sock)
    n = 0
    while True:
        await c.execute("query-block-jobs")
        if n % 5 == 0:
            await c.execute("query-jobs")
        n += 1
        await asyncio.sleep(0.2)
async def main():
    await asyncio.gather(*(watch(s) for s in sys.argv[1:]))
asyncio.run(main())
"""


# -- the process -------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_share(pids: list[int], seconds: float) -> list[float]:
    """Percent of one core each process used over the same ``seconds`` of wall time."""
    c0 = [cpu_seconds(p) for p in pids]
    t0 = time.monotonic()
    time.sleep(seconds)
    dt = time.monotonic() - t0
    return [(cpu_seconds(p) - c) / dt * 100 for p, c in zip(pids, c0)]


class Terminal:
    """chaintui running in a private tmux server's pane of ``width`` x ``height``."""

    def __init__(self, lab: Lab, sockets: list[str], width: int, height: int) -> None:
        self.sock = str(lab.dir / f"tmux-{os.getpid()}.sock")
        self.width, self.height = width, height
        home = lab.dir / "home"
        home.mkdir(exist_ok=True)
        env = (f"HOME={home} XDG_STATE_HOME={home}/state XDG_CONFIG_HOME={home}/config "
               f"TERM=tmux-256color COLORTERM=truecolor")
        cmd = f"cd {ROOT} && exec env {env} {sys.executable} -m tui " + " ".join(sockets)
        self.launched = time.monotonic()
        self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "bench", "-x", str(width), "-y", str(height), cmd,
                   ";", "set", "-g", "status", "off", ";", "set", "-g", "remain-on-exit", "on")
        self.pid = int(self._tmux("list-panes", "-t", "bench", "-F", "#{pane_pid}").strip())

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-S", self.sock, *args], check=True, capture_output=True, text=True).stdout

    def screen(self) -> list[str]:
        return self._tmux("capture-pane", "-p", "-t", "bench").split("\n")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "bench", *keys)

    def wait(self, predicate, timeout: float = 60.0, step: float = 0.0):  # type: ignore[no-untyped-def]
        """Poll the screen until ``predicate(lines)`` is truthy; returns (value, monotonic time seen)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.screen()
            t = time.monotonic()
            value = predicate(lines)
            if value:
                return value, t
            if t > deadline:
                raise TimeoutError("screen never showed it; last screen:\n" + "\n".join(lines))
            if step:
                time.sleep(step)

    def close(self) -> None:
        try:
            self.keys("q")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and os.path.exists(f"/proc/{self.pid}") and _alive(self.pid):
                time.sleep(0.05)
        except subprocess.CalledProcessError:
            pass
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def has(text: str):  # type: ignore[no-untyped-def]
    return lambda lines: any(text in ln for ln in lines)


# -- QEMU side ---------------------------------------------------------------
def zero_chain(lab: Lab, prefix: str, size: int) -> Path:
    """base (all zero clusters) <- top; returns the top."""
    base, top = lab.make_chain(2, size, prefix=prefix, data=False)
    run(["qemu-io", "-f", "qcow2", "-c", f"write -z 0 {size}", str(base)])
    return top


async def _start_streams(q: LabQemu, speeds: dict[str, int]) -> None:
    """One block-stream per drive (export) of ``q``, job IDs s-<drive>, at speeds[drive]."""
    c = QMPClient("bench")
    await c.connect(str(q.spare))
    for export in await c.execute("query-block-exports"):
        drive = export["id"]
        await c.execute("block-stream", {"job-id": f"s-{q.qmp.stem}-{drive}", "device": export["node-name"],
                                         "speed": speeds.get(drive, MiB)})
    await c.disconnect()


async def _each_job(q: LabQemu, command: str) -> None:
    c = QMPClient("bench")
    await c.connect(str(q.spare))
    for job in await c.execute("query-block-jobs"):
        await c.execute(command, {"device": job["device"]})
    await c.disconnect()


def start_qemus(lab: Lab, qemus: int, per: int, size: int, prefix: str) -> list[LabQemu]:
    procs = []
    for i in range(qemus):
        tops = [zero_chain(lab, f"{prefix}{i}d{k}-", size) for k in range(per)]
        procs.append(lab.start(tops, drives=[f"drive{k}" for k in range(per)], name=f"{prefix}{i}"))
    return procs


# -- the cases ---------------------------------------------------------------
PROGRESS = re.compile(r"(\d+%\s+[\d.]+ \S+ of [\d.]+ \S+)")


def progress_text(lines: list[str], job_id: str) -> str | None:
    """The progress (percent, bytes done) on the card of ``job_id``."""
    for i, ln in enumerate(lines):
        if re.search(rf"(?<![\w-]){re.escape(job_id)}(?![\w-])", ln):
            for nxt in lines[i : i + 3]:
                m = PROGRESS.search(nxt)
                if m:
                    return m.group(1)
    return None


def jobs_case(lab: Lab, qemus: int, per: int, seconds: float, runs: int, width: int, height: int,
              idle: bool = False, paused: bool = False) -> dict[str, list[float]]:
    """chaintui and the bare poller watching qemus x per streams at 1 MiB/s; CPU %, RSS."""
    out: dict[str, list[float]] = {}
    size = 1024 * MiB
    procs = start_qemus(lab, qemus, per, size, f"j{qemus}x{per}q")
    term = Terminal(lab, [str(p.qmp) for p in procs], width, height)
    try:
        term.wait(has(f"{qemus} QEMU · {qemus * per} drives"))
        if idle:
            time.sleep(2)
            out["idle"] = [cpu_share([term.pid], seconds)[0] for _ in range(runs)]
        for p in procs:
            asyncio.run(_start_streams(p, {}))
        term.wait(has(f"· {qemus * per} jobs"))
        poller = subprocess.Popen([sys.executable, "-c", BARE_POLLER, *(str(p.spare) for p in procs)])
        try:
            time.sleep(3)  # both settle
            ui, bare = [], []
            for _ in range(runs):
                a, b = cpu_share([term.pid, poller.pid], seconds)
                ui.append(a)
                bare.append(b)
            out["ui"], out["bare"] = ui, bare
            out["rss"] = [rss_mb(term.pid)]
        finally:
            poller.terminate()
            poller.wait()
        if paused:
            for p in procs:
                asyncio.run(_each_job(p, "block-job-pause"))
            term.wait(lambda lines: sum(ln.count("paused") for ln in lines) >= min(4, qemus * per))
            time.sleep(2)
            out["paused"] = [cpu_share([term.pid], seconds)[0] for _ in range(runs)]
    finally:
        term.close()
        for p in procs:
            p.stop()
    return out


def idle_case(lab: Lab, qemus: int, per: int, seconds: float, runs: int, width: int, height: int) -> list[float]:
    """chaintui connected to ``qemus`` QEMUs of ``per`` drives each, no jobs: CPU % over ``runs`` windows."""
    procs = start_qemus(lab, qemus, per, 64 * MiB, f"i{qemus}x{per}q")
    term = Terminal(lab, [str(p.qmp) for p in procs], width, height)
    try:
        term.wait(has(f"{qemus} QEMU · {qemus * per} drives"))
        time.sleep(2)
        return [cpu_share([term.pid], seconds)[0] for _ in range(runs)]
    finally:
        term.close()
        for p in procs:
            p.stop()


def refresh_case(lab: Lab, seconds: float, runs: int, width: int, height: int) -> list[float]:
    """One stream at 8 MiB/s (QEMU advances it ~16 times a second): progress texts a second on screen."""
    [q] = start_qemus(lab, 1, 1, 2047 * MiB, "fast")
    term = Terminal(lab, [str(q.qmp)], width, height)
    try:
        term.wait(has("1 QEMU · 1 drive "))
        asyncio.run(_start_streams(q, {"drive0": 8 * MiB}))
        job = f"s-{q.qmp.stem}-drive0"
        term.wait(lambda ls: progress_text(ls, job))
        time.sleep(1)
        return [visible_rate(term, job, seconds) for _ in range(runs)]
    finally:
        term.close()
        q.stop()


def visible_rate(term: Terminal, job_id: str, seconds: float) -> float:
    """Distinct progress texts a second that the terminal shows for ``job_id``."""
    texts: list[str] = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        t = progress_text(term.screen(), job_id)
        if t and (not texts or texts[-1] != t):
            texts.append(t)
        time.sleep(0.01)
    return (len(texts) - 1) / (time.monotonic() - t0)


async def _ready_cycles(term: Terminal, q: LabQemu, node: str, cycles: int, lab: Lab) -> list[float]:
    """Mirrors that go ready; from QEMU's BLOCK_JOB_READY timestamp (seen by this other client) to the screen."""
    samples = []
    c = QMPClient("bench")
    await c.connect(str(q.spare))
    loop = asyncio.get_running_loop()
    for i in range(cycles):
        job = f"m{i}"
        target = lab.dir / f"ready-{i}.qcow2"
        with c.listener("BLOCK_JOB_READY") as listener:
            await c.execute("drive-mirror", {"job-id": job, "device": node, "target": str(target), "format": "qcow2",
                                             "sync": "full", "speed": 32 * MiB})
            ev = await listener.get()
        ts = ev["timestamp"]["seconds"] + ev["timestamp"]["microseconds"] / 1e6
        pat = re.compile(rf"(?<![\w-]){job}(?![\w-]).*\bready\b")
        await loop.run_in_executor(None, lambda: term.wait(lambda ls: any(pat.search(ln) for ln in ls), 10))
        seen = time.time()  # term.wait returned right after the capture that showed it
        samples.append((seen - ts) * 1000)
        await c.execute("block-job-cancel", {"device": job})
        while await c.execute("query-block-jobs"):
            await asyncio.sleep(0.02)
        target.unlink()
        await asyncio.sleep(0.3)
    await c.disconnect()
    return samples


def ready_case(lab: Lab, cycles: int, width: int, height: int) -> list[float]:
    [base, top] = lab.make_chain(2, 16 * MiB, prefix="ready-")
    lab.fill(base, 0, 8 * MiB, 0x5A)
    q = lab.start(top, name="ready")
    term = Terminal(lab, [str(q.qmp)], width, height)
    try:
        term.wait(has("1 QEMU · 1 drive "))
        time.sleep(1)
        c = asyncio.run(_node(q))
        return asyncio.run(_ready_cycles(term, q, c, cycles, lab))
    finally:
        term.close()
        q.stop()


async def _node(q: LabQemu) -> str:
    c = QMPClient("bench")
    await c.connect(str(q.spare))
    [export] = await c.execute("query-block-exports")
    await c.disconnect()
    return export["node-name"]


DETAILS = re.compile(r"(\S+\.qcow2) · (backing file: \S+|no backing file)")


def details_line(lines: list[str]) -> str | None:
    for ln in lines:
        m = DETAILS.search(ln)
        if m:
            return os.path.basename(m.group(1))
    return None


def chain_case(lab: Lab, n: int, launches: int, presses: int, width: int, height: int) -> dict[str, list[float]]:
    """A chain of ``n`` images: from launch to file names on screen (unconfirmed ones count: read from the
    files QEMU has open, see tui.backend.disk_names), to QEMU's own details; Up -> details line."""
    paths = lab.make_chain(n, 16 * MiB, prefix=f"c{n}-", data=False)
    q = lab.start(paths[-1], name=f"chain{n}", timeout=60)
    out: dict[str, list[float]] = {"screen": [], "active": [], "visible": [], "all": [], "key": []}
    try:
        for _ in range(launches):
            asyncio.run(_settle(q))  # QEMU answers one query at a time: the last launch's must be done
            term = Terminal(lab, [str(q.qmp)], width, height)
            try:
                t0 = term.launched
                _, t = term.wait(has("QEMU ·"), 30)
                out["screen"].append((t - t0) * 1000)
                _, t = term.wait(has(paths[-1].name), 60)
                out["active"].append((t - t0) * 1000)
                # the images visible below the active one in the graph, by file name
                _, t = term.wait(lambda ls: has(paths[-2].name)(ls) and has(paths[-3].name)(ls), 60)
                out["visible"].append((t - t0) * 1000)
                _, t = term.wait(lambda ls: details_line(ls) == paths[-1].name and not has("reading details")(ls), 60)
                out["all"].append((t - t0) * 1000)
                time.sleep(0.5)
                for _ in range(presses):
                    before = details_line(term.screen())
                    k0 = time.monotonic()
                    term.keys("Up")
                    _, t = term.wait(lambda ls: (d := details_line(ls)) is not None and d != before, 10)
                    out["key"].append((t - k0) * 1000)
                    time.sleep(0.1)
            finally:
                term.close()
    finally:
        q.stop()
    return out


async def _settle(q: LabQemu) -> None:
    c = QMPClient("bench")
    await c.connect(str(q.spare))
    await c.execute("query-named-block-nodes", {"flat": True})
    await c.disconnect()


# -- all of it ---------------------------------------------------------------
def bench_pty(lab: Lab, row, smoke: bool = False, seconds: float | None = None, runs: int = 3,  # type: ignore[no-untyped-def]
              only: set[str] | None = None) -> None:
    """Run the real-terminal cases, reporting each through ``row(case, values, unit, ref, goal, ok)``."""
    seconds = seconds or (2.0 if smoke else 15.0)
    want = lambda name: not only or name in only  # noqa: E731
    W, H = 200, 60
    load = os.getloadavg()
    print(f"  .. load average before the terminal cases: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    if want("pty16"):
        r = jobs_case(lab, 2 if smoke else 4, 2 if smoke else 4, seconds, runs, W, H, paused=True)
        r["fps"] = refresh_case(lab, min(seconds, 5.0), runs, W, H)
        n = (2 if smoke else 4) ** 2
        ui, bare = statistics.median(r["ui"]), statistics.median(r["bare"])
        row(f"tty {W}x{H}, {n} jobs: bare qemu.qmp poller 5 Hz, % core", r["bare"], "%")
        row(f"tty {W}x{H}, {n} jobs: chaintui, % of a core", r["ui"], "%", bare, "<= 3 %, <= 2.5x",
            "✓" if ui <= 3 and ui <= 2.5 * bare else "✗")
        row(f"tty {W}x{H}, {n} jobs all paused: chaintui %", r["paused"], "%", None, "next to nothing",
            "✓" if statistics.median(r["paused"]) <= 0.5 else "✗")
        fps = statistics.median(r["fps"])
        row(f"tty {W}x{H}: progress texts/s on screen (8 MiB/s job)", r["fps"], "/s", None, ">= 5 /s",
            "✓" if fps >= 4.8 else "✗")
    if want("pty64"):
        q, per = (2, 2) if smoke else (8, 8)
        r = jobs_case(lab, q, per, seconds, runs, W, H, idle=True)
        ui, bare = statistics.median(r["ui"]), statistics.median(r["bare"])
        row(f"tty {W}x{H}, {q} QEMUs idle, no jobs: chaintui %", r["idle"], "%", None, "<= 0.3 %",
            "✓" if statistics.median(r["idle"]) <= 0.3 else "✗")
        row(f"tty {W}x{H}, {q * per} jobs: bare qemu.qmp poller 5 Hz, %", r["bare"], "%")
        row(f"tty {W}x{H}, {q * per} jobs: chaintui, % of a core", r["ui"], "%", bare, "<= 5 %",
            "✓" if ui <= 5 else "✗")
        row(f"tty {W}x{H}, {q * per} jobs: chaintui RSS", r["rss"], "MB", None, "<= 150 MB",
            "✓" if r["rss"][0] <= 150 else "✗")
    if want("ptyidle"):  # the idle row of pty64 alone, over longer windows (one 10 ms tick is 0.067 % of 15 s)
        q, per = (2, 2) if smoke else (8, 8)
        idle_seconds = seconds if smoke else max(seconds, 60.0)
        r_idle = idle_case(lab, q, per, idle_seconds, runs, W, H)
        row(f"tty {W}x{H}, {q} QEMUs idle, no jobs, {idle_seconds:.0f} s windows: chaintui %", r_idle, "%", None,
            "<= 0.3 %", "✓" if statistics.median(r_idle) <= 0.3 else "✗")
    if want("ptyready"):
        lat = sorted(ready_case(lab, 3 if smoke else 10 * runs, W, H))
        med, worst = statistics.median(lat), max(lat)
        row(f"tty: ready at another client → on screen ({len(lat)}), worst {worst:.0f}", lat, "ms", None,
            "med <= 50, max <= 150", "✓" if med <= 50 and worst <= 150 else "✗")
    if want("ptychain"):
        n = 50 if smoke else 1000
        r = chain_case(lab, n, runs, 3 if smoke else 10, 120, 40)
        row(f"tty 120x40, chain of {n}: launch → screen up", r["screen"], "ms")
        row(f"tty 120x40, chain of {n}: launch → active file name", r["active"], "ms", None, "<= 1000 ms",
            "✓" if statistics.median(r["active"]) <= 1000 else "✗")
        row(f"tty 120x40, chain of {n}: launch → visible file names", r["visible"], "ms", None, "<= 1000 ms",
            "✓" if statistics.median(r["visible"]) <= 1000 else "✗")
        row(f"tty 120x40, chain of {n}: screen up → visible file names", [v - s for v, s in zip(r["visible"], r["screen"])],
            "ms")
        row(f"tty 120x40, chain of {n}: launch → all details read", r["all"], "ms")
        row(f"tty 120x40, chain of {n}: key Up → details line", r["key"], "ms", None, "<= 30 ms",
            "✓" if statistics.median(r["key"]) <= 30 else "✗")


def main() -> int:
    import argparse

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as bench  # noqa: PLC0415

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--runs", type=int, default=None)
    p.add_argument("--only", default="", help="comma list of: pty16,pty64,ptyidle,ptyready,ptychain (default: all)")
    args = p.parse_args()
    runs = args.runs or (1 if args.smoke else 3)
    with Lab() as lab:
        bench_pty(lab, bench.row, args.smoke, args.seconds, runs, set(filter(None, args.only.split(","))))
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    bench.print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
