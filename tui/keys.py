"""Every key chaintui answers to, written once.

Each row is a Textual :class:`~textual.binding.Binding` with an ``id`` (so an
operator can remap it in ``config.toml``'s ``[keymap]``, applied through
``App.set_keymap``), its footer ``description`` and a ``tooltip`` (the command
palette's help line).  The help screen and the README's keys table are made
from the same rows:  ``python -m tui.keys --markdown`` prints the table,
``python -m tui.keys --readme README.md`` rewrites it in place, and a test
fails when the README's copy drifts.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    """One binding and how the help and README describe it."""

    key: str
    action: str
    description: str  # the footer's label
    tooltip: str  # the command palette's line
    help: str = ""  # the help/README row ("" = shares the row before it)
    show: bool = True  # in the footer
    key_display: str | None = None
    help_keys: str | None = None  # the key cell when it is not just the key
    palette: bool = True

    @property
    def id(self) -> str:
        return self.action.replace("_", "-")

    def binding(self, prefix: str = "") -> Binding:
        return Binding(
            self.key, self.action, self.description, show=self.show, key_display=self.key_display,
            id=prefix + self.id, tooltip=self.tooltip,
        )

    @property
    def shown(self) -> str:
        return self.help_keys or f"`{self.key_display or self.key}`"


# the main screen, in the order of the footer, the palette and the help
MAIN_KEYS: tuple[Key, ...] = (
    Key("s", "stream", "Merge", "Merge (block-stream) into the active image down to the highlighted base",
        "**merge** (block-stream) into the active image, the highlighted image becomes the base (on the active image: flatten)"),
    Key("c", "commit", "Commit", "Commit the images above the highlighted one into it",
        "**commit** the images above the highlighted one into it (active commit when that reaches the top)"),
    Key("m", "mirror", "Mirror", "Mirror the drive to a new file (live migration)",
        "**mirror** (live migration): target, qcow2/raw, sync top/full, speed"),
    Key("y", "copy", "Copy", "Live copy: snapshot + stream, or full mirror",
        "**live copy**: snapshot + stream, or full mirror"),
    Key("n", "snapshot", "Snapshot", "New external snapshot on top of the active image",
        "new external **snapshot** (a new empty active image)"),
    Key("f", "finish", "Finish", "Finish (pivot) the highlighted ready job",
        "**finish** the highlighted job (pivot a *ready* mirror or active commit; otherwise says why not)"),
    Key("x", "cancel_job", "Cancel job", "Cancel the highlighted job",
        "**cancel** the highlighted job (asks first, says what stays)"),
    Key("p", "pause", "Pause/resume", "Pause or resume the highlighted job", "pause / resume"),
    Key("plus", "faster", "Speed ×2", "Double the highlighted job's speed limit",
        "double / halve the speed limit", key_display="+", help_keys="`+` / `-`"),
    Key("minus", "slower", "Speed ÷2", "Halve the highlighted job's speed limit", key_display="-"),
    Key("u", "unlimit", "No limit", "Lift the highlighted job's speed limit", "lift the speed limit", show=False),
    Key("w", "write_blocking", "Write-blocking", "Switch the highlighted mirror to copy-mode write-blocking (QEMU 8.2+)",
        "switch a mirror to copy-mode write-blocking (QEMU 8.2+; on 7.2 choose it in the mirror dialog)", show=False),
    Key("t", "traffic", "QMP traffic", "Show the raw QMP traffic of the highlighted job",
        "the job's raw QMP traffic (commands sent, QEMU's replies and errors, events received)", show=False),
    Key("d", "dismiss", "Dismiss", "Dismiss the highlighted finished job",
        "dismiss the job once it has ended (a mirror cancelled before *ready* offers to delete its incomplete target)"),
    Key("g", "graph", "Graph", "The image graph: every image of every QEMU and on disk, and who uses it",
        "the **image graph**: every image of every QEMU and on disk, who uses it", show=False),
    Key("delete", "cleanup", "Clean up", "Delete images that left a chain and that nothing else uses (checked, confirmed)",
        "**clean up** images that left a chain (checked, confirmed, audited)", show=False),
    Key("o", "close_leftover", "Close leftover", "Close (blockdev-del) nodes an earlier job left open on the selected drive",
        "close (`blockdev-del`) the nodes an earlier job left open on the selected drive (asks first)", show=False),
    Key("D", "dismiss_all", "Dismiss finished", "Dismiss every job that completed (failed ones stay)",
        "dismiss every job that completed (`job-dismiss` for those QEMU keeps); failed, cancelled and lost ones stay",
        show=False, key_display="D"),
    Key("l", "toggle_log", "Log", "Show or hide the event log", "show / hide the event log", show=False),
    Key("a", "add_endpoint", "Add QEMU", "Watch another QEMU: a QMP socket, host:port or ssh:// endpoint",
        "add a QEMU while running: a QMP socket path, `host:port` or `ssh://user@host/path`", show=False),
    Key("A", "remove_endpoint", "Remove QEMU", "Stop watching the selected drive's QEMU (it keeps running)",
        "stop watching the selected drive's QEMU (asks first; QEMU and its jobs go on)", show=False, key_display="A"),
    Key("r", "refresh", "Refresh", "Re-read every chain from QEMU", "re-read every chain", show=False),
    Key("question_mark", "help", "Help", "Keys and what each operation does",
        "help: keys, and what each operation does to the chain", key_display="?"),
    Key("q", "quit", "Quit", "Quit (asks while jobs chaintui started still run)",
        "quit (asks while jobs chaintui started still run; they go on inside QEMU)", palette=False),
)

# the image graph screen (``g``); its key line is a plain Static (a Footer costs ~100 ms per push)
GRAPH_KEYS: tuple[Key, ...] = (
    Key("enter", "follow", "Highlight its drive", "Highlight the drive whose chain holds this image",
        "highlight its drive's chain"),
    Key("r", "rescan", "Rescan disk", "Read the image files on disk again", "rescan disk"),
    Key("x", "cancel_scan", "Cancel scan", "Stop the on-disk scan", "cancel scan"),
    Key("delete", "cleanup", "Clean up", "Delete images that left a chain", "clean up", key_display="del"),
    Key("escape,g", "close", "Back", "Back to the main screen", "back", key_display="esc"),
    Key("q", "quit", "Quit", "Quit chaintui", show=False),
)

# rows of the keys table that are no binding of ours (Textual's own navigation)
NAVIGATION = (
    ("`↑` `↓` / `k` `j`", "move along the chain (or between job cards)"),
    ("`home` / `end`", "highlight the base image / the active image"),
    ("`tab` / `shift+tab`", "move between drives, chain and jobs"),
)
PALETTE_ROW = ("`ctrl+p`", "command palette: every action by name")


FOOTER_FIRST = ("help", "quit")  # the footer shows these first: on 80 columns it cannot show every key


def main_bindings() -> list[Binding]:
    """The main screen's bindings in footer order: help and quit first (the others are in help)."""
    first = [k for k in MAIN_KEYS if k.action in FOOTER_FIRST]
    return [k.binding() for k in first + [k for k in MAIN_KEYS if k not in first]]


