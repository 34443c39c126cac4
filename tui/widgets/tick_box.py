"""A checkbox that reads the same without colour: an X when ticked, an empty box when not."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Checkbox


class TickBox(Checkbox):
    """Textual's Checkbox draws its X in both states and tells them apart by colour only; on a
    monochrome terminal an unticked override read as ticked.  This one leaves the box empty."""

    @property
    def _button(self) -> Content:
        self.BUTTON_INNER = "X" if self.value else " "
        return super()._button
