"""What chaintui started, kept across restarts: ``$XDG_STATE_HOME/chaintui/jobs.json``.

One entry per job chaintui started and QEMU still has: the QEMU's address, the
job id, the drive, the operation and the target.  A restarted chaintui reads it
back, so its own jobs stay its own (the quit warning, the target path) instead
of reading ``started elsewhere``.  Entries are dropped when the job ends or
QEMU no longer knows it.  A file that cannot be read or written is not an
error: chaintui then only knows what it saw itself.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from . import audit


def default_path() -> Path:
    return audit.default_path().with_name("jobs.json")  # next to the audit trail


class OwnedJobs:
    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.entries: dict[tuple[str, str], dict[str, Any]] = {}
        self.failed = ""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            for e in data.get("jobs", []):
                if isinstance(e, dict) and isinstance(e.get("address"), str) and isinstance(e.get("job"), str):
                    self.entries[(e["address"], e["job"])] = e
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            self.failed = f"{self.path}: {exc}"

    def get(self, address: str, job_id: str) -> dict[str, Any] | None:
        return self.entries.get((address, job_id))

    def for_address(self, address: str) -> list[dict[str, Any]]:
        return [e for (a, _), e in self.entries.items() if a == address]

    def add(self, address: str, qemu: str, job_id: str, *, drive: str | None, operation: str,
            target: str | None, active_commit: bool = False) -> None:
        self.entries[(address, job_id)] = {
            "address": address, "qemu": qemu, "job": job_id, "drive": drive, "operation": operation,
            "target": target, "active_commit": active_commit, "started": time.time(),
        }
        self._save()

    def forget(self, address: str, job_id: str) -> None:
        if self.entries.pop((address, job_id), None) is not None:
            self._save()

    def _save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".jobs-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"version": 1, "jobs": list(self.entries.values())}, f, ensure_ascii=False, indent=1)
            os.replace(tmp, self.path)
            self.failed = ""
        except OSError as exc:
            self.failed = f"{self.path}: {exc}"
