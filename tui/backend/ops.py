"""Block operations as plans: validated, described, then sent.

A :class:`Plan` is built from the chain model and the operator's input.  Every
problem that can be known before QEMU is asked (a base that is not below the
top, a busy node, a target that exists, a missing directory, an unknown
format, a bad speed) raises :class:`ValidationError` with the field it belongs
to.  A plan carries the chain before and after, what data moves where, and the
exact QMP commands it will send; :meth:`Hub.run_plan` sends them.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .chain import Drive, Image, Leftover, chain_notation
from .errors import ValidationError

FORMATS = ("qcow2", "raw")
SYNC_MODES = ("top", "full")
MIRROR_MODES = ("absolute-paths", "existing")
MAX_SPEED = 1 << 50  # 1 PiB/s: anything above is a typo
PATH_MAX = 4095

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)?(?:/s)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_speed(text: str | int | None) -> int:
    """``""``/``0`` = unlimited; ``10M``, ``512K``, ``1.5G``, ``1048576`` (bytes/s)."""
    if text is None:
        return 0
    if isinstance(text, int):
        value = text
    else:
        raw = text.strip()
        if raw in ("", "0", "unlimited", "none"):
            return 0
        if raw.startswith("-"):
            raise ValidationError(f"Speed limit must not be negative: {raw!r}", "speed")
        m = _SIZE.match(raw)
        if not m:
            raise ValidationError(
                f"Speed limit {raw!r} is not a number of bytes per second (e.g. 10M, 512K, 0 = unlimited)",
                "speed",
            )
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 0:
        raise ValidationError(f"Speed limit must not be negative: {value}", "speed")
    if value > MAX_SPEED:
        raise ValidationError(f"Speed limit {text} is absurdly high (max 1P per second; 0 = unlimited)", "speed")
    return value


def human_size(n: float | int | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def clock_text(when: float) -> str:
    """A wall-clock time of day, as the event log and the traffic view show it."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


@dataclass
class Step:
    """One command in the backend's language, and what it does to the job model.

    The hub runs steps and never parses them: what it must know is written here.
    """

    command: str
    arguments: dict[str, Any]
    note: str = ""
    starts_job: str | None = None  # job id when this step starts a job
    wait_for_job: str | None = None  # wait for this job to end before the step
    job_type: str | None = None  # stream, commit, mirror: the job it starts
    ends_ready: bool = False  # the job it starts goes ready and waits for finish or cancel (active commit, mirror)
    creates_target: bool = False  # the job writes a new file chaintui asked for (not a reused one)
    changes_chain: bool = False  # the chain is different afterwards (re-read before the next step)
    explain: dict[str, str] = field(default_factory=dict)  # error class -> what it means for the operator
    text: str = ""  # how the operator reads it in the preview ("" = the QMP command as JSON)

    def preview(self) -> str:
        import json

        if self.text:
            return self.text
        return "QMP " + json.dumps({"execute": self.command, "arguments": self.arguments}, ensure_ascii=False)


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

    @property
    def job_ids(self) -> list[str]:
        return [s.starts_job for s in self.steps if s.starts_job]

    def preview(self) -> str:
        """Every command the plan sends, as the dialog shows it (QMP, or a libvirt call and its virsh line)."""
        return "\n".join(s.preview() for s in self.steps)

    def qmp_json(self) -> str:
        import json

        return "\n".join(
            json.dumps({"execute": s.command, "arguments": s.arguments}, indent=None, ensure_ascii=False)
            for s in self.steps
        )


# -- helpers ---------------------------------------------------------------
def backing_string(base: Image, overlay: Image) -> str | None:
    """The backing file string to record in ``overlay`` when it comes to point at ``base``.

    Passed as ``backing-file`` so QEMU never writes a ``json:{...}`` pseudo file
    name into an image (it does when nodes were opened with explicit options).
    Kept the way the chain wrote it: when ``overlay`` recorded its backing file
    as a relative path, the new one is relative too (from the overlay's
    directory, ``../`` included); an absolute one stays absolute.
    """
    if base.filename.startswith("json:") or overlay.filename.startswith("json:"):
        return None
    recorded = overlay.backing_file
    if recorded is not None and os.path.isabs(recorded):
        return base.filename
    return os.path.relpath(base.filename, os.path.dirname(overlay.filename))


