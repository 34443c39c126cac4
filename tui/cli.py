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
from .backend.fmt import human_size

USAGE = """\
chaintui --demo                 make a temporary 4-image chain, start QEMU on it, open the UI
chaintui SOCKET [SOCKET...]     open the UI on running QEMU processes (unix path, host:port, ssh://,
                                or a libvirt URI: qemu:///system, qemu:///system#DOMAIN, qemu+ssh://host/system)
chaintui chains [--json] SOCKET...   print every drive's chain and the running jobs, then exit
chaintui users [--json] FILE [SOCKET...]   print who uses an image (drives, processes, overlays on disk)
chaintui log [--drive D] [--job J] [--json]   print the audit trail of actions sent
chaintui --version"""


def job_line(job: Job) -> str:
    done = f"{human_size(job.offset)} of {human_size(job.length)}"
    speed = f", limit {human_size(job.speed)}/s" if job.speed else ""
    return (
        f"  job {job.id} ({job.type} on {job.drive or '?'}): {job.state_text}, "
        f"{job.percent} ({done}){speed}"
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


async def _connect_all(hub: Hub, sockets: list[str]) -> list[Any] | None:
    """Connect to every socket and read its chains in full; None (after a message) when one fails."""
    sessions = []
    for sock in sockets:
        try:
            found = await hub.connect(sock, reconnect=False)  # a libvirt URI: one per domain
        except ChainTuiError as exc:
            print(f"chaintui: {exc}", file=sys.stderr)
            return None
        for session in found:
            drives = await hub.refresh(session.name)
            while any(img.partial for d in drives for img in d.images):  # a big graph's sketch: get the details
                drives = await hub.refresh(session.name)
            sessions.append(session)
    return sessions


async def _scan(hub: Hub, extra: list[str] = ()):  # type: ignore[assignment, no-untyped-def]
    """Who uses what: the live chains plus the image files in their directories (and config's)."""
    from .backend.usage import Usage
    from .config import ConfigError, load_image_dirs

    try:
        dirs = load_image_dirs()
    except ConfigError:
        dirs = []
    usage = Usage(hub, dirs + list(extra))
    await usage.scan(usage.directories())
    return usage, usage.graph()


async def _chains(sockets: list[str], as_json: bool) -> int:
    hub = Hub(watch_interval=0)  # one look, no watching
    out: list[dict[str, Any]] = []
    try:
        sessions = await _connect_all(hub, sockets)
        if sessions is None:
            return 1
        graph = (await _scan(hub))[1] if as_json else None
        for session in sessions:
            drives = hub.drives.get(session.name, [])
            await hub.poll(session.name)
            jobs = [j for j in hub.tracker.for_session(session.name)]
            if graph is not None:
                out.append(_session_json(session, drives, jobs, graph))
            else:
                _print_session(session, drives, jobs, many=len(sessions) > 1)
    finally:
        await hub.close()
    if as_json:
        print(json.dumps({"version": 1, "qemus": out}, indent=2))
    return 0


def _session_json(session: Any, drives: list[Any], jobs: list[Any], graph: Any) -> dict[str, Any]:
    """One QEMU (or libvirt domain) for ``chaintui chains --json``."""
    from .backend.image_graph import image_key

    def users(img: Any) -> dict[str, Any]:
        key = image_key(session.name, img)
        return {
            "users": [
                {"qemu": u.session, "drive": u.drive, "node-name": u.node_name,
                 "read-only": u.read_only, "active": u.active}
                for u in graph.users(key)
            ],
            "overlays-on-disk": [
                k for k in (graph.nodes[key].children if key in graph.nodes else [])
                if not graph.nodes[k].in_use
            ],
        }

    return {
        "qemu": session.name,
        "address": session.address_text,
        "backend": session.kind,
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
                        **users(i),
                    }
                    for i in d.images
                ],
                "jobs": d.jobs,
            }
            for d in drives
        ],
        "jobs": [job_json(j) for j in jobs],
    }


