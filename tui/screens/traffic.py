"""The raw QMP traffic of one job: the commands sent about it, QEMU's replies and the events it sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, RichLog

from ..backend.hub import LogEntry
from ..backend.fmt import clock_text


def job_traffic(
    entries: Iterable[LogEntry], session: str, job_id: str, clock: Callable[[float], str] | None = None
) -> list[str]:
    """QMP lines (``→`` sent, ``←`` received) that concern one job, in order."""
    out = []
    for e in entries:
        if e.session != session or not isinstance(e.data, dict):
            continue
        data: dict[str, Any] = e.data
        stamp = (clock or clock_text)(e.when)
        if "command" in data:
            if data.get("job") == job_id:
                msg = {"execute": data["command"], "arguments": data.get("arguments") or {}}
                out.append(f"{stamp} → {json.dumps(msg, ensure_ascii=False)}")
                if "error" in data:  # QEMU's reply: the refusal, or the connection that went away
                    out.append(f"{stamp} ← {json.dumps({'error': data['error']}, ensure_ascii=False)}")
                elif "return" in data:
                    out.append(f"{stamp} ← {json.dumps({'return': data['return']}, ensure_ascii=False)}")
        elif "event" in data:
            ev = data.get("data") or {}
            if job_id in (ev.get("id"), ev.get("device")):
                out.append(f"{stamp} ← {json.dumps(data, ensure_ascii=False)}")
    return out


class TrafficScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,t", "close", "Close")]

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label(self.title_text, id="dialog-title")
            yield RichLog(id="traffic", wrap=True, markup=False, highlight=True)

    def on_mount(self) -> None:
        log = self.query_one("#traffic", RichLog)
        for line in self.lines or ["(no QMP traffic about this job was seen by this chaintui)"]:
            log.write(line)

    def action_close(self) -> None:
        self.dismiss(None)