def _recorded(backing: str | None) -> str:
    """How a plan says the exact backing file string it writes."""
    return f", recorded as \u201c{backing}\u201d." if backing else "."


def _check_busy(drive: Drive, images: list[Image]) -> None:
    for img in images:
        if img.job:
            raise ValidationError(
                f"Node '{img.node_name}' ({img.label}) is busy: it is in job '{img.job}'. "
                "Wait for the job to end or cancel it first.",
                "base",
            )


def _check_users(img: Image, what: str = "target", drive: Drive | None = None) -> None:
    """QEMU refuses to snapshot or mirror an image another open image is backed by."""
    if img.users:
        left = drive.leftovers if drive else []
        named = "; ".join(lo.text for lo in left) or ", ".join(img.users)
        many = sum(len(lo.labels) for lo in left) > 1 or len(img.users) > 1
        raise ValidationError(
            f"Node '{img.node_name}' ({img.label}) is busy: leftover node{'s' if many else ''} {named} "
            f"still open in QEMU from an earlier job {'use' if many else 'uses'} it as backing file; "
            "QEMU cannot snapshot or mirror it until they are closed (o closes leftover nodes with blockdev-del)",
            what,
        )


def _image(drive: Drive, name: str | None, what: str) -> Image:
    if name is None or name == "":
        raise ValidationError(f"No {what} chosen", what)
    img = drive.find(name)
    if img is None:
        raise ValidationError(f"'{name}' is not in the backing chain of {drive.name}", what)
    return img


def _raw_note(drive: Drive, fmt: str | None = None) -> list[str]:
    notes = []
    if any(img.format == "raw" for img in drive.images):
        notes.append(
            "A raw image is in the chain: depending on the file system, the result "
            "may not be thin-provisioned any more."
        )
    if fmt == "raw":
        notes.append("A raw target has no backing file: the whole disk is copied into it "
                     "(thin provisioning depends on the file system).")
    return notes


RAW_SUFFIXES = (".raw", ".img")


def _suffix_note(full: str, fmt: str) -> list[str]:
    """A target named like a raw image but written as qcow2 (or the other way round) misleads later readers."""
    suffix = os.path.splitext(full)[1].lower()
    if fmt == "qcow2" and suffix in RAW_SUFFIXES:
        return [f"The target name ends in {suffix} but the format is qcow2: choose format raw, or name it .qcow2."]
    if fmt == "raw" and suffix == ".qcow2":
        return ["The target name ends in .qcow2 but the format is raw: choose format qcow2, or name it .raw."]
    return []


def format_for_target(path: str) -> str | None:
    """The format a target's file name asks for (``.raw``/``.img``: raw, ``.qcow2``: qcow2), if any."""
    suffix = os.path.splitext(str(path).strip())[1].lower()
    return "raw" if suffix in RAW_SUFFIXES else "qcow2" if suffix == ".qcow2" else None


