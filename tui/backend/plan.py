"""What an operation is: a :class:`Plan` of :class:`Step` objects, and the names it gives QEMU.

Plans are built per backend (:mod:`tui.backend.ops` for QMP, :mod:`tui.backend.libvirt_plans`
for libvirt) and run by :meth:`tui.backend.hub.Hub.run_plan`.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chain import Drive


@dataclass
class Step:
    """One command in the backend's language, and what it does to the job model.

    The hub runs steps and never parses them: what it must know is written here.
    """

    command: str
    arguments: dict[str, Any]
    starts_job: str | None = None  # job id when this step starts a job
    job_type: str | None = None  # stream, commit, mirror: the job it starts
    ends_ready: bool = False  # the job it starts goes ready and waits for finish or cancel (active commit, mirror)
    creates_target: bool = False  # the job writes a new file chaintui asked for (not a reused one)
    speed: int = 0  # the speed limit the job it starts begins with (bytes/s, 0 = none)
    changes_chain: bool = False  # the chain is different afterwards (re-read before the next step)
    explain: dict[str, str] = field(default_factory=dict)  # error class -> what it means for the operator
    # (text in the error, what to log instead): the error means the step's work was done already
    # (a node closed along with its parent), not that it failed
    done_already: tuple[str, str] | None = None
    text: str = ""  # how the operator reads it in the preview ("" = the QMP command as JSON)

    def json(self) -> str:
        """The command as a QMP message, as sent (text as typed, not ``\\u`` escapes)."""
        return json.dumps({"execute": self.command, "arguments": self.arguments}, ensure_ascii=False)

    def preview(self) -> str:
        return self.text or "QMP " + self.json()


@dataclass(frozen=True)
class Choice:
    """What a plan decided, in the operation's words rather than a backend's: the QMP steps are
    built from it, and a backend with another language (libvirt) builds its calls from it too."""

    base: str | None = None  # node name of the base image (stream: None = flatten)
    top: str | None = None  # node name of a commit's top image (None: the active image, an active commit)
    target: str | None = None  # the target file, as resolved (mirror, copy)
    fmt: str | None = None
    sync: str | None = None  # mirror: top or full
    mode: str | None = None  # mirror: absolute-paths (new target) or existing (reused)
    copy_mode: str | None = None  # mirror: write-blocking, or None for QEMU's default
    method: str | None = None  # copy: mirror or stream
    speed: int = 0  # bytes/s, 0 = no limit


@dataclass
class Plan:
    kind: str  # stream, commit, mirror, snapshot, copy
    session: str
    drive: str
    title: str
    before: str
    after: str
    moves: list[str]  # what data moves where, one sentence each
    steps: list[Step]
    warnings: list[str] = field(default_factory=list)
    target: str | None = None
    override: list[str] = field(default_factory=list)  # images a commit changes, accepted by the operator
    choice: Choice = field(default_factory=Choice)

    @classmethod
    def on(cls, drive: Drive, *, kind: str, title: str, after: str, moves: list[str], steps: list[Step],
           **more: Any) -> Plan:
        """A plan on ``drive``: its QEMU, its name and its chain now filled in."""
        return cls(kind=kind, session=drive.session, drive=drive.name, title=title, before=drive.notation(),
                   after=after, moves=moves, steps=steps, **more)

    @property
    def job_ids(self) -> list[str]:
        return [s.starts_job for s in self.steps if s.starts_job]

    def preview(self) -> str:
        """Every command the plan sends, as the dialog shows it (QMP, or a libvirt call and its virsh line)."""
        return "\n".join(s.preview() for s in self.steps)

    def qmp_json(self) -> str:
        return "\n".join(s.json() for s in self.steps)


_ID_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def make_id(prefix: str, drive: str, taken: set[str]) -> str:
    """A readable, unused QEMU id: ``stream-drive0-1``."""
    base = _ID_SAFE.sub("_", f"{prefix}-{drive.lstrip('#')}")
    if not base[0].isalpha():
        base = "j" + base
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"[:120]


def make_node_name(target: str, taken: set[str]) -> str:
    """A valid node name from a file name: letters first, 31 characters at most."""
    stem = os.path.splitext(os.path.basename(target))[0]
    base = _ID_SAFE.sub("_", stem)[:24] or "snap"
    if not base[0].isalpha():
        base = "n" + base
    base = base[:24]
    if base not in taken:
        return base
    n = 1
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"