def _print_session(session: Any, drives: list[Any], jobs: list[Any], many: bool) -> None:
    libvirt = session.kind == "libvirt"  # one group per domain: say which
    if many and not libvirt:
        print(f"# {session.name} ({session.address_text})")
    if not drives:
        print(f"{session.name}: (no drives)" if libvirt else "(no drives)")
    for d in drives:
        print(f"{session.name + '/' if libvirt else ''}{d.name}: {d.notation()}")
    for j in jobs:
        print(job_line(j))


async def _users(path: str, sockets: list[str], as_json: bool) -> int:
    """``chaintui users FILE``: drives, processes and overlays on disk that use an image."""
    import os

    from .backend.deletion import processes_holding

    real = os.path.realpath(path)
    if not os.path.isfile(real):
        print(f"chaintui: {path}: no such file", file=sys.stderr)
        return 1
    hub = Hub(watch_interval=0)  # one look, no watching
    try:
        if await _connect_all(hub, sockets) is None:
            return 1
        usage, graph = await _scan(hub, [os.path.dirname(real)])
        procs = (await asyncio.to_thread(processes_holding, {real})).get(real, [])
    finally:
        await hub.close()
    node = graph.nodes.get(real)
    live = graph.users(real)
    domains = node.others if node else []  # libvirt domains defined but not opened (shut off, ...)
    dependents = graph.dependents(real) if node else []
    direct = node.children if node else []
    scan = usage.state.result
    if as_json:
        print(json.dumps({
            "file": real,
            "users": [{"qemu": u.session, "drive": u.drive, "node-name": u.node_name, "read-only": u.read_only,
                       "active": u.active} for u in live],
            "domains": [{"domain": o.user.name, "state": o.user.state, "disk": o.user.disk,
                         "address": o.user.address, "its-disk": o.top} for o in domains],
            "job-target": node.target_of if node else None,
            "processes": procs,
            "overlays": [{"file": k, "used-by": graph.describe(k), "direct": k in direct} for k in dependents],
            "backing-file": node.backing if node else None,
            "scanned": scan.directories if scan else [],
            "unreadable": scan.unreadable if scan else 0,
        }, indent=2))
        return 0
    print(real + (f" ({node.format}, {human_size(node.virtual_size)}, {human_size(node.actual_size)} used)" if node else ""))
    print("  drives:" + ("" if live else " none of the connected QEMUs (" + str(len(sockets)) + ")"))
    for u in live:
        role = "active image" if u.active else "in its backing chain"
        print(f"    {u.drive} on {u.session}: {'read-write' if not u.read_only else 'read-only'}, {role}")
    for o in domains:
        print(f"  domain {o.user.text} ({o.user.address}): {'its disk' if o.top else 'in its backing chain'}")
    if node is not None and node.target_of:
        print(f"  target of job {node.target_of}")
    print("  processes on this host: " + (", ".join(procs) if procs else "none"))
    print(f"  images backing onto it: {len(dependents)}" + ("" if dependents else " (in the directories scanned)"))
    for k in dependents:
        print(f"    {k}{'' if k in direct else ' (indirectly)'}: {graph.describe(k)}")
    if scan is not None:
        print(f"  scanned: {scan.summary()}")
    return 0


