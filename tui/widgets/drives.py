"""Every drive of every connected QEMU, with the connection state and job count."""

from __future__ import annotations

import re

from dataclasses import dataclass

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from ..backend.chain import Drive
from ..backend.session import QemuSession, SessionState

STATE_MARK = {
    SessionState.CONNECTED: ("●", "green"),
    SessionState.CONNECTING: ("◌", "yellow"),
    SessionState.LOST: ("✗", "red"),
    SessionState.STOPPED: ("■", "yellow"),
    SessionState.CLOSED: ("○", "grey50"),
}
SEP = "\x1f"


def option_id(session: str, drive: str) -> str:
    return f"{session}{SEP}{drive}"


class DrivesPanel(OptionList):
    """Drives grouped by QEMU process; posts :class:`DrivesPanel.DriveSelected`."""

    @dataclass
    class DriveSelected(Message):
        panel: DrivesPanel
        session: str
        drive: str

        @property
        def control(self) -> DrivesPanel:
            return self.panel

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.selected: tuple[str, str] | None = None

    def show(
        self,
        sessions: list[QemuSession],
        drives: dict[str, list[Drive]],
        job_counts: dict[tuple[str, str], int],
        retries: dict[str, int] | None = None,
    ) -> None:
        """Rebuild the list, keeping the selected drive highlighted."""
        options: list[Option] = []
        wanted = self.selected
        for sess in sessions:
            mark, color = STATE_MARK[sess.state]
            head = Text.assemble((f"{mark} ", color), (sess.name, "bold"))
            if sess.state is SessionState.LOST:
                n = (retries or {}).get(sess.name, 0)
                head.append(f"\n  lost · retry {n}" if n else "\n  lost · retrying", "red")
            elif sess.state is SessionState.CONNECTING:
                head.append("\n  connecting", "yellow")
            elif sess.state is SessionState.STOPPED:  # "domain NAME was destroyed" -> "stopped: was destroyed"
                head.append("\n  stopped: " + re.sub(r"^domain \S+ ", "", sess.last_error or "shut off"), "yellow")
            addr = sess.address_text
            room = max(8, (self.scrollable_content_region.width or 26) - 3)
            if len(addr) > room:
                addr = "…" + addr[-(room - 1):]
            head.append(f"\n  {addr}", "dim")
            if sess.state is SessionState.LOST and sess.last_error:
                err = sess.last_error.rsplit(": ", 1)[-1]
                head.append(f"\n  {err[:room]}", "red dim")
            options.append(Option(head, id=f"session{SEP}{sess.name}", disabled=True))
            session_drives = drives.get(sess.name, [])
            if not session_drives and sess.state is SessionState.CONNECTED:
                options.append(Option(Text("  (no drives)", "dim"), disabled=True))
            for d in session_drives:
                n = job_counts.get(d.key, 0)
                # one line, never wrapped (the panel's text-wrap): the name and its jobs first,
                # then what fits of the rest
                line = Text.assemble(("  ", ""), (d.name, "bold"))
                line.no_wrap = True
                line.overflow = "ellipsis"
                if n:
                    line.append(f" ⚙{n}", "yellow")
                line.append(f" · {len(d.images)} img", "dim")
                if d.detached:
                    line.append(" detached", "dim italic")
                for left in d.leftovers:
                    # images an earlier job left open: they block snapshots and mirrors until closed (o)
                    line.append(f"\n    ⚠ left open: {', '.join(left.labels)}"[:60], "yellow")
                options.append(Option(line, id=option_id(sess.name, d.name)))
        highlighted = self.highlighted
        self.set_options(options)
        ids = [o.id for o in options]
        target = option_id(*wanted) if wanted else None
        if target in ids:
            self.highlighted = ids.index(target)
        else:
            first = next((i for i, o in enumerate(options) if not o.disabled), None)
            if first is not None:
                self.highlighted = first
                self._select(options[first].id)
            elif highlighted is not None:
                self.highlighted = None

    def _select(self, oid: str | None) -> None:
        if not oid or SEP not in oid or oid.startswith(f"session{SEP}"):
            return
        session, drive = oid.split(SEP, 1)
        if self.selected != (session, drive):
            self.selected = (session, drive)
            self.post_message(self.DriveSelected(self, session, drive))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        self._select(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._select(event.option.id)
