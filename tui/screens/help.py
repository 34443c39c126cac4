"""The help screen: keys, and what each operation does to the chain."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Markdown

HELP = """\
A chain is written `[A] -> [B] -> [C] -> [D]`: **D** is the active image the guest
writes, each image's backing file stands to its left. The graph draws it top to
bottom: the base (no backing file) first, the active image last.

| Key | What it does |
|---|---|
| `↑` `↓` / `k` `j` | move along the chain (or between jobs in the jobs panel) |
| `home` / `end` | highlight the base / the active image |
| `tab` / `shift+tab` | move between drives, chain and jobs |
| `s` | **merge** (block-stream) into the active image, the highlighted image becomes the new base; on the active image: flatten |
| `c` | **commit** the images above the highlighted one into it (active commit when that reaches the top) |
| `m` | **mirror** (live migration) to a new file: qcow2 or raw, sync top or full |
| `y` | **live copy**: snapshot + stream into a destination, or a full mirror |
| `n` | new external **snapshot** (a new empty active image) |
| `f` | **finish** the highlighted job: pivot a ready mirror / active commit |
| `x` | **cancel** the highlighted job |
| `p` | pause / resume the highlighted job |
| `+` / `-` | double / halve the job's speed limit |
| `u` | lift the job's speed limit |
| `w` | switch a mirror to copy-mode write-blocking (QEMU 8.2+), so it converges under heavy writes |
| `d` | dismiss the job (once it has ended): a failed, cancelled or lost job stays until you do |
| `D` | dismiss every job that completed (QEMU's `job-dismiss` for those it keeps); failed ones stay |
| `t` | the raw QMP traffic of the job: commands sent, events received |
| `l` | show / hide the event log |
| `a` | add a QEMU while running: a QMP socket path, `host:port` or `ssh://user@host/path` |
| `A` | stop watching the selected drive's QEMU (with a confirmation; QEMU and its jobs go on) |
| `r` | re-read every chain |
| `g` | the **image graph**: every image of every QEMU and on disk, who uses it |
| `delete` | **clean up** images that left a chain: checked, listed with their size, confirmed |
| `ctrl+p` | command palette: every action by name |
| `?` | this help |
| `q` | quit (jobs go on inside QEMU) |

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


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Label("chaintui help — escape closes", id="dialog-title")
            with VerticalScroll(id="help-scroll"):
                yield Markdown(HELP, id="help-text")

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)
