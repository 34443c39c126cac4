"""Command line: ``chaintui [--demo | SOCKET... | chains SOCKET... | --version]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

from . import __version__
from .backend.errors import ChainTuiError
from .backend.hub import Hub
from .backend.jobs import Job
from .backend.ops import human_duration, human_size

USAGE = """\
chaintui --demo                 make a temporary 4-image chain, start QEMU on it, open the UI
chaintui SOCKET [SOCKET...]     open the UI on running QEMU processes (unix path or host:port)
chaintui chains [--json] SOCKET...   print every drive's chain and the running jobs, then exit
chaintui log [--drive D] [--job J] [--json]   print the audit trail of actions sent
chaintui --version"""


def job_line(job: Job) -> str:
    done = f"{human_size(job.offset)} of {human_size(job.length)}"
    speed = f", limit {human_size(job.speed)}/s" if job.speed else ""
    return (
        f"  job {job.id} ({job.type} on {job.drive or '?'}): {job.state_text}, "
        f"{job.progress:.0%} ({done}){speed}"
    )


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "type": job.type,
        "drive": job.drive,
        "status": job.status,
        "offset": job.offset,
        "len": job.length,
        "speed": job.speed,
        "ready": job.ready,
        "paused": job.paused,
        "io-status": job.io_status,
        "error": job.error,
        "target": job.target,
    }


async def _chains(sockets: list[str], as_json: bool) -> int:
    hub = Hub()
    out: list[dict[str, Any]] = []
    try:
        for sock in sockets:
            try:
                session = await hub.add(sock, reconnect=False)
            except ChainTuiError as exc:
                print(f"chaintui: {exc}", file=sys.stderr)
                return 1
            drives = await hub.refresh(session.name)
            while any(img.partial for d in drives for img in d.images):  # a big graph's sketch: get the details
                drives = await hub.refresh(session.name)
            await hub.poll(session.name)
            jobs = [j for j in hub.tracker.for_session(session.name)]
            if as_json:
                out.append(
                    {
                        "qemu": session.name,
                        "address": session.address_text,
                        "drives": [
                            {
                                "name": d.name,
                                "device": d.device,
                                "chain": [
                                    {
                                        "node-name": i.node_name,
                                        "file": i.filename,
                                        "format": i.format,
                                        "virtual-size": i.virtual_size,
                                        "actual-size": i.actual_size,
                                        "backing-file": i.backing_file,
                                        "read-only": i.read_only,
                                        "job": i.job,
                                    }
                                    for i in d.images
                                ],
                                "jobs": d.jobs,
                            }
                            for d in drives
                        ],
                        "jobs": [job_json(j) for j in jobs],
                    }
                )
                continue
            if len(sockets) > 1:
                print(f"# {session.name} ({session.address_text})")
            if not drives:
                print("(no drives)")
            for d in drives:
                print(f"{d.name}: {d.notation()}")
            for j in jobs:
                print(job_line(j))
    finally:
        await hub.close()
    if as_json:
        print(json.dumps({"version": 1, "qemus": out}, indent=2))
    return 0


def _run_ui(sockets: list[str | tuple[str, str | None]], demo: bool, kind: str) -> int:
    from .app import ChainApp

    lab = None
    if demo:
        from .backend.lab import DEBIAN_PACKAGES, Lab, LabError, missing_tools

        missing = missing_tools(("qemu-img", "qemu-io", "qemu-storage-daemon" if kind == "qsd" else "qemu-system-x86_64"))
        if missing:
            print(
                f"chaintui --demo needs {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES} (or run `make demo`)",
                file=sys.stderr,
            )
            return 1
        lab = Lab()

        def _term(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, _term)
        signal.signal(signal.SIGHUP, _term)
        try:
            paths = lab.make_chain(4, 256 << 20, chunk=16 << 20, absolute=True)
            q = lab.start(paths[-1], kind=kind, named_nodes=True)
        except LabError as exc:
            lab.close()
            print(f"chaintui: demo failed to start: {exc}", file=sys.stderr)
            return 1
        sockets = [str(q.qmp)]
    try:
        app = ChainApp(sockets, lab=lab)
        app.run()
        return app.return_code or 0
    finally:
        if lab is not None:
            lab.close()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "chains":
        p = argparse.ArgumentParser(prog="chaintui chains", description="Print every drive's backing chain and jobs.")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("sockets", nargs="+", metavar="SOCKET")
        args = p.parse_args(argv[1:])
        try:
            return asyncio.run(_chains(args.sockets, args.json))
        except KeyboardInterrupt:
            return 130
    if argv and argv[0] == "log":
        from .backend.audit import AuditLog, default_path, format_entry

        p = argparse.ArgumentParser(prog="chaintui log", description=f"Print the audit trail ({default_path()}).")
        p.add_argument("--drive", help="only actions on this drive")
        p.add_argument("--job", help="only actions on this job")
        p.add_argument("--json", action="store_true", help="the JSON lines as stored")
        args = p.parse_args(argv[1:])
        for entry in AuditLog().read(drive=args.drive, job=args.job):
            print(json.dumps(entry, ensure_ascii=False) if args.json else format_entry(entry))
        return 0
    p = argparse.ArgumentParser(prog="chaintui", usage=USAGE, description="Live QEMU backing-chain operations.")
    p.add_argument("--version", action="version", version=f"chaintui {__version__}")
    p.add_argument("--demo", action="store_true", help="start a temporary chain on a real QEMU and open the UI")
    p.add_argument("--demo-qemu", choices=("qsd", "system"), default="qsd", help="which QEMU the demo starts")
    p.add_argument("sockets", nargs="*", metavar="SOCKET")
    args = p.parse_args(argv)
    sockets: list[str | tuple[str, str | None]] = list(args.sockets)
    if not args.demo and not sockets:
        from .config import ConfigError, config_path, load_endpoints

        try:
            sockets = [(e.address, e.name) for e in load_endpoints()]
        except ConfigError as exc:
            print(f"chaintui: {exc}", file=sys.stderr)
            return 2
        if not sockets:
            p.print_usage(sys.stderr)
            print(f"chaintui: give a QMP socket, name endpoints in {config_path()}, or try `chaintui --demo`",
                  file=sys.stderr)
            return 2
    return _run_ui(sockets, args.demo, args.demo_qemu)


if __name__ == "__main__":
    raise SystemExit(main())
