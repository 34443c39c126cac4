"""What the line-API views (chain graph, jobs panel) share: the frame looked up once per repaint."""

from __future__ import annotations

from rich.style import Style
from textual.scroll_view import ScrollView


class LineView(ScrollView):
    """A ScrollView drawn line by line from its own caches.

    ``rich_style`` and the content width cost 80-160 µs a lookup; they are looked up once per
    repaint.  A style change (theme, focus, classes) drops the frame and the subclass's caches
    (:meth:`clear_line_cache`).
    """

    _frame: tuple[int, Style] | None = None

    def clear_line_cache(self) -> None:
        """Forget every cached line (called when the styles change)."""

    def refresh(self, *regions, repaint: bool = True, layout: bool = False, recompose: bool = False):  # type: ignore[no-untyped-def, override]
        self._frame = None
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def notify_style_update(self) -> None:
        self._frame = None
        self.clear_line_cache()
        super().notify_style_update()

    def _frame_info(self) -> tuple[int, Style]:
        """The content width and base style, looked up once per repaint instead of once per line."""
        frame = self._frame
        if frame is None:
            frame = self._frame = (self.scrollable_content_region.width, self.rich_style)
        return frame
