"""What the hub's listeners hear: small change objects (the UI turns them into Textual messages)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .backend import Backend
    from .jobs import Job


@dataclass
class SessionChanged:
    session: Backend


@dataclass
class DrivesChanged:
    session: str


@dataclass
class JobsChanged:
    jobs: list[Job]
    urgent: bool = True  # a state change (event, command); False for progress polls


@dataclass
class LogEntry:
    text: str
    session: str = ""
    kind: str = "info"  # info, action, event, error, warning
    when: float = field(default_factory=time.time)
    data: Any = None
    quiet: bool = False  # kept (the job's QMP traffic), not a line of the event log: it repeats the one before


Change = SessionChanged | DrivesChanged | JobsChanged | LogEntry
Listener = Callable[[Change], None]
