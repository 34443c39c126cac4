"""The details under a view (the chain graph, the image tree): what its highlight points at."""

from __future__ import annotations

from textual.messages import Update
from textual.widgets import Static


class DetailsLine(Static):
    """A Static of fixed height (set in app.tcss) that is redrawn in the same frame as the view's highlight.

    ``Static.update`` re-lays out the screen by default (11 ms for the main screen); the height never
    changes here, so :meth:`show` skips that.  Left to itself the widget then asks the screen for its
    repaint from its own message loop, which runs after the screen has already drawn the frame with
    the view's moved highlight, and Textual's frame timer waits up to two frame periods (33 ms) before
    the next frame: the operator sees the highlight move and the details follow later.  :meth:`show`,
    called from the screen's handler of the view's message, tells the screen while it is still busy
    with that message, so both are drawn in one frame.  The widget's own later request finds nothing
    left to repaint and writes nothing.
    """

    def show(self, markup: str) -> None:
        self.update(markup, layout=False)
        if self.is_attached:
            self.screen.post_message(Update(self))
