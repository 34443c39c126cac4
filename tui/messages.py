"""Textual messages that carry backend changes to the screen.

The hub calls :meth:`tui.app.ChainApp.on_hub_change` for every change; the app
posts one of these to the main screen, which updates its widgets.  Progress
floods collapse: a queued ``JobsUpdated`` is replaced by the next one.
"""

from __future__ import annotations

from textual.message import Message

from .backend.hub import LogEntry


class SessionUpdated(Message):
    def __init__(self, session: str) -> None:
        super().__init__()
        self.session = session


class DrivesUpdated(Message):
    def __init__(self, session: str) -> None:
        super().__init__()
        self.session = session

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DrivesUpdated) and message.session == self.session


class JobsUpdated(Message):
    """Some jobs changed; widgets read the job model itself.

    ``urgent`` for state changes (shown at once); progress updates are drawn
    at most a few times a second.
    """

    def __init__(self, urgent: bool = True) -> None:
        super().__init__()
        self.urgent = urgent

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, JobsUpdated):
            self.urgent = self.urgent or message.urgent
            return True
        return False


class LogAppended(Message):
    def __init__(self, entry: LogEntry) -> None:
        super().__init__()
        self.entry = entry


class UsageUpdated(Message):
    """The on-disk scan progressed or ended, or images left a chain."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, UsageUpdated)
