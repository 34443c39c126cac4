"""Textual messages that carry backend changes to the screens, with the data that changed.

The hub calls :meth:`tui.app.ChainApp.on_hub_change` for every change; the app
turns it into one of these and posts it to the screens, which update their
widgets from the message (not from the hub's internals).  Progress floods
collapse: a queued ``JobsUpdated`` is replaced by the next one, which carries
every job anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from .backend.chain import Drive
from .backend.hub import LogEntry
from .backend.jobs import Job


@dataclass
class SessionUpdated(Message):
    """A QEMU connected, went away, came back, or is no longer watched (``watched`` False)."""

    name: str
    session: Any  # the backend (tui.backend.backend.Backend): state, address, connected
    watched: bool = True
    retries: int | None = None  # failed reconnect attempts since the connection was lost
    order: int = 0  # where the drives panel lists it (the order QEMUs were added)


@dataclass
class DrivesUpdated(Message):
    """The drives (with their chains) of one QEMU, as QEMU has them now; () once it is gone."""

    session: str
    drives: tuple[Drive, ...] = ()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DrivesUpdated) and message.session == self.session


@dataclass
class JobsUpdated(Message):
    """Jobs changed: ``jobs`` holds every job in the order the jobs panel shows them.

    ``urgent`` for state changes (shown at once); progress updates are drawn
    at most a few times a second.
    """

    jobs: tuple[Job, ...] = ()
    changed: tuple[Job, ...] = ()
    urgent: bool = True

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, JobsUpdated):
            self.urgent = self.urgent or message.urgent
            self.changed = tuple({j.key: j for j in message.changed + self.changed}.values())
            return True
        return False


@dataclass
class LogAppended(Message):
    entry: LogEntry


@dataclass
class UsageUpdated(Message):
    """The on-disk scan progressed or ended, or images left a chain."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, UsageUpdated)


__all__ = ["DrivesUpdated", "JobsUpdated", "LogAppended", "SessionUpdated", "UsageUpdated"]
