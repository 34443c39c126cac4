"""One QMP session per QEMU process, built on ``qemu.qmp.QMPClient``.

A session connects to a unix socket path or ``host:port``, runs commands,
turns QEMU's refusals into :class:`QMPCommandError`, hands every event to its
subscribers, and notices a lost connection and reconnects with backoff.
No protocol code is written here: ``qemu.qmp`` does all of it.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient, QMPError, StateError
from qemu.qmp.protocol import Runstate

from .errors import ConnectFailed, NotConnected, QMPCommandError
from . import ops
from . import qmp_read
from .block_graph import StructureMemo
from .chain import Drive, JobTarget, NodeInfoCache
from .disk_names import peer_pid
from .qmp_control import QmpControl
from .remote import SshTunnel, parse_ssh

# qemu.qmp logs reader/writer failures (a QEMU that dies) at ERROR level.
# Those become session states here; keep them away from stderr, where the
# terminal UI draws.
_qmp_logger = logging.getLogger("qemu.qmp")
_qmp_logger.addHandler(logging.NullHandler())
_qmp_logger.propagate = False

BACKOFF = (0.2, 0.5, 1.0, 2.0, 3.0, 5.0)
CONNECT_TIMEOUT = 5.0

EventCallback = Callable[["QemuSession", dict[str, Any]], None]
StateCallback = Callable[["QemuSession"], None]


class _Client(QMPClient):
    """QMPClient without its eager debug formatting.

    qemu.qmp formats every message with ``str(msg)`` (a JSON encoding) for a
    debug log line even when debug logging is off; with many jobs polled five
    times a second that was most of chaintui's CPU time.
    """

    def _cb_outbound(self, msg):  # type: ignore[no-untyped-def]
        if self.logger.isEnabledFor(logging.DEBUG):
            return super()._cb_outbound(msg)
        return msg

    def _cb_inbound(self, msg):  # type: ignore[no-untyped-def]
        if self.logger.isEnabledFor(logging.DEBUG):
            return super()._cb_inbound(msg)
        return msg


def _peer_pid(client: QMPClient) -> int | None:
    writer = getattr(client, "_writer", None)  # qemu.qmp keeps its stream there
    return peer_pid(writer.get_extra_info("socket")) if writer is not None else None


class SessionState(enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"  # the connection is gone; what QEMU does now is unknown (retried)
    STOPPED = "stopped"  # QEMU itself ended (a libvirt domain shut off): known, not a lost connection
    CLOSED = "closed"


_TCP = re.compile(r"^(?P<host>\[[^\]]+\]|[^/:]+):(?P<port>\d+)$")


def parse_address(address: str) -> str | tuple[str, int]:
    """``host:port`` -> a TCP address; anything else is a unix socket path."""
    address = address.strip()
    if address.startswith("unix:"):
        address = address[5:]
    if address.startswith("tcp:"):
        address = address[4:]
    m = _TCP.match(address)
    if m and not os.path.exists(address):
        host = m["host"].strip("[]")
        return (host, int(m["port"]))
    return os.path.abspath(os.path.expanduser(address))


def is_loopback(address: str | tuple[str, int]) -> bool:
    if isinstance(address, str):
        return True
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_warning(address: str | tuple[str, int]) -> str | None:
    """A warning for a TCP QMP address that is not loopback: QMP has no authentication."""
    if is_loopback(address):
        return None
    host, port = address  # type: ignore[misc]
    return (
        f"{host}:{port} is not a loopback address: QMP has no authentication, so anyone who "
        "reaches it controls that QEMU (use a unix socket, or an SSH tunnel)"
    )


def describe_disconnect(exc: BaseException) -> str:
    """Why a connection that worked went away, for the operator (what qemu.qmp raises on disconnect)."""
    root: BaseException = exc
    while getattr(root, "exc", None) is not None and isinstance(root, QMPError):
        root = root.exc  # type: ignore[attr-defined]
    if isinstance(root, EOFError) or isinstance(root, asyncio.CancelledError):
        return "connection closed by QEMU"
    if isinstance(root, RecursionError):
        return "QEMU's answer was nested too deeply to read (connection dropped)"
    if isinstance(root, (ValueError, QMPError)):
        return f"QEMU sent a message that could not be read ({type(root).__name__}: {root}); connection dropped"
    if isinstance(root, OSError):
        return f"connection error: {root.strerror or root}"
    return f"connection closed ({type(root).__name__}: {root})"


def describe_connect_error(exc: BaseException, address: str | tuple[str, int]) -> str:
    """One line for the operator about why a QMP socket could not be used."""
    where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
    root: BaseException = exc
    while isinstance(root, ConnectError) and root.exc is not None:
        root = root.exc
    if isinstance(root, asyncio.TimeoutError) or isinstance(exc, asyncio.TimeoutError):
        return f"{where}: no QMP greeting within {CONNECT_TIMEOUT:g}s (not a QMP socket, or another client holds this monitor)"
    if isinstance(root, FileNotFoundError):
        return f"{where}: no such socket"
    if isinstance(root, ConnectionRefusedError):
        return f"{where}: connection refused (no QEMU is listening)"
    if isinstance(root, PermissionError):
        return f"{where}: permission denied"
    if isinstance(root, EOFError):
        return f"{where}: closed the connection during the QMP greeting"
    if isinstance(root, OSError):
        return f"{where}: {root.strerror or root}"
    if isinstance(root, QMPError):
        return f"{where}: not a QMP server ({type(root).__name__}: {root})"
    return f"{where}: {root}"


class QemuSession:
    """A QMP connection to one QEMU process, kept alive while it is open.

    Implements :class:`~tui.backend.backend.Backend`.
    """

    kind = "qmp"
    planner: Any = ops  # the module's plan_* functions
    control = QmpControl()

    def __init__(self, address: str, name: str | None = None, *, reconnect: bool = True) -> None:
        self.raw_address = address
        self.tunnel: SshTunnel | None = None
        target = parse_ssh(address)
        if target is not None:
            self.tunnel = SshTunnel(target)
            self.address: str | tuple[str, int] = self.tunnel.local
            name = name or f"{target.host}:{os.path.basename(target.path)}"
        else:
            self.address = parse_address(address)
        if name is None:
            if isinstance(self.address, str):
                name = os.path.basename(self.address) or self.address
            else:
                name = f"{self.address[0]}:{self.address[1]}"
        self.name = name
        self.reconnect = reconnect
        self.state = SessionState.CONNECTING
        self.last_error = ""
        self.generation = 0  # increments on every successful (re)connect
        self._client: QMPClient | None = None
        self.peer_pid: int | None = None  # the QEMU process, when it is at the other end of a local unix socket
        self._polls = 0
        self._structure = StructureMemo()  # the structure watch's last answer, signed once
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._event_callbacks: list[EventCallback] = []
        self._state_callbacks: list[StateCallback] = []

    # -- subscribers -----------------------------------------------------
    def subscribe_events(self, callback: EventCallback) -> None:
        self._event_callbacks.append(callback)

    def subscribe_state(self, callback: StateCallback) -> None:
        self._state_callbacks.append(callback)

    @property
    def connected(self) -> bool:
        return self.state is SessionState.CONNECTED and self._client is not None

    @property
    def address_text(self) -> str:
        if self.tunnel is not None:
            return self.tunnel.target.text
        if isinstance(self.address, str):
            return self.address
        return f"{self.address[0]}:{self.address[1]}"

    @property
    def warning(self) -> str | None:
        return address_warning(self.address)

    async def read_drives(self, cache: NodeInfoCache, previous: list[Drive] | None = None) -> tuple[list[Drive], list[JobTarget]]:
        return await qmp_read.read_drives(self, cache, previous)

    async def read_structure(self) -> tuple[Any, ...]:
        return await qmp_read.read_structure(self, self._structure)

    async def poll_jobs(self, full: bool, open_jobs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """query-block-jobs every time; query-jobs (concluded jobs, vanished ones, jobs that are
        not block jobs) only when asked or when the job counts disagree."""
        self._polls += 1
        block_jobs, jobs = await qmp_read.read_jobs(self, full, open_jobs)
        return block_jobs, jobs

    def _set_state(self, state: SessionState) -> None:
        self.state = state
        for cb in list(self._state_callbacks):
            cb(self)

    # -- life cycle ------------------------------------------------------
    async def start(self) -> None:
        """Connect; returns after the first attempt.

        With ``reconnect`` a failed first attempt keeps retrying in the
        background (the state says ``lost``); without it, raises
        :class:`ConnectFailed`.
        """
        loop = asyncio.get_running_loop()
        self._first_attempt = loop.create_future()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"qmp-{self.name}")
        await self._first_attempt

    async def _connect_once(self) -> QMPClient:
        if self.tunnel is not None:
            await self.tunnel.ensure()
        client = _Client(self.name)
        try:
            await asyncio.wait_for(client.connect(self.address), CONNECT_TIMEOUT)
        except BaseException:
            try:
                await client.disconnect()
            except BaseException:  # noqa: BLE001 - cleanup of a dead client
                pass
            raise
        return client

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closing:
            try:
                client = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except (ConnectFailed, QMPError, OSError, EOFError, asyncio.TimeoutError) as exc:
                if isinstance(exc, ConnectFailed):  # the ssh tunnel could not be made
                    self.last_error = str(exc)
                else:
                    self.last_error = describe_connect_error(exc, self.address_text)
                first = self._first_attempt
                if first is not None and not first.done():
                    if not self.reconnect:
                        self._closing = True
                        self.state = SessionState.CLOSED
                        first.set_exception(ConnectFailed(self.last_error))
                        return
                    first.set_result(None)
                self._set_state(SessionState.LOST)
                await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
                attempt += 1
                continue
            attempt = 0
            self._client = client
            self.peer_pid = None if self.tunnel is not None else _peer_pid(client)
            self.generation += 1
            self.last_error = ""
            reader = asyncio.create_task(self._read_events(client), name=f"qmp-events-{self.name}")
            self._set_state(SessionState.CONNECTED)
            first = self._first_attempt
            if first is not None and not first.done():
                first.set_result(None)
            try:
                while client.runstate is Runstate.RUNNING and not self._closing:
                    await client.runstate_changed()
            finally:
                self._client = None
                reader.cancel()
                try:
                    await client.disconnect()
                except BaseException as exc:  # noqa: BLE001 - the reason it went away
                    if isinstance(exc, asyncio.CancelledError) and self._closing:
                        pass
                    self.last_error = describe_disconnect(exc)
            if self._closing:
                break
            self.last_error = self.last_error or "connection closed"
            self._set_state(SessionState.LOST)
            if not self.reconnect:
                break

    async def _read_events(self, client: QMPClient) -> None:
        try:
            async for event in client.events:
                ev = dict(event)
                for cb in list(self._event_callbacks):
                    try:
                        cb(self, ev)
                    except Exception:  # noqa: BLE001 - one bad subscriber must not stop events
                        logging.getLogger(__name__).exception("event callback failed")
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        self._closing = True
        client = self._client
        if client is not None:
            try:
                await client.disconnect()
            except BaseException:  # noqa: BLE001
                pass
        sup = self._supervisor
        if sup is not None and not sup.done():
            sup.cancel()
            try:
                await sup
            except BaseException:  # noqa: BLE001
                pass
        if self.tunnel is not None:
            await self.tunnel.stop()
        if self.state is not SessionState.CLOSED:
            self._set_state(SessionState.CLOSED)

    # -- commands --------------------------------------------------------
    async def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        client = self._client
        if client is None or not self.connected:
            raise NotConnected(f"{self.name}: not connected to QEMU ({self.last_error or self.state.value})")
        try:
            return await client.execute(command, dict(arguments) if arguments else None)
        except ExecuteError as exc:
            raise QMPCommandError(command, exc.error_class, str(exc)) from None
        except (StateError, ExecInterruptedError, EOFError, OSError) as exc:
            raise NotConnected(f"{self.name}: connection to QEMU lost during {command}") from exc
