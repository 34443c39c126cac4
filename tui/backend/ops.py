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
from dataclasses import replace
from typing import Any

from .chain import Drive, Image, Leftover, chain_notation
from .checks import check_busy, check_format, check_shared_base, check_users, image_of, raw_note
from .errors import ValidationError
from .fmt import human_size, parse_speed
from .plan import Choice, Plan, Step
from .targets import bytes_to_write, check_space, inspect_existing, resolve_target, suffix_note

SYNC_MODES = ("top", "full")
MIRROR_MODES = ("absolute-paths", "existing")


# -- helpers ---------------------------------------------------------------
def backing_string(base: Image, overlay: Image) -> str | None:
    """The backing file string to record in ``overlay`` when it comes to point at ``base``.

    Passed as ``backing-file`` so QEMU never writes a ``json:{...}`` pseudo file
    name into an image (it does when nodes were opened with explicit options).
    Kept the way the chain wrote it: when ``overlay`` recorded its backing file
    as a relative path, the new one is relative too (from the overlay's
    directory, ``../`` included); an absolute one stays absolute.
    """
    if base.pseudo or overlay.pseudo:
        return None
    recorded = overlay.backing_file
    if recorded is not None and os.path.isabs(recorded):
        return base.filename
    return os.path.relpath(base.filename, os.path.dirname(overlay.filename))


def _recorded(backing: str | None) -> str:
    """How a plan says the exact backing file string it writes."""
    return f", recorded as \u201c{backing}\u201d." if backing else "."


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
        base_img = image_of(drive, base, "base")
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
    check_busy(drive, moved + [top])
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
    return Plan.on(
        drive,
        kind="stream",
        title=f"Merge into {top.label}" + (f" down to {base_img.label}" if base_img else " (flatten)"),
        after=chain_notation(i.label for i in after),
        moves=moves,
        steps=[Step("block-stream", args, starts_job=job_id, job_type="stream", speed=rate)],
        warnings=raw_note(drive),
        choice=Choice(base=base_img.node_name if base_img else None, speed=rate),
    )


