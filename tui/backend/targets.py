"""Target checks on the file system: where a new image may go, what an existing one is, free space.

:func:`inspect_existing` runs ``qemu-img info``: call it off the UI loop.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

from .chain import Drive
from .errors import ValidationError
from .fmt import human_size

PATH_MAX = 4095
RAW_SUFFIXES = (".raw", ".img")


def suffix_note(full: str, fmt: str) -> list[str]:
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
        _not_in_chain(real, drive, shown=full)
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


def _not_in_chain(full: str, drive: Drive | None, shown: str | None = None) -> str:
    """``full`` (a real path) is no image of ``drive``'s chain; errors name ``shown``, the path as typed."""
    for img in drive.images if drive is not None else []:
        if img.pseudo:
            continue
        if os.path.realpath(img.filename) == full or img.filename == full:
            what = "the active image" if img is drive.active else "an image of its backing chain"
            raise ValidationError(f"Target {shown or full} is {what} ({img.label}); pick a new file", "target")
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



_SUGGESTED = re.compile(r"(-(mirror|copy|snap)(-\d+)?)+$")


def suggest_target(drive: Drive, suffix: str, ext: str = "qcow2") -> str:
    """An unused file name next to the active image: ``D-mirror.qcow2``, ``D-mirror-2.qcow2``..."""
    active = drive.active.filename
    directory = os.getcwd() if drive.active.pseudo else os.path.dirname(active)
    stem = drive.name if drive.active.pseudo else os.path.splitext(os.path.basename(active))[0]
    stem = _SUGGESTED.sub("", stem) or stem  # D-mirror.qcow2 suggests D-mirror-2, never D-mirror-mirror
    candidate = os.path.join(directory, f"{stem}-{suffix}.{ext}")
    n = 2
    while os.path.lexists(candidate):
        candidate = os.path.join(directory, f"{stem}-{suffix}-{n}.{ext}")
        n += 1
    return candidate
