"""The seam: what a backend provides to the hub.

A backend is one group of drives the operator sees (a QEMU reached over QMP, a
libvirt domain, ...).  The hub, the job tracker, the chain model and the
screens only use what :class:`Backend` lists here; a new kind of backend (a
Proxmox API, say) is one new module that implements it.

The vocabulary is QEMU's, because that is what every backend ends up driving:
drives are :class:`~tui.backend.chain.Drive` objects, job states and job
events are QEMU's (``BLOCK_JOB_COMPLETED`` with ``device``/``type``/``len``/
``offset``/``error``, ``BLOCK_JOB_READY``, ``BLOCK_JOB_CANCELLED``,
``JOB_STATUS_CHANGE``), and progress comes as ``query-block-jobs`` entries.  A
backend whose engine speaks another language translates into these.

Operations are :class:`~tui.backend.plan.Plan` objects of :class:`~tui.backend.plan.Step`
objects.  A step is one command in the backend's own language (a QMP command,
a libvirt call); :meth:`Backend.execute` sends it and ``Step.preview()`` says it
for the operator (the dialog shows it before anything is sent).  The hub runs steps and never looks
inside them: what a step does to the job model (starts a job of which type,
ends ready, changes the chain) is written on the step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .chain import Drive, JobTarget, NodeInfoCache
    from .jobs import Job
    from .plan import Plan, Step
    from .session import SessionState


class Planner(Protocol):
    """Builds validated plans for one kind of backend (the operator's five operations).

    Each raises :class:`~tui.backend.errors.ValidationError` for anything that can be
    known before sending, including what the backend cannot do at all.
    """

    def plan_stream(self, drive: Drive, base: str | None, speed: Any, job_id: str,
                    shared: list[str] | None = ...) -> Plan: ...

    def plan_commit(self, drive: Drive, base: str, top: str | None, speed: Any, job_id: str,
                    shared: list[str] | None = ..., override: bool = ...) -> Plan: ...

    def plan_mirror(self, drive: Drive, target: str, fmt: str, sync: str, speed: Any, job_id: str,
                    mode: str = ..., copy_mode: str | None = ..., on_target_error: str | None = ...,
                    in_use: dict[str, str] | None = ...) -> Plan: ...

    def plan_snapshot(self, drive: Drive, target: str, node_name: str, fmt: str = ...,
                      in_use: dict[str, str] | None = ...) -> Plan: ...

    def plan_copy(self, drive: Drive, target: str, method: str, fmt: str, speed: Any, job_id: str,
                  node_name: str, in_use: dict[str, str] | None = ...) -> Plan: ...


class JobControl(Protocol):
    """The step that does one job command, or a ValidationError saying why this backend
    cannot (raised before anything is sent)."""

    def cancel(self, job: Job, force: bool) -> Step: ...

    def complete(self, job: Job) -> Step: ...

    def pause(self, job: Job) -> Step: ...

    def resume(self, job: Job) -> Step: ...

    def set_speed(self, job: Job, speed: int) -> Step: ...

    def write_blocking(self, job: Job) -> Step: ...

    def dismiss(self, job: Job) -> Step | None:
        """None: nothing to send, the hub just forgets the job."""
        ...


EventCallback = Callable[[Any, dict[str, Any]], None]
StateCallback = Callable[[Any], None]


class Backend(Protocol):
    """One group of drives, its jobs and the operations on them."""

    name: str  # the group's name on screen; the hub may add "#2" to keep it unique
    state: SessionState
    last_error: str  # why it is not connected, for the operator
    generation: int  # increments on every successful (re)connect
    kind: str  # "qmp", "libvirt": what the commands are, for previews and the audit trail
    planner: Planner
    control: JobControl

    @property
    def connected(self) -> bool: ...

    @property
    def address_text(self) -> str:
        """The address as the operator wrote it (for the log, the audit trail and errors)."""
        ...

    @property
    def warning(self) -> str | None:
        """Something the operator should know about the address (e.g. unauthenticated TCP)."""
        ...

    def subscribe_events(self, callback: EventCallback) -> None:
        """``callback(backend, event)`` with a QMP-shaped job event ``{"event": ..., "data": ...}``."""
        ...

    def subscribe_state(self, callback: StateCallback) -> None: ...

    async def start(self) -> None:
        """Connect; returns after the first attempt (raises ConnectFailed when it will not retry)."""
        ...

    async def close(self) -> None: ...

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Send one step; refusals raise :class:`~tui.backend.errors.QMPCommandError`
        (class and text of the engine's error), a lost connection NotConnected."""
        ...

    async def read_drives(self, cache: NodeInfoCache, previous: list[Drive] | None = None) -> tuple[list[Drive], list[JobTarget]]:
        """The drives with their chains now (and nodes jobs write to outside any chain); ``previous``:
        the drives as last read."""
        ...

    async def read_structure(self) -> tuple[Any, ...] | None:
        """The structure of what :meth:`read_drives` reads, cheap to compare (changed by another
        client?); None when the backend cannot tell (the hub then relies on events)."""
        ...

    async def poll_jobs(self, full: bool, open_jobs: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Progress as ``query-block-jobs`` entries, and ``query-jobs`` entries when asked
        (``None``: the backend cannot list ended jobs; their end comes as an event)."""
        ...


@dataclass(frozen=True)
class ImageUser:
    """A user of image files that is not one of the drives chaintui shows live: a libvirt
    domain defined but shut off, or running but not opened in chaintui.  It would see a
    commit into any image of its chain, and needs every file of it kept."""

    name: str  # the domain, "vm2"
    state: str  # "shut off", "running", "paused" (virsh's words)
    disk: str  # "vda"
    chain: tuple[str, ...]  # the disk's source first, then its <backingStore> files as recorded
    address: str  # "qemu:///system#vm2": the address chaintui would open it at
    local: bool = True  # the files are on this machine (the disk scan may read their directories)
    read_only: bool = False

    @property
    def text(self) -> str:
        """``vm2 (shut off) vda``."""
        return f"{self.name} ({self.state}) {self.disk}" + (" ro" if self.read_only else "")


class ImageUsers(Protocol):
    """Optional, reported by a backend's ``image_users()``: every user of images its engine knows of
    (a libvirt connection: each defined domain), read off the UI loop.  Backends sharing one
    source give the same ``key``; it is read once per key.  The hub's own drives are left out
    by the reader of this list (by ``address`` and disk), not by the source."""

    key: str

    async def read(self) -> list[ImageUser]: ...


def image_users_of(backend: Backend) -> ImageUsers | None:
    """The backend's source of other users of images, or None when it has none."""
    get = getattr(backend, "image_users", None)
    return get() if callable(get) else None


def is_libvirt_address(address: str) -> bool:
    """``qemu:///system``, ``qemu+ssh://host/system``, ``qemu:///session#DOMAIN``..."""
    scheme = address.split("://", 1)[0] if "://" in address else ""
    return scheme == "qemu" or scheme.startswith("qemu+")


async def open_backends(address: str, name: str | None = None, *, reconnect: bool = True) -> list[Backend]:
    """The backends an address names, not yet started: one QMP session, or one per libvirt domain."""
    if is_libvirt_address(address):
        from .libvirt_session import open_domains

        return list(await open_domains(address, name))
    from .session import QemuSession

    return [QemuSession(address, name, reconnect=reconnect)]


async def watch_address(address: str, on_new: Callable[[str], None]) -> Callable[[], Awaitable[None]] | None:
    """For an address naming a group that can grow (every domain of a libvirt URI): ``on_new(address)``
    of each member that appears later.  Returns what stops watching, or None for a fixed address."""
    if is_libvirt_address(address):
        from .libvirt_session import watch_domains

        return await watch_domains(address, on_new)
    return None