def plan_commit(
    drive: Drive, base: str, top: str | None, speed: str | int | None, job_id: str,
    shared: list[str] | None = None, override: bool = False,
) -> Plan:
    """Commit the images above ``base`` (up to ``top``, default the active) into ``base``.

    ``shared``: the images outside this drive that back onto ``base`` (live or on disk), and
    those of its chain another VM has in its chain (a libvirt domain shut off, say; see
    :func:`tui.backend.image_graph.shared_with_others`); they would see changed data, so
    the plan is refused unless ``override``.
    """
    rate = parse_speed(speed)
    base_img = image_of(drive, base, "base")
    top_img = drive.active if top in (None, "") else image_of(drive, top, "top")
    bi, ti = drive.index_of(base_img.node_name), drive.index_of(top_img.node_name)
    if bi == ti:
        raise ValidationError(f"Cannot commit {base_img.label} into itself: pick an image below the top", "base")
    if bi > ti:
        raise ValidationError(f"Base {base_img.label} is above the top {top_img.label}: pick a lower base", "base")
    active = ti == len(drive.images) - 1
    moved = drive.images[bi + 1 : ti + 1]
    check_busy(drive, [base_img] + moved)
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
    warnings = raw_note(drive)
    check_shared_base(base_img, shared, override, moves, warnings)
    return Plan.on(
        drive,
        kind="commit",
        title=("Active commit" if active else "Commit") + f" into {base_img.label}",
        after=chain_notation(i.label for i in after),
        moves=moves,
        steps=[Step("block-commit", args, starts_job=job_id, job_type="commit", speed=rate,
                    ends_ready=active)],
        warnings=warnings,
        override=list(shared or []),
        choice=Choice(base=base_img.node_name, top=None if active else top_img.node_name, speed=rate),
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
    fmt = check_format(fmt)
    sync = (sync or "").strip().lower()
    if sync not in SYNC_MODES:
        raise ValidationError(f"Unknown sync mode {sync!r}: choose top or full", "sync")
    if mode not in MIRROR_MODES:
        raise ValidationError(f"Unknown mode {mode!r}: choose absolute-paths or existing", "mode")
    rate = parse_speed(speed)
    full = resolve_target(target, drive, existing=(mode == "existing"), in_use=in_use, here=here)
    check_busy(drive, [drive.active])
    check_users(drive.active, drive=drive)
    needed = bytes_to_write(drive, sync, fmt)
    space_note = _mirror_target_checks(drive, full, fmt, sync, mode, needed, here)
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
    after, moves = _mirror_story(drive, full, fmt, sync, needed)
    return Plan.on(
        drive,
        kind="mirror",
        title=f"Mirror {drive.name} to {label}",
        after=after,
        moves=moves,
        steps=[Step("drive-mirror", args, starts_job=job_id, job_type="mirror", ends_ready=True, speed=rate,
                    creates_target=mode != "existing")],
        warnings=raw_note(drive, fmt) + suffix_note(full, fmt) + ([space_note] if space_note else []),
        target=full,
        choice=Choice(target=full, fmt=fmt, sync=sync, mode=mode, copy_mode=copy_mode or None, speed=rate),
    )


def _mirror_target_checks(drive: Drive, full: str, fmt: str, sync: str, mode: str, needed: int,
                          here: bool) -> str | None:
    """A reused target must fit the drive; a new one must fit on its file system (a warning when
    tight); a raw target holds no backing file.  Not on another host's file system."""
    space_note = None
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
    return space_note


def _mirror_story(drive: Drive, full: str, fmt: str, sync: str, needed: int) -> tuple[str, list[str]]:
    """The chain after a mirror, and what moves where."""
    label = os.path.basename(full)
    if sync == "full":
        after = chain_notation([label])
        what = f"The whole chain ({drive.notation()}) is copied into {label}."
    else:
        after = chain_notation([i.label for i in drive.images[:-1]] + [label])
        what = f"The active image {drive.active.label} is copied into {label}, backed by the same chain."
    return after + "   (after finish; cancel keeps " + drive.active.label + ")", [
        what + f" It writes up to {human_size(needed)}" + (" (the full virtual size: raw)." if fmt == "raw" else "."),
        "The job goes ready once the copy has caught up; guest writes keep both in sync.",
        f"Then finish (f) switches the drive to {full}; cancel (x) keeps the source and "
        "leaves the target a consistent copy.",
    ]


def plan_snapshot(
    drive: Drive, target: str, node_name: str, fmt: str = "qcow2", in_use: dict[str, str] | None = None,
    here: bool = True,
) -> Plan:
    """External snapshot: a new empty overlay becomes the active image."""
    fmt = check_format(fmt, ("qcow2",))
    full = resolve_target(target, drive, in_use=in_use, here=here)
    check_busy(drive, [drive.active])
    check_users(drive.active, drive=drive)
    args = _snapshot_args(drive, full, node_name, fmt)
    label = os.path.basename(full)
    return Plan.on(
        drive,
        kind="snapshot",
        title=f"Snapshot {drive.name} into {label}",
        after=chain_notation([i.label for i in drive.images] + [label]),
        moves=[
            f"A new empty image {full} is created on top of {drive.active.label}.",
            f"The guest writes to {label} from now on; {drive.active.label} becomes read-only.",
        ],
        steps=[Step("blockdev-snapshot-sync", args, changes_chain=True)],
        target=full,
        choice=Choice(target=full, fmt=fmt),
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
        plan.choice = replace(plan.choice, method="mirror")
        plan.title = f"Copy {drive.name} to {os.path.basename(plan.target or target)} (full mirror)"
        return plan
    if method not in ("stream", "snapshot+stream", "snapshot + stream"):
        raise ValidationError(f"Unknown copy method {method!r}: choose stream or mirror", "method")
    fmt = check_format(fmt, ("qcow2",)) if fmt else "qcow2"
    rate = parse_speed(speed)
    full = resolve_target(target, drive, in_use=in_use, here=here)
    check_busy(drive, drive.images)
    check_users(drive.active, drive=drive)
    space_note = check_space(full, bytes_to_write(drive, "full", fmt)) if here else None
    label = os.path.basename(full)
    snap = _snapshot_args(drive, full, node_name, fmt)
    stream: dict[str, Any] = {"job-id": job_id, "device": drive.device if drive.has_device else node_name}
    stream.update(_speed_args(rate))
    return Plan.on(
        drive,
        kind="copy",
        title=f"Copy {drive.name} to {label} (snapshot + stream)",
        after=chain_notation([label]),
        moves=[
            f"Step 1: a live snapshot makes {full} the active image, backed by {drive.active.label}.",
            f"Step 2: every image below it is streamed into {label}; it then stands alone.",
            "The old chain is left as it was at the snapshot: a point-in-time copy.",
        ],
        steps=[
            Step("blockdev-snapshot-sync", snap, changes_chain=True),
            Step("block-stream", stream, starts_job=job_id, job_type="stream", speed=rate),
        ],
        warnings=raw_note(drive) + ([space_note] if space_note else []),
        target=full,
        choice=Choice(target=full, fmt=fmt, method="stream", speed=rate),
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
    return Plan.on(
        drive,
        kind="close",
        title=f"Close leftover node{'s' if len(leftover.labels) > 1 else ''} {', '.join(leftover.labels)}",
        after=drive.notation(),
        moves=[
            f"QEMU {drive.session} ({address}) closes {leftover.text}: nothing uses "
            f"{'them' if len(leftover.labels) > 1 else 'it'} (an earlier job left {'them' if len(leftover.labels) > 1 else 'it'} open).",
            f"The file{'s stay' if len(leftover.files) > 1 else ' stays'} on disk: {files}.",
            f"The chain of {drive.name} does not change; its images can then be snapshot or mirrored again.",
        ],
        steps=[_close_step(n, first=i == 0) for i, n in enumerate(leftover.deletable)],
    )




def _close_step(node: str, first: bool) -> Step:
    """``blockdev-del`` of one node; after the first, a node opened inside its parent's
    options may have been closed with that parent already."""
    gone = None if first else ("Failed to find node", f"{node} was closed with its parent")
    return Step("blockdev-del", {"node-name": node}, done_already=gone)
