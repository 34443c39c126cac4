"""The audit trail: every action chaintui sends to QEMU, one JSON line each.

Written to ``$XDG_STATE_HOME/chaintui/audit.jsonl`` (``~/.local/state/...``):
time, user, QEMU endpoint, command, arguments, and the result or QEMU's error.
Only what chaintui itself sends is recorded, never answers that carry guest
data (there are none among the commands it sends as actions anyway).
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def default_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "chaintui" / "audit.jsonl"


class AuditLog:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.user = _user()
        self.failed = False

    def record(
        self,
        endpoint: str,
        qemu: str,
        command: str,
        arguments: dict[str, Any] | None,
        *,
        drive: str | None = None,
        job: str | None = None,
        error: tuple[str, str] | None = None,
    ) -> None:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "user": self.user,
            "qemu": qemu,
            "endpoint": endpoint,
            "drive": drive,
            "job": job,
            "command": command,
            "arguments": arguments or {},
            "ok": error is None,
        }
        if error is not None:
            entry["error"] = {"class": error[0], "desc": error[1]}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        except OSError:
            self.failed = True  # the action itself must not fail because the trail cannot be written

    def read(self, drive: str | None = None, job: str | None = None) -> Iterator[dict[str, Any]]:
        try:
            f = open(self.path, encoding="utf-8")
        except FileNotFoundError:
            return
        with f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if drive and entry.get("drive") != drive:
                    continue
                if job and entry.get("job") != job:
                    continue
                yield entry


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def format_entry(entry: dict[str, Any]) -> str:
    where = entry.get("qemu", "?") + (f"/{entry['drive']}" if entry.get("drive") else "")
    result = "ok" if entry.get("ok") else f"ERROR {entry.get('error', {}).get('desc', '')}"
    args = json.dumps(entry.get("arguments", {}), ensure_ascii=False)
    return f"{entry.get('time')} {entry.get('user')} {where} {entry.get('command')} {args} → {result}"
