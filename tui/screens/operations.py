"""The main screen's operation keys (s c m y n o): each opens a dialog that shows the plan before anything is sent."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from rich.markup import escape
from textual.widgets import Input, Select

from ..backend import ops, plan as plans, targets
from ..backend.chain import Drive
from ..backend.errors import ValidationError
from ..backend.fmt import these
from ..backend.image_graph import describe_dependents, drive_keys, image_key, shared_with_others
from ..widgets.path_input import PathInput
from ..widgets.tick_box import TickBox
from .dialogs import ConfirmDialog, PlanDialog

if TYPE_CHECKING:
    from .main import MainScreen

    _Base = MainScreen
else:
    _Base = object


class OperationKeys(_Base):
    """Mixed into :class:`~tui.screens.main.MainScreen`: the operations on the selected drive."""

    def _now(self, drive: Drive) -> Drive:
        """The drive as QEMU has it now (a dialog re-validates against it when the chain changes)."""
        return self.chain_app.hub.drive(drive.session, drive.name)

    def _labels_now(self, drive: Drive) -> tuple[str, ...]:
        try:
            return tuple(img.label for img in self._now(drive).images)
        except ValidationError:
            return ()  # gone

    def _in_use(self, drive: Drive) -> dict[str, str]:
        """Files a target must not be: in another open drive's chain, or a defined domain's (as last read)."""
        return {**self.chain_app.usage.files_of_others(), **self.chain_app.hub.files_in_use(except_drive=drive)}

    def _speed_input(self, value: str = "") -> Input:
        return Input(value=value, placeholder="unlimited (e.g. 10M, 512K)")

    def _open(self, dialog: PlanDialog) -> None:
        drive = self.selected_drive()  # the drive every operation dialog is about
        if drive is not None:
            dialog.chain_now = lambda: self._labels_now(drive)

        def done(plan: plans.Plan | None) -> None:
            if plan is not None:
                self.chain_app.launch(plan)

        self.app.push_screen(dialog, done)

    # -- operations ------------------------------------------------------
    def action_stream(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        if len(drive.images) < 2:
            self.notify(f"{drive.name} has a single image ({drive.active.label}), no backing file: nothing to merge",
                        title="Merge", severity="warning")
            return
        img = self._highlighted_image(drive)
        base = None if img.node_name == drive.active.node_name else img.node_name
        job_id = self.chain_app.hub.new_job_id("stream", drive)
        graph = self.chain_app.usage.graph()  # what the last scan found: the note is informational
        shared = describe_dependents(graph, shared_with_others(graph, drive, drive_keys(drive)[0]))
        self._open(
            PlanDialog(
                f"Merge (block-stream) on {drive.where}",
                lambda v: self.chain_app.hub.planner(drive).plan_stream(self._now(drive), base, v["speed"], job_id, shared=shared),
                [("speed", "Speed limit", self._speed_input())],
                intro=(
                    f"New base: [b]{escape(img.label)}[/b]" if base else "Flatten: no base, everything is pulled up"
                ),
            )
        )

    def action_commit(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        img = self._highlighted_image(drive)
        index = drive.index_of(img.node_name)
        if index == len(drive.images) - 1:
            self.notify(
                "Highlight the image to commit into: it must be below the active image",
                title="Commit",
                severity="warning",
            )
            return
        usage = self.chain_app.usage

        async def open_dialog() -> None:
            # every overlay of the base, live or on disk, is known before the dialog opens
            scan = asyncio.ensure_future(usage.ensure())
            done, _ = await asyncio.wait({scan}, timeout=0.5)
            if not done:
                self.notify(f"Reading the image files next to the chains first ({usage.state.text})…", title="Commit")
            await scan
            graph = usage.graph()
            shared = describe_dependents(graph, shared_with_others(graph, drive, image_key(drive.session, img)))
            self._open_commit(drive, img, index, shared)

        self.chain_app.run_worker(open_dialog(), exit_on_error=False, group="usage")

    def _open_commit(self, drive: Drive, img, index: int, shared: list[str]) -> None:  # type: ignore[no-untyped-def]
        tops = [(i.label + (" (active)" if i is drive.active else ""), i.node_name) for i in drive.images[index + 1 :]]
        top_select: Select[str] = Select(list(reversed(tops)), value=drive.active.node_name, allow_blank=False)
        job_id = self.chain_app.hub.new_job_id("commit", drive)
        fields = [("top", "Top", top_select), ("speed", "Speed limit", self._speed_input())]
        if shared:
            n = len(shared)
            fields.append(("override", "Shared base", TickBox(f"commit anyway: {these(n, 'image')} will see changed data")))
        self._open(
            PlanDialog(
                f"Commit (block-commit) into {img.label} on {drive.where}",
                lambda v: self.chain_app.hub.planner(drive).plan_commit(
                    self._now(drive), img.node_name, v["top"], v["speed"], job_id, shared=shared, override=bool(v.get("override"))
                ),
                fields,
                intro=f"Base: [b]{escape(img.label)}[/b]; the images above it up to the top are written into it",
                focus="speed",
            )
        )

    def _target_fields(self, drive: Drive, suffix: str, formats: list[str]) -> list:  # type: ignore[type-arg]
        # the default format follows the source: a raw disk stays raw
        default = drive.active.format if drive.active.format in formats else formats[0]
        ext = "raw" if default == "raw" else "qcow2"
        target = PathInput(value=targets.suggest_target(drive, suffix, ext), placeholder="/path/to/new-image.qcow2")
        labels = {
            "qcow2": "qcow2: thin, can have a backing file",
            "raw": "raw: no backing file, thin only where the file system supports it",
        }
        fmt: Select[str] = Select([(labels.get(f, f), f) for f in formats], value=default, allow_blank=False)
        return [("target", "Target", target), ("format", "Format", fmt)]

    def action_mirror(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        job_id = self.chain_app.hub.new_job_id("mirror", drive)
        in_use = self._in_use(drive)
        sync: Select[str] = Select([("full: the whole chain", "full"), ("top: the active image only", "top")], value="full", allow_blank=False)
        mode: Select[str] = Select(
            [("create a new file", "absolute-paths"), ("reuse an existing image", "existing")],
            value="absolute-paths",
            allow_blank=False,
        )
        copy_mode: Select[str] = Select(
            [("background: converges if copying outruns the guest", "background"),
             ("write-blocking: guest writes wait for the target, always converges", "write-blocking")],
            value="background",
            allow_blank=False,
        )
        fields = self._target_fields(drive, "mirror", ["qcow2", "raw"]) + [
            ("sync", "Sync", sync),
            ("mode", "Target file", mode),
            ("copy_mode", "Copy mode", copy_mode),
            ("speed", "Speed limit", self._speed_input()),
        ]
        self._open(
            PlanDialog(
                f"Mirror (live migration) of {drive.where}",
                lambda v: self.chain_app.hub.planner(drive).plan_mirror(
                    self._now(drive), v["target"], v["format"], v["sync"], v["speed"], job_id, mode=v["mode"] or "absolute-paths",
                    copy_mode=None if v["copy_mode"] in (None, "background") else v["copy_mode"],
                    in_use=in_use,
                ),
                fields,
                intro="The job goes [b]ready[/b] when the copy has caught up: then [b]f[/b] pivots to the "
                "target, [b]x[/b] keeps the source and leaves the target a consistent copy.",
            )
        )

    def action_copy(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        hub = self.chain_app.hub
        job_id = hub.new_job_id("copy", drive)
        in_use = self._in_use(drive)
        method: Select[str] = Select(
            [("snapshot + stream (drive moves to the copy)", "stream"), ("full mirror (raw allowed)", "mirror")],
            value="stream",
            allow_blank=False,
        )
        fields = self._target_fields(drive, "copy", ["qcow2", "raw"])
        fields.insert(1, ("method", "Method", method))
        fields.append(("speed", "Speed limit", self._speed_input()))
        self._open(
            PlanDialog(
                f"Live copy of {drive.where}",
                lambda v: self.chain_app.hub.planner(drive).plan_copy(
                    self._now(drive), v["target"], v["method"], v["format"], v["speed"], job_id,
                    hub.new_node_name(v["target"] or "copy", drive), in_use=in_use,
                ),
                fields,
                intro="Snapshot + stream: the destination becomes the active image and then stands alone. "
                "Full mirror: goes ready, then [b]x[/b] keeps the source with a consistent copy.",
            )
        )

    def action_snapshot(self) -> None:
        drive = self._drive_or_say()
        if drive is None:
            return
        hub = self.chain_app.hub
        target = PathInput(value=targets.suggest_target(drive, "snap"), placeholder="/path/to/overlay.qcow2")
        in_use = self._in_use(drive)
        self._open(
            PlanDialog(
                f"External snapshot of {drive.where}",
                lambda v: self.chain_app.hub.planner(drive).plan_snapshot(
                    self._now(drive), v["target"], hub.new_node_name(v["target"] or "snap", drive), in_use=in_use
                ),
                [("target", "New image", target)],
                intro="A new, empty qcow2 image becomes the active image.",
                confirm_label="Snapshot",
            )
        )

    def action_close_leftover(self) -> None:
        """blockdev-del of nodes an earlier job left open on the selected drive (with a confirmation)."""
        drive = self._drive_or_say()
        if drive is None:
            return
        if not drive.leftovers:
            self.notify(f"No leftover nodes on {drive.where}", severity="information")
            return
        leftover = drive.leftovers[0]
        address = self.sessions[drive.session].address_text
        try:
            plan = ops.plan_close_leftover(drive, leftover, address)
        except ValidationError as exc:
            self.notify(exc.message, title="Cannot close", severity="warning")
            return
        body = "\n".join(escape(m) for m in plan.moves) + "\n\n" + "\n".join(
            f"[dim]QMP[/dim] {escape(line)}" for line in plan.qmp_json().splitlines()
        )
        self.app.push_screen(
            ConfirmDialog(f"Close {', '.join(leftover.nodes)} on {drive.where}?", body,
                          yes="Close (blockdev-del)", no="Keep open"),
            lambda ok: ok and self.chain_app.launch(plan),
        )