def _run_ui(sockets: list[str | tuple[str, str | None]], demo: bool, kind: str) -> int:
    from .app import ChainApp

    lab = None
    demo_domain = None
    if demo:
        from .backend.lab import DEBIAN_PACKAGES, Lab, LabError, missing_tools

        missing = missing_tools(("qemu-img", "qemu-io", "qemu-storage-daemon" if kind == "qsd" else "qemu-system-x86_64"))
        if kind == "libvirt":
            problem = _libvirt_missing(["qemu:///system"])
            if problem:
                print(f"chaintui --demo --demo-qemu libvirt: {problem}", file=sys.stderr)
                return 1
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
            if kind == "libvirt":
                from .backend.libvirt_demo import LibvirtDemo

                demo_domain = LibvirtDemo([str(paths[-1])])
                sockets = [demo_domain.start()]
            else:
                q = lab.start(paths[-1], kind=kind, named_nodes=True)
                sockets = [str(q.qmp)]
        except (LabError, RuntimeError) as exc:
            lab.close()
            print(f"chaintui: demo failed to start: {exc}", file=sys.stderr)
            return 1
    try:
        app = ChainApp(sockets, lab=lab)
        app.run()
        return app.return_code or 0
    finally:
        if demo_domain is not None:
            demo_domain.close()  # before the chain's files go
        if lab is not None:
            lab.close()


def _libvirt_missing(addresses: list[str]) -> str | None:
    """Why libvirt addresses cannot be opened here (the binding is an optional extra), or None."""
    from .backend.backend import is_libvirt_address

    libvirt = [a for a in addresses if is_libvirt_address(a)]
    if not libvirt:
        return None
    try:
        import libvirt as _  # noqa: F401
    except ImportError:
        from .backend.libvirt_conn import INSTALL_HINT

        return f"{libvirt[0]} is a libvirt address: {INSTALL_HINT}"
    return None


def _main_chains(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="chaintui chains", description="Print every drive's backing chain and jobs.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("sockets", nargs="+", metavar="SOCKET")
    args = p.parse_args(argv)
    missing = _libvirt_missing(args.sockets)
    if missing:
        print(f"chaintui: {missing}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_chains(args.sockets, args.json))
    except KeyboardInterrupt:
        return 130


def _main_users(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="chaintui users",
                                description="Print who uses an image: drives, processes, overlays on disk.")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("file", metavar="FILE")
    p.add_argument("sockets", nargs="*", metavar="SOCKET", help="QMP sockets (default: config.toml endpoints)")
    args = p.parse_args(argv)
    sockets = list(args.sockets)
    if not sockets:
        from .config import ConfigError, load_endpoints

        try:
            sockets = [e.address for e in load_endpoints()]
        except ConfigError as exc:
            print(f"chaintui: {exc}", file=sys.stderr)
            return 2
    try:
        return asyncio.run(_users(args.file, sockets, args.json))
    except KeyboardInterrupt:
        return 130


def _main_log(argv: list[str]) -> int:
    from .backend.audit import AuditLog, default_path, format_entry

    p = argparse.ArgumentParser(prog="chaintui log", description=f"Print the audit trail ({default_path()}).")
    p.add_argument("--drive", help="only actions on this drive")
    p.add_argument("--job", help="only actions on this job")
    p.add_argument("--json", action="store_true", help="the JSON lines as stored")
    args = p.parse_args(argv)
    for entry in AuditLog().read(drive=args.drive, job=args.job):
        print(json.dumps(entry, ensure_ascii=False) if args.json else format_entry(entry))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"chains": _main_chains, "users": _main_users, "log": _main_log}
    if argv and argv[0] in commands:
        return commands[argv[0]](argv[1:])
    p = argparse.ArgumentParser(prog="chaintui", usage=USAGE, description="Live QEMU backing-chain operations.")
    p.add_argument("--version", action="version", version=f"chaintui {__version__}")
    p.add_argument("--demo", action="store_true", help="start a temporary chain on a real QEMU and open the UI")
    p.add_argument("--demo-qemu", choices=("qsd", "system", "libvirt"), default="qsd", help="which QEMU the demo starts")
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
    missing = _libvirt_missing([s if isinstance(s, str) else s[0] for s in sockets])
    if missing:
        print(f"chaintui: {missing}", file=sys.stderr)
        return 2
    return _run_ui(sockets, args.demo, args.demo_qemu)


if __name__ == "__main__":
    raise SystemExit(main())
