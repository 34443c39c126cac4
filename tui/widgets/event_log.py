"""QMP events and operator actions, with timestamps."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.widgets import RichLog

from ..backend.hub import LogEntry
from ..backend.fmt import clock_text

KIND_STYLE = {"action": "cyan", "event": "", "error": "bold red", "warning": "yellow", "info": "dim"}


class EventLog(RichLog):
    def __init__(self, *, clock: Callable[[float], str] | None = None, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=2000, wrap=True, markup=False, highlight=False, auto_scroll=True)
        self.clock = clock or clock_text

    def add(self, entry: LogEntry) -> None:
        if entry.quiet:
            return
        line = Text.assemble(
            (self.clock(entry.when) + " ", "dim"),
            (f"{entry.session or '-':<10} ", "dim"),
            (entry.text, KIND_STYLE.get(entry.kind, "")),
        )
        self.write(line)
