"""Checks on the chain model a plan makes before anything is sent (QMP and libvirt plans alike)."""

from __future__ import annotations

from .chain import Drive, Image
from .errors import ValidationError
from .fmt import these

FORMATS = ("qcow2", "raw")


def check_busy(drive: Drive, images: list[Image]) -> None:
    for img in images:
        if img.job:
            raise ValidationError(
                f"Node '{img.node_name}' ({img.label}) is busy: it is in job '{img.job}'. "
                "Wait for the job to end or cancel it first.",
                "base",
            )


def check_users(img: Image, what: str = "target", drive: Drive | None = None) -> None:
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


def image_of(drive: Drive, name: str | None, what: str) -> Image:
    if name is None or name == "":
        raise ValidationError(f"No {what} chosen", what)
    img = drive.find(name)
    if img is None:
        raise ValidationError(f"'{name}' is not in the backing chain of {drive.name}", what)
    return img


def raw_note(drive: Drive, fmt: str | None = None) -> list[str]:
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



def check_format(fmt: str | None, allowed: tuple[str, ...] = FORMATS) -> str:
    value = (fmt or "").strip().lower()
    if value not in allowed:
        raise ValidationError(f"Unknown format {fmt!r}: choose {' or '.join(allowed)}", "format")
    return value


def check_shared_base(base: Image, shared: list[str] | None, override: bool, moves: list[str],
                      warnings: list[str]) -> None:
    """A base other images back onto: refused unless overridden (then a warning); else the plan
    says whether anything else was looked for."""
    if shared and not override:
        raise ValidationError(
            f"{base.label} is shared: {len(shared)} image{'s' if len(shared) > 1 else ''} backing onto it, or in "
            f"another VM's chain, would see changed data: {'; '.join(shared)}. Refused; tick \"commit anyway\" to go on.",
            "override",
        )
    if shared:
        warnings.insert(0, f"Commit anyway: {these(len(shared), 'image')} will see changed data: {'; '.join(shared)}")
    elif shared is not None:
        moves.append(f"Nothing else backs onto {base.label} (live, or on disk in the directories scanned).")
    else:
        moves.append(f"Anything else backed by {base.label} outside this drive would see changed data.")
