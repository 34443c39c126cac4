"""A target path field: `tab` completes directories and disk images, as a shell does."""

from __future__ import annotations

import asyncio
import os

from textual.binding import Binding
from textual.geometry import Size
from textual.reactive import Reactive
from textual.message import Message
from textual.widgets import Input

from ..backend.targets import IMAGE_SUFFIXES


def completions(text: str) -> tuple[str, list[str]]:
    """(completed text, candidates) for a partial path: directories and disk images only."""
    expanded = os.path.expanduser(text) if text.startswith("~") else text
    directory, prefix = os.path.split(expanded)
    base = directory or "."
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return text, []
    matches = []
    for name in names:
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        full = os.path.join(base, name)
        if os.path.isdir(full):
            matches.append(name + "/")
        elif name.lower().endswith(IMAGE_SUFFIXES):
            matches.append(name)
    if not matches:
        return text, []
    common = os.path.commonprefix(matches)
    completed = os.path.join(directory, common) if directory else common
    if text.startswith("~"):
        home = os.path.expanduser("~")
        if completed.startswith(home):
            completed = "~" + completed[len(home):]
    return completed, matches


class PathInput(Input):
    """Input whose `tab` completes paths; with nothing to complete, `tab` moves on."""

    BINDINGS = [Binding("tab", "complete", "Complete path", show=False, priority=True)]

    # Textual's Input sets its virtual size (the text's width) on every character, and a
    # virtual size change re-lays the whole screen out (20-40 ms in a dialog).  A field of fixed
    # width scrolls its text by that size alone: no layout is needed.
    virtual_size = Reactive(Size(0, 0), layout=False)

    class Candidates(Message):
        def __init__(self, path_input: PathInput, candidates: list[str]) -> None:
            super().__init__()
            self.path_input = path_input
            self.candidates = candidates

    async def action_complete(self) -> None:
        typed = self.value
        # the directory is read in a thread: never on the UI loop (a network mount can take seconds)
        completed, matches = await asyncio.to_thread(completions, typed)
        if self.value != typed:
            return  # typed on meanwhile: this answer is for an older text
        if not matches or (completed == self.value and len(matches) == 1):
            self.screen.focus_next()
            return
        if completed != self.value:
            self.value = completed
            self.cursor_position = len(completed)
        self.post_message(self.Candidates(self, matches if len(matches) > 1 else []))