def resolve_target(
    path: str, drive: Drive | None = None, *, existing: bool = False, in_use: dict[str, str] | None = None,
    here: bool = True,
) -> str:
    """Check a target path before QEMU sees it; returns the absolute path.

    ``here`` False: the file is on another host (a remote libvirt); only what can be
    known without its file system is checked."""
    if path is None or not str(path).strip():
        raise ValidationError("Target path is empty", "target")
    path = str(path)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise ValidationError("Target path contains a control character (e.g. a newline); choose another name", "target")
    if any("\udc80" <= ch <= "\udcff" for ch in path):
        raise ValidationError("Target path is not valid UTF-8; QMP can only carry UTF-8 file names", "target")
    if not here and not os.path.isabs(path):
        raise ValidationError(f"Target {path} is on another host: give an absolute path", "target")
    full = os.path.abspath(os.path.expanduser(path))
    if len(full.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise ValidationError(f"Target path is too long ({len(full)} characters; the limit is {PATH_MAX})", "target")
    if any(len(part.encode()) > 255 for part in full.split(os.sep)):
        raise ValidationError("A component of the target path is longer than 255 bytes", "target")
    directory = os.path.dirname(full)
    if not here:
        return _not_in_chain(full, drive)
    if not os.path.isdir(directory):
        raise ValidationError(f"Target directory {directory} does not exist", "target")
    if os.path.isdir(full):
        raise ValidationError(f"Target {full} is a directory; give a file name", "target")
    if drive is not None:
        real = os.path.realpath(full)
        _not_in_chain(real, drive)
        who = (in_use or {}).get(real)
        if who is not None:
            raise ValidationError(f"Target {full} is in use by {who}; pick a new file", "target")
    if existing:
        if not os.path.isfile(full):
            raise ValidationError(f"Target {full} does not exist (\"reuse existing\" needs an existing image)", "target")
    else:
        if os.path.lexists(full):
            raise ValidationError(
                f"Target {full} already exists; choose another name or \"reuse existing\"", "target"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ValidationError(f"Target directory {directory} is not writable", "target")
    return full


def _not_in_chain(full: str, drive: Drive | None) -> str:
    for img in drive.images if drive is not None else []:
        if img.filename.startswith("json:"):
            continue
        if os.path.realpath(img.filename) == full or img.filename == full:
            what = "the active image" if img is drive.active else "an image of its backing chain"
            raise ValidationError(f"Target {full} is {what} ({img.label}); pick a new file", "target")
    return full


IMAGE_SUFFIXES = (".qcow2", ".qcow", ".raw", ".img", ".qed", ".vmdk", ".vdi", ".vhd", ".vhdx", ".iso")
TIGHT = 0.9  # a job that would use more than this share of the free space gets a warning


def bytes_to_write(drive: Drive, sync: str, fmt: str) -> int:
    """What a mirror or copy will write at most: a raw target gets the full virtual size,
    ``sync: full`` the allocated data of the whole chain, ``sync: top`` the active image's."""
    if fmt == "raw":
        return drive.active.virtual_size
    images = drive.images if sync == "full" else [drive.active]
    return sum(img.actual_size or img.virtual_size for img in images)


def check_space(full: str, needed: int) -> str | None:
    """ValidationError when the target's file system cannot hold ``needed`` bytes; a warning when tight."""
    try:
        st = os.statvfs(os.path.dirname(full))
    except OSError:
        return None
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise ValidationError(
            f"Not enough space in {os.path.dirname(full)}: the job writes up to {human_size(needed)}, "
            f"{human_size(free)} is free",
            "target",
        )
    if needed > free * TIGHT:
        return (f"Tight on space: the job writes up to {human_size(needed)} of the {human_size(free)} free in "
                f"{os.path.dirname(full)}; guest writes during the job need more")
    return None


def inspect_existing(full: str, fmt: str, drive: Drive) -> None:
    """``mode: existing``: the image must be of the chosen format and the drive's virtual size."""
    import json
    import subprocess

    proc = subprocess.run(["qemu-img", "info", "-U", "--output=json", full], capture_output=True, text=True)
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["unreadable"])[-1]
        raise ValidationError(f"Target {full} is not a disk image QEMU can open: {why}", "target")
    info = json.loads(proc.stdout)
    if info.get("format") != fmt:
        raise ValidationError(f"Target {full} is {info.get('format')}, not {fmt}: choose format {info.get('format')} "
                              "or another image", "target")
    size = int(info.get("virtual-size", 0))
    if size != drive.active.virtual_size:
        raise ValidationError(
            f"Target {full} is {human_size(size)}, the drive is {human_size(drive.active.virtual_size)}: "
            "a reused image must have the same virtual size", "target")


def _format(fmt: str | None, allowed: tuple[str, ...] = FORMATS) -> str:
    value = (fmt or "").strip().lower()
    if value not in allowed:
        raise ValidationError(f"Unknown format {fmt!r}: choose {' or '.join(allowed)}", "format")
    return value


def _speed_args(speed: int) -> dict[str, Any]:
    return {"speed": speed} if speed else {}


# -- plans -----------------------------------------------------------------
def plan_stream(
    drive: Drive, base: str | None, speed: str | int | None, job_id: str, shared: list[str] | None = None
) -> Plan:
    """Live merge: pull the data above ``base`` into the active image.

    ``base`` None (or the active image itself) flattens the whole chain.  ``shared``:
    images outside this drive that back onto an image of its chain (they stay usable).
    """
    rate = parse_speed(speed)
    if len(drive.images) < 2:
        raise ValidationError(f"{drive.name} has no backing file: nothing to merge", "base")
    top = drive.active
    base_img: Image | None = None
    if base not in (None, ""):
        base_img = _image(drive, base, "base")
        if base_img.node_name == top.node_name:
            base_img = None
    if base_img is not None:
        idx = drive.index_of(base_img.node_name)
        if idx == len(drive.images) - 2:
            raise ValidationError(
                f"{base_img.label} is already the backing file of {top.label}: nothing to merge", "base"
            )
        moved = drive.images[idx + 1 : -1]
        after = drive.images[: idx + 1] + [top]
    else:
        moved = drive.images[:-1]
        after = [top]
    _check_busy(drive, moved + [top])
    args: dict[str, Any] = {"job-id": job_id, "device": drive.device}
    if base_img is not None:
        args["base-node"] = base_img.node_name
        backing = backing_string(base_img, top)
        if backing:
            args["backing-file"] = backing
    args.update(_speed_args(rate))
    moves = [
        f"Data of {', '.join(i.label for i in moved)} is copied into {top.label}.",
        (
            f"{top.label}'s backing file becomes {base_img.label}" + _recorded(args.get("backing-file"))
            if base_img
            else f"{top.label} stops having a backing file (flattened)."
        ),
        "The old images are not deleted; nothing else uses them afterwards." if not shared else
        f"The images below stay untouched (only {top.label} is written): the {len(shared)} other image"
        f"{'s' if len(shared) > 1 else ''} backing onto them stay{'s' if len(shared) == 1 else ''} usable: "
        f"{'; '.join(shared)}.",
    ]
    return Plan(
        kind="stream",
        session=drive.session,
        drive=drive.name,
        title=f"Merge into {top.label}" + (f" down to {base_img.label}" if base_img else " (flatten)"),
        before=drive.notation(),
        after=chain_notation(i.label for i in after),
        moves=moves,
        steps=[Step("block-stream", args, "pull data into the active image", starts_job=job_id, job_type="stream")],
        warnings=_raw_note(drive),
    )


def plan_commit(
    drive: Drive, base: str, top: str | None, speed: str | int | None, job_id: str,
    shared: list[str] | None = None, override: bool = False,
) -> Plan:
    """Commit the images above ``base`` (up to ``top``, default the active) into ``base``.

    ``shared``: the images outside this drive that back onto ``base`` (live or on disk,
    see :func:`tui.backend.usage.shared_with_others`); they would see changed data, so
    the plan is refused unless ``override``.
    """
    rate = parse_speed(speed)
    base_img = _image(drive, base, "base")
    top_img = drive.active if top in (None, "") else _image(drive, top, "top")
    bi, ti = drive.index_of(base_img.node_name), drive.index_of(top_img.node_name)
    if bi == ti:
        raise ValidationError(f"Cannot commit {base_img.label} into itself: pick an image below the top", "base")
    if bi > ti:
        raise ValidationError(f"Base {base_img.label} is above the top {top_img.label}: pick a lower base", "base")
    active = ti == len(drive.images) - 1
    moved = drive.images[bi + 1 : ti + 1]
    _check_busy(drive, [base_img] + moved)
    after = drive.images[: bi + 1] + drive.images[ti + 1 :]
    args: dict[str, Any] = {"job-id": job_id, "device": drive.device, "base-node": base_img.node_name}
    if not active:
        args["top-node"] = top_img.node_name
        backing = backing_string(base_img, drive.images[ti + 1])
        if backing:
            args["backing-file"] = backing
    args.update(_speed_args(rate))
    moves = [f"Data of {', '.join(i.label for i in moved)} is written into {base_img.label}."]
    if active:
        moves.append(
            f"Active commit: the job goes ready; then finish (f) switches the drive to {base_img.label}, "
            f"or cancel (x) leaves {top_img.label} active."
        )
    else:
        above = drive.images[ti + 1]
        moves.append(
            f"{above.label}'s backing file becomes {base_img.label}{_recorded(args.get('backing-file'))[:-1]}; "
            "the job ends by itself."
        )
    warnings = _raw_note(drive)
    if shared and not override:
        raise ValidationError(
            f"{base_img.label} is shared: {len(shared)} other image{'s' if len(shared) > 1 else ''} back onto it "
            f"and would see changed data: {'; '.join(shared)}. Refused; tick \"commit anyway\" to go on.",
            "override",
        )
    if shared:
        warnings.insert(0, f"Commit anyway: these {len(shared)} images will see changed data: {'; '.join(shared)}")
    elif shared is not None:
        moves.append(f"Nothing else backs onto {base_img.label} (live, or on disk in the directories scanned).")
    else:
        moves.append(f"Anything else backed by {base_img.label} outside this drive would see changed data.")
    return Plan(
        kind="commit",
        session=drive.session,
        drive=drive.name,
        title=("Active commit" if active else "Commit") + f" into {base_img.label}",
        before=drive.notation(),
        after=chain_notation(i.label for i in after),
        moves=moves,
        steps=[Step("block-commit", args, "write data down into the base", starts_job=job_id, job_type="commit",
                    ends_ready=active)],
        warnings=warnings,
        override=list(shared or []),
    )


def plan_mirror(
    drive: Drive,
    target: str,
    fmt: str,
    sync: str,
    speed: str | int | None,
    job_id: str,
    mode: str = "absolute-paths",
    copy_mode: str | None = None,
    on_target_error: str | None = None,
    in_use: dict[str, str] | None = None,
    here: bool = True,
) -> Plan:
    """Live migration: mirror the drive to ``target``; ready, then complete or cancel.

    ``here`` False: the target is on another host; its file system is not checked."""
    fmt = _format(fmt)
    sync = (sync or "").strip().lower()
    if sync not in SYNC_MODES:
        raise ValidationError(f"Unknown sync mode {sync!r}: choose top or full", "sync")
    if mode not in MIRROR_MODES:
        raise ValidationError(f"Unknown mode {mode!r}: choose absolute-paths or existing", "mode")
    rate = parse_speed(speed)
    full = resolve_target(target, drive, existing=(mode == "existing"), in_use=in_use, here=here)
    _check_busy(drive, [drive.active])
    _check_users(drive.active, drive=drive)
    space_note = None
    needed = bytes_to_write(drive, sync, fmt)
    if not here:
        pass
    elif mode == "existing":
        inspect_existing(full, fmt, drive)
    else:
        space_note = check_space(full, needed)
    if sync == "top" and fmt == "raw" and len(drive.images) > 1:
        raise ValidationError(
            "A raw target cannot have a backing file: use sync full for raw, or qcow2 for sync top", "format"
        )
    args: dict[str, Any] = {
        "job-id": job_id,
        "device": drive.device,
        "target": full,
        "format": fmt,
        "sync": sync,
        "mode": mode,
    }
    if copy_mode:
        args["copy-mode"] = copy_mode
    if on_target_error:
        if on_target_error not in ("report", "stop", "enospc", "ignore"):
            raise ValidationError(f"Unknown error action {on_target_error!r}: report, stop, enospc or ignore", "on_error")
        args["on-target-error"] = on_target_error
    args.update(_speed_args(rate))
    label = os.path.basename(full)
    if sync == "full":
        after = chain_notation([label])
        what = f"The whole chain ({drive.notation()}) is copied into {label}."
    else:
        after = chain_notation([i.label for i in drive.images[:-1]] + [label])
        what = f"The active image {drive.active.label} is copied into {label}, backed by the same chain."
    return Plan(
        kind="mirror",
        session=drive.session,
        drive=drive.name,
        title=f"Mirror {drive.name} to {label}",
        before=drive.notation(),
        after=after + "   (after finish; cancel keeps " + drive.active.label + ")",
        moves=[
            what + f" It writes up to {human_size(needed)}" + (" (the full virtual size: raw)." if fmt == "raw" else "."),
            "The job goes ready once the copy has caught up; guest writes keep both in sync.",
            f"Then finish (f) switches the drive to {full}; cancel (x) keeps the source and "
            "leaves the target a consistent copy.",
        ],
        steps=[Step("drive-mirror", args, "start the mirror", starts_job=job_id, job_type="mirror", ends_ready=True,
                    creates_target=mode != "existing")],
        warnings=_raw_note(drive, fmt) + _suffix_note(full, fmt) + ([space_note] if space_note else []),
        target=full,
    )


def plan_snapshot(
    drive: Drive, target: str, node_name: str, fmt: str = "qcow2", in_use: dict[str, str] | None = None,
    here: bool = True,
) -> Plan:
    """External snapshot: a new empty overlay becomes the active image."""
    fmt = _format(fmt, ("qcow2",))
    full = resolve_target(target, drive, in_use=in_use, here=here)
    _check_busy(drive, [drive.active])
    _check_users(drive.active, drive=drive)
    args = _snapshot_args(drive, full, node_name, fmt)
    label = os.path.basename(full)
    return Plan(
        kind="snapshot",
        session=drive.session,
        drive=drive.name,
        title=f"Snapshot {drive.name} into {label}",
        before=drive.notation(),
        after=chain_notation([i.label for i in drive.images] + [label]),
        moves=[
            f"A new empty image {full} is created on top of {drive.active.label}.",
            f"The guest writes to {label} from now on; {drive.active.label} becomes read-only.",
        ],
        steps=[Step("blockdev-snapshot-sync", args, "create and switch to the overlay", changes_chain=True)],
        target=full,
    )


def _snapshot_args(drive: Drive, full: str, node_name: str, fmt: str) -> dict[str, Any]:
    args: dict[str, Any] = {"snapshot-file": full, "snapshot-node-name": node_name, "format": fmt}
    if drive.has_device:
        args["device"] = drive.device
    else:
        args["node-name"] = drive.active.node_name
    return args


def plan_copy(
    drive: Drive,
    target: str,
    method: str,
    fmt: str,
    speed: str | int | None,
    job_id: str,
    node_name: str,
    in_use: dict[str, str] | None = None,
    here: bool = True,
) -> Plan:
    """Live copy: snapshot into the destination then stream into it, or a full mirror."""
    method = (method or "").strip().lower()
    if method in ("mirror", "full-mirror", "full mirror"):
        plan = plan_mirror(drive, target, fmt, "full", speed, job_id, in_use=in_use, here=here)
        plan.kind = "copy"
        plan.title = f"Copy {drive.name} to {os.path.basename(plan.target or target)} (full mirror)"
        return plan
    if method not in ("stream", "snapshot+stream", "snapshot + stream"):
        raise ValidationError(f"Unknown copy method {method!r}: choose stream or mirror", "method")
    fmt = _format(fmt, ("qcow2",)) if fmt else "qcow2"
    rate = parse_speed(speed)
    full = resolve_target(target, drive, in_use=in_use, here=here)
    _check_busy(drive, drive.images)
    _check_users(drive.active, drive=drive)
    space_note = check_space(full, bytes_to_write(drive, "full", fmt)) if here else None
    label = os.path.basename(full)
    snap = _snapshot_args(drive, full, node_name, fmt)
    stream: dict[str, Any] = {"job-id": job_id, "device": drive.device if drive.has_device else node_name}
    stream.update(_speed_args(rate))
    return Plan(
        kind="copy",
        session=drive.session,
        drive=drive.name,
        title=f"Copy {drive.name} to {label} (snapshot + stream)",
        before=drive.notation(),
        after=chain_notation([label]),
        moves=[
            f"Step 1: a live snapshot makes {full} the active image, backed by {drive.active.label}.",
            f"Step 2: every image below it is streamed into {label}; it then stands alone.",
            "The old chain is left as it was at the snapshot: a point-in-time copy.",
        ],
        steps=[
            Step("blockdev-snapshot-sync", snap, "step 1: snapshot into the destination", changes_chain=True),
            Step("block-stream", stream, "step 2: stream the chain into it", starts_job=job_id, job_type="stream"),
        ],
        warnings=_raw_note(drive) + ([space_note] if space_note else []),
        target=full,
    )


def plan_close_leftover(drive: Drive, leftover: Leftover, address: str) -> Plan:
    """``blockdev-del`` of the nodes an earlier job left open on ``drive``'s chain (nothing uses them)."""
    if leftover.held_by_job:
        raise ValidationError(
            f"Leftover node {leftover.node_name} is held by job {leftover.held_by_job}: wait for it to end", "node"
        )
    if not leftover.deletable:
        raise ValidationError(
            f"Leftover node {leftover.node_name} was opened by QEMU itself (no name given): it cannot be closed "
            "with blockdev-del", "node")
    files = ", ".join(leftover.files)
    return Plan(
        kind="close",
        session=drive.session,
        drive=drive.name,
        title=f"Close leftover node{'s' if len(leftover.labels) > 1 else ''} {', '.join(leftover.labels)}",
        before=drive.notation(),
        after=drive.notation(),
        moves=[
            f"QEMU {drive.session} ({address}) closes {leftover.text}: nothing uses "
            f"{'them' if len(leftover.labels) > 1 else 'it'} (an earlier job left {'them' if len(leftover.labels) > 1 else 'it'} open).",
            f"The file{'s stay' if len(leftover.files) > 1 else ' stays'} on disk: {files}.",
            f"The chain of {drive.name} does not change; its images can then be snapshot or mirrored again.",
        ],
        steps=[Step("blockdev-del", {"node-name": n}, f"close {n}") for n in leftover.deletable],
    )


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


_SUGGESTED = re.compile(r"(-(mirror|copy|snap)(-\d+)?)+$")


def suggest_target(drive: Drive, suffix: str, ext: str = "qcow2") -> str:
    """An unused file name next to the active image: ``D-mirror.qcow2``, ``D-mirror-2.qcow2``..."""
    active = drive.active.filename
    directory = os.path.dirname(active) if not active.startswith("json:") else os.getcwd()
    stem = os.path.splitext(os.path.basename(active))[0] if not active.startswith("json:") else drive.name
    stem = _SUGGESTED.sub("", stem) or stem  # D-mirror.qcow2 suggests D-mirror-2, never D-mirror-mirror
    candidate = os.path.join(directory, f"{stem}-{suffix}.{ext}")
    n = 2
    while os.path.lexists(candidate):
        candidate = os.path.join(directory, f"{stem}-{suffix}-{n}.{ext}")
        n += 1
    return candidate
