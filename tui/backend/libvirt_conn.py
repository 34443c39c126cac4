"""libvirt connections: the binding loaded once, one connection per URI shared by its
domains' sessions, and libvirt's event loop in a thread of its own."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from .errors import ConnectFailed, QMPCommandError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'chaintui[libvirt]' (the libvirt-python package; it builds against libvirt-dev)"


def load_libvirt() -> Any:
    try:
        import libvirt
    except ImportError:
        raise ConnectFailed(f"libvirt addresses need the libvirt Python binding: {INSTALL_HINT}") from None
    global _quiet
    if not _quiet:
        # libvirt prints every error to stderr, where the terminal UI draws; they arrive as exceptions anyway
        libvirt.registerErrorHandler(lambda ctx, err: None, None)
        _quiet = True
    return libvirt


_quiet = False


def split_address(address: str) -> tuple[str, str | None]:
    """``qemu:///system#vm1`` -> (``qemu:///system``, ``vm1``)."""
    uri, _, domain = address.partition("#")
    return uri, domain or None


class Connection:
    """One libvirt connection, shared by the sessions of its domains, opened off the loop."""

    _open: dict[tuple[str, int], Connection] = {}

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn: Any = None
        self.users = 0
        self.loop = asyncio.get_running_loop()
        self.closed_callbacks: list[Callable[[str], None]] = []
        # (domain, event, detail) of every domain on the connection: started, stopped, ...
        self._lifecycle: list[Callable[[Any, int, int], None]] = []
        self._lifecycle_id: int | None = None

    @classmethod
    async def get(cls, uri: str) -> Connection:
        libvirt = load_libvirt()
        _ensure_event_loop()
        key = (uri, id(asyncio.get_running_loop()))
        conn = cls._open.get(key)
        if conn is None or conn.conn is None:
            conn = cls(uri)
            try:
                conn.conn = await asyncio.to_thread(libvirt.open, uri)
            except libvirt.libvirtError as exc:
                raise ConnectFailed(f"{uri}: {exc.get_error_message() or exc}") from None
            conn.conn.registerCloseCallback(on_loop(conn.loop, conn._on_close), None)
            cls._open[key] = conn
        conn.users += 1
        return conn

    def add_lifecycle(self, listener: Callable[[Any, int, int], None]) -> None:
        """Hear every domain of the connection start and stop (one libvirt callback for all listeners)."""
        self._lifecycle.append(listener)
        if self._lifecycle_id is None and self.conn is not None:
            libvirt = load_libvirt()
            self._lifecycle_id = self.conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_loop(self.loop, self._on_lifecycle), None)

    def remove_lifecycle(self, listener: Callable[[Any, int, int], None]) -> None:
        if listener in self._lifecycle:
            self._lifecycle.remove(listener)
        if not self._lifecycle and self._lifecycle_id is not None:
            cid, self._lifecycle_id = self._lifecycle_id, None
            try:
                if self.conn is not None:
                    self.conn.domainEventDeregisterAny(cid)
            except Exception:  # noqa: BLE001 - a connection already gone
                pass

    def _on_lifecycle(self, conn: Any, dom: Any, event: int, detail: int, opaque: Any) -> None:
        for listener in list(self._lifecycle):
            try:
                listener(dom, event, detail)
            except Exception:  # noqa: BLE001 - one listener must not stop the others
                log.exception("lifecycle listener failed")

    def _on_close(self, conn: Any, reason: int, opaque: Any) -> None:
        self.conn = None
        for cb in list(self.closed_callbacks):
            cb(f"libvirt connection to {self.uri} closed (reason {reason})")

    async def release(self) -> None:
        self.users -= 1
        if self.users > 0 or self.conn is None:
            return
        conn, self.conn = self.conn, None
        self._open.pop((self.uri, id(self.loop)), None)
        try:
            conn.unregisterCloseCallback()
        except Exception:  # noqa: BLE001
            pass
        try:
            await asyncio.to_thread(conn.close)
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass


_event_thread: threading.Thread | None = None


def _ensure_event_loop() -> None:
    """libvirt's event loop, once per process, in a thread of its own.

    ``libvirtaio`` would run it on the asyncio loop, but libvirt then calls the loop's
    ``add_reader``/``call_later`` from whichever thread makes a libvirt call, and every
    call here runs in a worker thread (``asyncio.to_thread``) to keep the screen free:
    not thread-safe (events got lost).  It also binds to one asyncio loop per process.
    libvirt's default implementation is thread-safe; its callbacks are handed to the
    asyncio loop with ``call_soon_threadsafe``.
    """
    global _event_thread
    if _event_thread is not None:
        return
    libvirt = load_libvirt()
    libvirt.virEventRegisterDefaultImpl()

    def run() -> None:
        while True:
            if libvirt.virEventRunDefaultImpl() < 0:
                log.error("libvirt event loop failed")

    _event_thread = threading.Thread(target=run, name="libvirt-events", daemon=True)
    _event_thread.start()


def on_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., None]) -> Callable[..., None]:
    """A libvirt callback (called in libvirt's event thread) that runs ``fn`` on the asyncio loop."""

    def callback(*args: Any) -> None:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is gone: nobody listens any more
            pass

    return callback


def error_name(libvirt: Any, code: int) -> str:
    for name in dir(libvirt):
        if name.startswith("VIR_ERR_") and getattr(libvirt, name) == code:
            return name
    return f"libvirt error {code}"


def command_error(libvirt: Any, call: str, exc: Any) -> QMPCommandError:
    """A libvirt error as the error the hub knows (libvirt's ``VIR_ERR_*`` name as its class)."""
    return QMPCommandError(call, error_name(libvirt, exc.get_error_code()), exc.get_error_message() or str(exc))
