"""The target path field scrolls its text without a layout per character (tui/widgets/path_input.py)."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.path_input import PathInput

PATH = "/var/lib/libvirt/images/some-long-name-xyz.qcow2"


class OneField(App):
    CSS = "PathInput { width: 24; }"

    def compose(self) -> ComposeResult:
        yield PathInput(id="p")


async def test_a_long_path_keeps_the_cursor_in_view():
    app = OneField()
    async with app.run_test(size=(40, 5)) as pilot:
        field = app.query_one(PathInput)
        field.focus()
        for ch in PATH:
            await pilot.press("slash" if ch == "/" else ch)
        await pilot.pause()
        assert field.value == PATH and field.scroll_x == len(PATH) + 1 - field.content_size.width
        await pilot.press("home")
        await pilot.pause()
        assert field.scroll_x == 0
        await pilot.press("end", "backspace", "backspace")
        await pilot.pause()
        assert field.cursor_position == len(PATH) - 2 and field.scroll_x == len(PATH) - 1 - field.content_size.width