def graph_bindings() -> list[Binding]:
    return [k.binding("graph.") for k in GRAPH_KEYS]


def graph_key_line() -> str:
    """The image graph's one line of keys."""
    hints = ["[b]↑↓[/b] move"] + [f"[b]{k.key_display or k.key}[/b] {k.help}" for k in GRAPH_KEYS if k.show]
    return "  ".join(hints)


def markdown_table(remapped: Callable[[Key], str | None] | None = None) -> str:
    """The keys table of the README and the help screen (``remapped``: the key an operator's keymap gave, if any)."""
    rows = list(NAVIGATION)
    for key in MAIN_KEYS:
        if key.help:
            now = remapped(key) if remapped is not None else None
            rows.append((f"`{now}`" if now else key.shown, key.help))
    rows.insert(len(rows) - 2, PALETTE_ROW)  # before ? and q
    lines = ["| Key | Action |", "|---|---|"] + [f"| {k} | {text} |" for k, text in rows]
    return "\n".join(lines)


START, END = "<!-- keys: generated by python -m tui.keys --readme README.md -->", "<!-- /keys -->"


def readme_with_table(text: str) -> str:
    """README text with its keys table (between the markers) replaced by the generated one."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError("README has no keys table markers")
    return pattern.sub(lambda _: f"{START}\n{markdown_table()}\n{END}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui.keys", description="chaintui's keys table")
    parser.add_argument("--markdown", action="store_true", help="print the keys table (Markdown)")
    parser.add_argument("--readme", metavar="FILE", help="rewrite the keys table of FILE in place")
    args = parser.parse_args(argv)
    if args.readme:
        path = Path(args.readme)
        path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    if args.markdown or not args.readme:
        print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
