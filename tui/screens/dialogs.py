"""Dialogs: every operation shows what it will do before anything is sent.

A :class:`PlanDialog` holds a few fields and a ``build`` function from the QEMU
side (``tui.backend.ops``) that turns their values into a :class:`Plan` or
raises :class:`ValidationError`.  The dialog re-validates on every change,
marks the field at fault (its label turns red) and shows the problem
in the result box; it never talks to QEMU.  It dismisses with the plan
(``enter``) or ``None`` (``escape``).

``build`` may look at the disk (free space, ``qemu-img info`` of an image to
reuse), so it never runs on the UI loop: a change starts an exclusive worker
that waits a moment for more typing, runs ``build`` in a thread with a
timeout, and shows its result only if the fields still hold what it checked;
meanwhile the dialog says "checking…" and the start button waits.

A result never changes the dialog's layout (a new layout of the whole dialog
costs Textual 25-60 ms, and a keystroke landing meanwhile waits for it): the
problem, before/after and QMP live in a box of fixed height that scrolls, the
"checking…" slot has a fixed width, and a text is only re-set when it changed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from ..backend.errors import ValidationError
from ..backend.plan import Plan
from ..backend.targets import format_for_target
from ..widgets.path_input import PathInput
from .picker import PickerScreen

FieldSpec = tuple[str, str, Widget]  # name, label, widget


def plan_preview(plan: Plan) -> str:
    lines = [
        f"[b]Before[/b]  {escape(plan.before)}",
        f"[b]After[/b]   [green]{escape(plan.after)}[/green]",
        "",
    ]
    lines += [f"• {escape(m)}" for m in plan.moves]
    lines += [f"[yellow]⚠ {escape(w)}[/yellow]" for w in plan.warnings]
    return "\n".join(lines)


def plan_qmp(plan: Plan) -> str:
    out = []
    for line in plan.preview().splitlines():
        head, _, rest = line.partition(" ")
        out.append(f"[dim]{escape(head)}[/dim] {escape(rest)}")
    return "\n".join(out)


def _height(text: str | None, static: Static) -> int | None:
    """How many lines markup ``text`` takes in ``static`` as laid out now (None: not laid out yet)."""
    width = static.size.width
    if not width:
        return None
    return Content.from_markup(text).get_height(static.styles, width) if text else 0


class PlanDialog(ModalScreen[Plan | None]):
    """A dialog for one operation: fields, before/after, the exact QMP, confirm."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "confirm", "Start"),
        # enter where no field takes it (the result box, focused to scroll it) starts too, as the hint says
        Binding("enter", "confirm", "Start", show=False),
        Binding("ctrl+o", "browse", "Browse"),
    ]
    AUTO_FOCUS = None
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    CHECK_DELAY = 0.1  # seconds of quiet typing before the fields are checked
    CHECK_TIMEOUT = 10.0  # a check that takes longer (a hung NFS, a stuck qemu-img) is reported

    def __init__(
        self,
        title: str,
        build: Callable[[dict[str, Any]], Plan],
        fields: list[FieldSpec],
        intro: str = "",
        confirm_label: str = "Start",
        focus: str | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.build = build
        self.fields = fields
        self.intro = intro
        self.confirm_label = confirm_label
        self.focus_field = focus or (fields[0][0] if fields else None)
        self.plan: Plan | None = None
        self.error: ValidationError | None = None
        # the drive's chain as QEMU has it now (set by the screen that opens the dialog)
        self.chain_now: Callable[[], tuple[str, ...]] | None = None  # image labels, bottom first
        self.chain_at_open: tuple[str, ...] | None = None
        self.checking = False  # a check of the fields is pending or running
        self.checked_values: dict[str, Any] | None = None  # what the plan/error shown was built from
        self._asked = 0  # generation of the newest check: older results are dropped
        self._confirm_wanted = False  # enter was pressed: start once the newest check passes
        self._texts: dict[str, str] = {}  # what each Static shows now (see _put)
        self._at_fault: str | None = None  # the field marked red: the problem is about it

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Label(self.title_text, id="dialog-title")
            if self.intro:
                yield Static(self.intro, id="intro", classes="intro")
            for name, label, widget in self.fields:
                # a one-line field's row has a fixed height: an Input re-lays its parent out on every
                # keystroke (its virtual size follows the text), and this way not the whole dialog
                with Horizontal(classes="field -line" if isinstance(widget, Input) else "field"):
                    yield Label(label, id=f"label-{name}", classes="field-label")
                    widget.id = f"field-{name}"
                    yield widget
                if isinstance(widget, PathInput):
                    yield Static("", id=f"resolved-{name}", classes="resolved")
            # the box of fixed size around the scrolling result keeps the result's new height (a new
            # virtual size of the scroll view, a relayout of its parent) out of the dialog's layout
            with Vertical(id="result"), VerticalScroll(id="preview-box"):
                yield Static("", id="problem")
                yield Static("", id="preview")
                yield Static("", id="qmp", classes="qmp")
            with Horizontal(id="buttons"):
                yield Static("", id="checking")
                yield Button(self.confirm_label, variant="primary", id="confirm")
                yield Button("Close", id="cancel")
            browse = " · [b]tab[/b] completes · [b]ctrl+o[/b] browse" if self._has_path() else ""
            yield Static(f"[b]enter[/b] start{browse} · [b]escape[/b] close without doing anything", classes="hint")

    def on_mount(self) -> None:
        if self.chain_now is not None:
            self.chain_at_open = self.chain_now()
        self.revalidate(delay=0.0)
        if self.focus_field:
            self.query_one(f"#field-{self.focus_field}").focus()

    def _has_path(self) -> bool:
        return any(isinstance(w, PathInput) for _, _, w in self.fields)

    def _show_resolved(self, candidates: list[str] | None = None) -> None:
        for name, _, widget in self.fields:
            if isinstance(widget, PathInput):
                value = widget.value.strip()
                text = f"→ {escape(os.path.abspath(os.path.expanduser(value)))}" if value else ""
                if candidates:
                    text += "\n[dim]" + escape("  ".join(candidates[:12])) + (" …" if len(candidates) > 12 else "") + "[/dim]"
                self._put(f"#resolved-{name}", text)

    def _put(self, selector: str, text: str, layout: bool | None = None) -> None:
        """Set a Static's text if it changed, with a new layout only if its height changes.

        ``layout=None``: measure the old and new height (for a Static whose size follows its text).
        """
        before = self._texts.get(selector)
        if before == text:
            return
        self._texts[selector] = text
        static = self.query_one(selector, Static)
        if layout is None:
            height = _height(before, static)
            layout = height is None or height != _height(text, static)
        static.update(text, layout=layout)

    def on_path_input_candidates(self, event: PathInput.Candidates) -> None:
        event.stop()
        self._show_resolved(event.candidates)

    def action_browse(self) -> None:
        target = next(((n, w) for n, _, w in self.fields if isinstance(w, PathInput)), None)
        if target is None:
            return
        name, widget = target

        def picked(path: str | None) -> None:
            if not path:
                return
            if path.endswith(os.sep):  # a directory: keep the file name
                widget.value = os.path.join(path, os.path.basename(widget.value.strip()) or "disk.qcow2")
            else:
                widget.value = path
                modes = [w for n, _, w in self.fields if n == "mode"]
                if modes and os.path.exists(path):
                    modes[0].value = "existing"  # an existing image: reuse it (it is inspected first)
            widget.focus()
            self.revalidate()

        self.app.push_screen(PickerScreen(widget.value.strip()), picked)

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, _, widget in self.fields:
            value = getattr(widget, "value", None)
            out[name] = None if value is Select.BLANK else value
        return out

    def revalidate(self, delay: float | None = None) -> None:
        """Check the fields again, off the UI loop (after ``delay`` seconds of quiet; the newest check wins)."""
        if self._has_path():
            self._show_resolved()
        self._asked += 1
        self.checking = True
        self._put("#checking", "checking…", layout=False)  # a slot of fixed size
        # the start button keeps the last result meanwhile (toggling it costs a layout per key):
        # starting waits for this check anyway (action_confirm)
        self._check(self._asked, self.values(), self.CHECK_DELAY if delay is None else delay)

    @work(exclusive=True, group="plan-check", exit_on_error=False)
    async def _check(self, asked: int, values: dict[str, Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)  # typing goes on: a newer check cancels this one here
        plan: Plan | None = None
        try:
            plan = await asyncio.wait_for(asyncio.to_thread(self.build, values), self.CHECK_TIMEOUT)
            error = None
        except ValidationError as exc:
            error = exc
        except asyncio.TimeoutError:
            error = ValidationError(
                f"Checking took longer than {self.CHECK_TIMEOUT:.0f} s (a slow or hung file system?): try again"
            )
        if asked != self._asked or not self.is_mounted:
            return  # the fields changed meanwhile: a newer check shows its own result
        self.checking = False
        self.checked_values = values
        self._put("#checking", "", layout=False)
        self._show(plan, error)
        if self._confirm_wanted:
            self._confirm_wanted = False
            if plan is None:
                self.app.bell()
            else:
                self.dismiss(plan)

    def _show(self, plan: Plan | None, error: ValidationError | None) -> None:
        """The result of a check: the problem (its field marked) or the preview and QMP, all in the result box."""
        self.plan, self.error = plan, error
        invalid = error.field if error is not None and any(n == error.field for n, _, _ in self.fields) else None
        if invalid != self._at_fault:  # only the labels whose mark changes are restyled (not the
            for name in {self._at_fault, invalid} - {None}:  # inputs: an Input's restyle costs ms)
                self.query_one(f"#label-{name}").set_class(name == invalid, "-problem")
            self._at_fault = invalid
        # a new layout re-arranges the whole dialog (Textual lays out a screen at once, ~10 ms
        # here): only when a text's height changes (measured: ~0.3 ms)
        self.query_one("#problem", Static).set_class(error is not None, "-shown")
        self._put("#problem", f"✗ {escape(error.message)}" if error is not None else "")
        if plan is None:
            preview, qmp = "[dim]Nothing will be sent until this is fixed.[/dim]", ""
        else:
            preview, qmp = plan_preview(plan), plan_qmp(plan)
        self._put("#preview", self._changed_note() + preview)
        self._put("#qmp", qmp)
        self.query_one("#confirm", Button).disabled = plan is None

    def _changed_note(self) -> str:
        """A line saying the chain changed under the dialog (another tool, or a job that ended)."""
        if self.chain_now is None or self.chain_at_open is None:
            return ""
        now = self.chain_now()
        was = self.chain_at_open
        if now == was:
            return ""
        if not now:
            return "[b yellow]⚠ The drive is gone from QEMU since this dialog opened.[/b yellow]\n"
        return (f"[b yellow]⚠ The chain changed while this dialog was open[/b yellow]: {len(was)} image"
                f"{'s' if len(was) != 1 else ''} up to {escape(was[-1])} before, {len(now)} up to "
                f"{escape(now[-1])} now. What follows is for the chain as it is now.\n")

    def on_input_changed(self, event: Input.Changed) -> None:
        if isinstance(event.input, PathInput) and event.input.id == "field-target":
            self._format_from_name(event.value)
        self.revalidate()

    def _format_from_name(self, path: str) -> None:
        """A target named .raw/.img is written raw, .qcow2 as qcow2 (where the dialog offers that format)."""
        wanted = format_for_target(path)
        fmt = next((w for n, _, w in self.fields if n == "format" and isinstance(w, Select)), None)
        if wanted is None or fmt is None or fmt.value == wanted:
            return
        if any(n == "mode" and getattr(w, "value", None) == "existing" for n, _, w in self.fields):
            return  # an existing image is inspected for its real format instead
        if any(value == wanted for _, value in fmt._options):
            fmt.value = wanted

    def on_select_changed(self, event: Select.Changed) -> None:
        self.revalidate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.revalidate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_close()

    def action_confirm(self) -> None:
        """Start: checked once more (the disk may have changed meanwhile), then dismissed with the plan."""
        self._confirm_wanted = True
        self.revalidate(delay=0.0)

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """Yes or no, with what will change spelled out."""

    BINDINGS = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("enter,y", "answer(True)", "Yes"),
    ]

    def __init__(self, title: str, body: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes
        self.no = no

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Label(self.title_text, id="dialog-title")
            yield Static(self.body, id="confirm-body")
            with Horizontal(id="buttons"):
                yield Button(self.yes, variant="warning", id="yes")
                yield Button(self.no, id="no")
            yield Static("[b]enter[/b]/[b]y[/b] yes · [b]escape[/b]/[b]n[/b] no", classes="hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class AddEndpointDialog(ModalScreen[str | None]):
    """Ask for a QMP endpoint to watch: a socket path, host:port, or ssh://[user@]host[:port]/path."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="confirm"):
            yield Label("Add a QEMU", id="dialog-title")
            yield Static(
                "Its QMP socket: a path ([b]/run/vm1.qmp[/b]), [b]host:port[/b], or "
                "[b]ssh://user@host/path/to/qmp.sock[/b]. chaintui connects at once and reconnects if it goes away.",
                classes="intro",
            )
            yield Input(placeholder="/path/to/qmp.sock or ssh://host/path", id="endpoint")
            yield Static("[b]enter[/b] connect · [b]escape[/b] cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
