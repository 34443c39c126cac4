"""QMP events and operator actions, with timestamps."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from ..backend.hub import LogEntry

KIND_STYLE = {"action": "cyan", "event": "", "error": "bold red", "warning": "yellow", "info": "dim"}


class EventLog(RichLog):
    def __init__(self, *, clock: Callable[[float], str] | None = None, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=2000, wrap=True, markup=False, highlight=False, auto_scroll=True)
        self.clock = clock or (lambda t: time.strftime("%H:%M:%S", time.localtime(t)))

    def add(self, entry: LogEntry) -> None:
        line = Text.assemble(
            (self.clock(entry.when) + " ", "dim"),
            (f"{entry.session or '-':<10} ", "dim"),
            (entry.text, KIND_STYLE.get(entry.kind, "")),
        )
        self.write(line)
