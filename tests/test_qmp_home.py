"""Every QMP command the app can send is built in exactly one function.

A source scan: every string in ``tui/`` that is the name of a QMP command (the
list comes from a real QEMU's ``query-commands``) must sit in one of the
functions listed here.  Adding a command means adding it to this list, in the
one module it belongs to.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tui.backend import ops
from tui.backend.qmp_control import QmpControl

TUI = Path(__file__).resolve().parent.parent / "tui"

# (module, function) -> the commands it builds
BUILDERS = {
    # the operations (tui/backend/ops.py)
    ("tui.backend.ops", "plan_stream"): {"block-stream"},
    ("tui.backend.ops", "plan_commit"): {"block-commit"},
    ("tui.backend.ops", "plan_mirror"): {"drive-mirror"},
    ("tui.backend.ops", "plan_snapshot"): {"blockdev-snapshot-sync"},
    ("tui.backend.ops", "plan_copy"): {"blockdev-snapshot-sync", "block-stream"},
    ("tui.backend.ops", "_close_step"): {"blockdev-del"},
    # job control (tui/backend/qmp_control.py)
    ("tui.backend.qmp_control", "QmpControl.cancel"): {"block-job-cancel"},
    ("tui.backend.qmp_control", "QmpControl.complete"): {"block-job-complete"},
    ("tui.backend.qmp_control", "QmpControl.pause"): {"block-job-pause"},
    ("tui.backend.qmp_control", "QmpControl.resume"): {"block-job-resume"},
    ("tui.backend.qmp_control", "QmpControl.set_speed"): {"block-job-set-speed"},
    ("tui.backend.qmp_control", "QmpControl.write_blocking"): {"block-job-change"},
    ("tui.backend.qmp_control", "QmpControl.dismiss"): {"job-dismiss"},
    # what is read (tui/backend/qmp_read.py)
    ("tui.backend.qmp_read", "read_graph"): {"x-debug-query-block-graph"},
    ("tui.backend.qmp_read", "read_named_nodes"): {"query-named-block-nodes"},
    ("tui.backend.qmp_read", "read_device_drives"): {"qom-list", "qom-get"},
    ("tui.backend.qmp_read", "read_exports"): {"query-block-exports"},
    ("tui.backend.qmp_read", "read_jobs"): {"query-block-jobs", "query-jobs"},
    # the embedded lab's own monitor (demo and tests), not the app's
    ("tui.backend.lab_qemu", "_quit"): {"quit"},
    ("tui.backend.lab_qemu", "export_drives.export"): {"nbd-server-start", "x-debug-query-block-graph", "qom-get",
                                                         "block-export-add"},
}



def is_other_word(module: str, function: str, text: str) -> bool:
    """Strings that are QMP command names but mean something else where they are."""
    return (
        text == "block-job"  # a node type in x-debug-query-block-graph's answer
        or (text == "stop" and (module, function) == ("tui.backend.ops", "plan_mirror"))  # an on-target-error value
        or (text == "quit" and not module.startswith("tui.backend."))  # a key's action
    )


@pytest.fixture(scope="module")
def qmp_commands() -> set[str]:
    """Every command this QEMU knows, from its own ``query-commands``."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    talk = "\n".join(json.dumps({"execute": c}) for c in ("qmp_capabilities", "query-commands", "quit")) + "\n"
    proc = subprocess.run(
        ["qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none", "-qmp", "stdio"],
        input=talk, capture_output=True, text=True, timeout=60,
    )
    for line in proc.stdout.splitlines():
        reply = json.loads(line)
        if isinstance(reply.get("return"), list):
            return {c["name"] for c in reply["return"]}
    raise AssertionError(f"no query-commands answer: {proc.stdout} {proc.stderr}")


def _strings_by_function(path: Path) -> list[tuple[str, str, int]]:
    """(function qualname, string, line) for every string constant that is not a docstring."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[str, str, int]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, scope + [child.name])
            elif isinstance(child, ast.Constant) and isinstance(child.value, str) and id(child) not in docstrings:
                found.append((".".join(scope), child.value, child.lineno))
            else:
                visit(child, scope)

    visit(tree, [])
    return found


def _module(path: Path) -> str:
    return ".".join(path.relative_to(TUI.parent).with_suffix("").parts)


def test_every_qmp_command_has_one_builder(qmp_commands):
    known = qmp_commands | {c for cs in BUILDERS.values() for c in cs}  # this QEMU may be older than the list
    seen: dict[tuple[str, str], set[str]] = {}
    stray = []
    for path in sorted(TUI.rglob("*.py")):
        module = _module(path)
        for function, text, line in _strings_by_function(path):
            if text not in known or is_other_word(module, function, text):
                continue
            key = (module, function)
            if text in BUILDERS.get(key, set()):
                seen.setdefault(key, set()).add(text)
            else:
                stray.append(f"{path.relative_to(TUI.parent)}:{line} {function or '<module>'}: {text!r}")
    assert not stray, "QMP command names outside their one builder:\n" + "\n".join(stray)
    assert seen == BUILDERS


def test_no_hand_written_qmp_messages():
    """Only a Step says itself as a QMP message (``Step.json``); the traffic view shows what was sent."""
    allowed = {("tui.backend.plan", "Step.json"), ("tui.screens.traffic", "job_traffic")}
    found = [
        (_module(path), function, line)
        for path in sorted(TUI.rglob("*.py"))
        for function, text, line in _strings_by_function(path)
        if text in ("execute", "qmp_capabilities")
    ]
    strays = [f for f in found if f[:2] not in allowed]
    assert not strays, strays


def test_the_app_sends_what_the_builders_build(tmp_path):
    """The builders by name: each operation's plan and each job command, as sent."""
    from tui.backend.chain import Drive, Image
    from tui.backend.jobs import Job

    def image(name: str, backing: str | None) -> Image:
        return Image(name, str(tmp_path / f"{name}.qcow2"), "qcow2", 1 << 20, 1 << 16, backing, False)

    drive = Drive("q", "drive0", "drive0", True, [image("A", None), image("B", "A.qcow2"), image("C", "B.qcow2")], "C")
    plans = {
        "plan_stream": ops.plan_stream(drive, None, 0, "j"),
        "plan_commit": ops.plan_commit(drive, "A", None, 0, "j"),
        "plan_mirror": ops.plan_mirror(drive, str(tmp_path / "m.qcow2"), "qcow2", "full", 0, "j"),
        "plan_snapshot": ops.plan_snapshot(drive, str(tmp_path / "s.qcow2"), "s"),
        "plan_copy": ops.plan_copy(drive, str(tmp_path / "c.qcow2"), "stream", "qcow2", 0, "j", "c"),
    }
    for name, plan in plans.items():
        assert {s.command for s in plan.steps} == BUILDERS[("tui.backend.ops", name)]
        assert plan.qmp_json().splitlines() == [s.json() for s in plan.steps]
    job = Job("j", "q", type="mirror")
    control = QmpControl()
    for name in ("cancel", "complete", "pause", "resume", "set_speed", "write_blocking", "dismiss"):
        if name == "dismiss":
            job.status = "concluded"
        args = {"cancel": (job, False), "set_speed": (job, 1)}.get(name, (job,))
        step = getattr(control, name)(*args)
        assert {step.command} == BUILDERS[("tui.backend.qmp_control", f"QmpControl.{name}")]
