"""Cleanup: delete images that left a chain and that nothing else uses, after a confirmation."""

from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from ..backend.fmt import count, human_size
from ..backend.deletion import Candidate


def cleanup_text(candidates: list[Candidate]) -> str:
    ok = [c for c in candidates if c.deletable]
    kept = [c for c in candidates if not c.deletable]
    lines: list[str] = []
    if ok:
        total = sum(c.size for c in ok)
        lines.append(f"[b]Delete {count(len(ok), 'image')}[/b] (frees {human_size(total)}):")
        lines += [f"  {escape(c.path)}  [b]{human_size(c.size)}[/b]  [dim]{escape(c.left)}[/dim]" for c in ok]
    else:
        lines.append("[b]Nothing can be deleted safely.[/b]")
    if kept:
        lines.append("")
        lines.append(f"[b]Kept[/b] ({len(kept)}, never deleted):")
        lines += [f"  {escape(c.path)}  [yellow]{escape('; '.join(c.reasons))}[/yellow]" for c in kept]
    return "\n".join(lines)


class CleanupDialog(ModalScreen[bool]):
    """Lists each file with the bytes it frees, and each refused one with the reason."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Delete"),
    ]

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__()
        self.candidates = candidates

    @property
    def deletable(self) -> list[Candidate]:
        return [c for c in self.candidates if c.deletable]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="cleanup"):
            yield Label("Clean up images no longer used", id="dialog-title")
            with VerticalScroll(id="cleanup-box"):
                yield Static(cleanup_text(self.candidates), id="cleanup-body")
            with Horizontal(id="buttons"):
                if self.deletable:
                    yield Button(f"Delete {len(self.deletable)}", variant="error", id="yes")
                yield Button("Keep all" if self.deletable else "Close", id="no")
            hint = "[b]y[/b] delete · " if self.deletable else ""
            yield Static(f"{hint}[b]escape[/b]/[b]n[/b] keep everything", classes="hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_answer(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(bool(value and self.deletable))
