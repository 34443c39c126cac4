"""The help screen: keys, and what each operation does to the chain."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown

from ..keys import Key, markdown_table

HELP = """\
A chain is written `[A] -> [B] -> [C] -> [D]`: **D** is the active image the guest
writes, each image's backing file stands to its left. The graph draws it top to
bottom: the base (no backing file) first, the active image last.

{keys}

The job keys act on the card under the cursor when the jobs panel has focus (its
title is highlighted); from another panel only on the selected drive's newest job,
never on another drive's. Running and ready jobs are listed first, then failed,
cancelled or lost ones, then finished ones. A job whose QEMU went away shows
**lost**, without rate or ETA; its keys say why they cannot act.

This help scrolls: `↑` `↓`, `page up` / `page down`, `home` / `end`.

## What the operations do

**Merge** (`block-stream`, `virsh blockpull`). With base **B** on
`[A] -> [B] -> [C] -> [D]`, the data of C is copied into D and D's backing file
becomes B: `[A] -> [B] -> [D]`. Without a base everything is pulled up: `[D]`.
The old images are left on disk, untouched.

**Commit** (`block-commit`, `virsh blockcommit`). The other direction: the data
of the images above the base is written down into it. An intermediate commit
(top below the active image) ends by itself: `[A] -> [B] -> [C] -> [D]` with base
A and top C becomes `[A] -> [D]`. An **active commit** (top = the active image)
goes *ready*; `f` then switches the drive to the base, `x` leaves it as it was.
Anything else that uses the base image sees its data change.

**Mirror** (`drive-mirror`, `virsh blockcopy`): live migration. The active
image (sync *top*) or the whole chain (sync *full*) is copied to a new file, and
guest writes keep both in sync. The job goes *ready*; then `f` pivots the drive
to the target, or `x` cancels and keeps the source, with the target a
consistent copy of the moment of the cancel. A raw target has no backing file:
use sync *full*. Converting to raw supports thin provisioning properly.

A mirror or active commit only gets ready when copying outruns the guest's
writes. Its card shows how the remaining bytes move and how fast the guest dirties
data; when the remaining bytes grow or stand still for 10 seconds while QEMU
reports new dirty data, the card says **not converging** and why (a throttled
job with a quiet guest advances in steps and is not flagged): raise (`+`) or lift (`u`) the speed limit, or switch
to write-blocking (`w`; on older QEMU choose it in the mirror dialog at start).

**Live copy**: a snapshot into the destination (`blockdev-snapshot-sync`), then
a stream into it, so it stands alone: the drive continues on the copy and the
old chain stays as it was at the snapshot. Or a full mirror, where raw is
allowed and the source stays unless you finish. If one image in the chain is
raw, a copy may not be thin-provisioned any more, depending on the file system.

**Snapshot** (`blockdev-snapshot-sync`): a new, empty qcow2 image on top of the
active one; the guest writes there from now on.

Nothing is sent to QEMU before a dialog has shown the chain before and after,
what moves where, and the exact QMP. Jobs run inside QEMU: quitting chaintui
does not stop them, and chaintui finds them again when it reconnects.
"""


def help_text(remapped: Callable[[Key], str | None] | None = None) -> str:
    return HELP.format(keys=markdown_table(remapped))


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label("chaintui help — escape closes", id="dialog-title")
            with VerticalScroll(id="help-scroll"):
                keymap = getattr(self.app, "keymap", {})
                remapped = (lambda k: self.app.key_text(k) if k.id in keymap else None) if keymap else None  # type: ignore[attr-defined]
                yield Markdown(help_text(remapped), id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
