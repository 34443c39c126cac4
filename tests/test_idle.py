"""What chaintui does while nothing happens (issue 13): the structure watch signs an unchanged
answer once, and the terminal's input thread sleeps until a key, yet keys, a lone Escape,
suspend/resume and quitting work as with Textual's own driver."""

from __future__ import annotations

import copy
import os
import pty
import select
import signal
import sys
import time

from tui.app import ChainApp
from tui.backend import block_graph
from tui.backend.block_graph import StructureMemo, graph_signature
from tui.driver import QuietLinuxDriver

from .conftest import MiB

GRAPH = {
    "nodes": [{"id": 1, "type": "block-backend", "name": "drive0"},
              {"id": 2, "type": "block-driver", "name": "top"},
              {"id": 3, "type": "block-driver", "name": "base"}],
    "edges": [{"parent": 1, "child": 2, "name": "root", "perm": [], "shared-perm": []},
              {"parent": 2, "child": 3, "name": "backing", "perm": [], "shared-perm": []}],
}


def test_structure_memo_signs_an_equal_answer_once(monkeypatch):
    signed = []
    monkeypatch.setattr(block_graph, "graph_signature", lambda g: signed.append(g) or graph_signature(g))
    memo = StructureMemo()
    first = memo(copy.deepcopy(GRAPH))
    assert first == graph_signature(GRAPH) and len(signed) == 1
    assert memo(copy.deepcopy(GRAPH)) is first and len(signed) == 1  # equal data: not signed again
    snap = copy.deepcopy(GRAPH)
    snap["nodes"].append({"id": 4, "type": "block-driver", "name": "snap"})
    snap["edges"][0]["child"] = 4
    snap["edges"].append({"parent": 4, "child": 2, "name": "backing", "perm": [], "shared-perm": []})
    changed = memo(snap)
    assert changed != first and len(signed) == 2
    # ids renumbered, same structure: signed again, same signature (no false change)
    renumbered = copy.deepcopy(GRAPH)
    for n in renumbered["nodes"]:
        n["id"] += 10
    for e in renumbered["edges"]:
        e["parent"] += 10
        e["child"] += 10
    assert memo(renumbered) == first and len(signed) == 3


def test_chaintui_uses_the_quiet_driver_on_a_terminal():
    assert ChainApp([]).driver_class is QuietLinuxDriver


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_keys_escape_suspend_and_quit_in_a_terminal(lab):
    """chaintui on a real pseudo-terminal: help opens and a lone Escape closes it, it survives
    SIGTSTP/SIGCONT (Textual then starts two input threads) and quits at once afterwards."""
    q = lab.start(lab.make_chain(2, 16 * MiB)[-1])
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40", XDG_STATE_HOME=str(lab.dir / "state"),
               XDG_CONFIG_HOME=str(lab.dir / "config"))
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(sys.executable, [sys.executable, "-m", "tui", str(q.qmp)], env)
    output = bytearray()

    def until(what: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while what not in output:
            assert time.monotonic() < deadline, f"never saw {what!r}: " + output[-400:].decode(errors="replace")
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                output.extend(os.read(fd, 65536))

    def stopped_is(want: bool) -> None:
        deadline = time.monotonic() + 10
        while (_state(pid) == "T") != want:
            assert time.monotonic() < deadline, f"state {_state(pid)}"
            time.sleep(0.02)

    try:
        until(b"ACTIVE")
        os.write(fd, b"?")
        until(b"escape closes")
        output.clear()
        os.write(fd, b"\x1b")  # a lone Escape: only the parser's deadline turns it into a key
        until(b"ACTIVE")  # the main screen drawn again where the help was
        os.kill(pid, signal.SIGTSTP)
        stopped_is(True)
        os.kill(pid, signal.SIGCONT)
        stopped_is(False)
        output.clear()
        os.write(fd, b"?")
        until(b"escape closes")
        os.write(fd, b"\x11")  # ctrl+q
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            assert time.monotonic() < deadline, "chaintui did not exit after suspend and resume"
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                try:
                    output.extend(os.read(fd, 65536))
                except OSError:
                    pass
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"Traceback" not in output
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
