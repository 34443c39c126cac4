"""The benchmark script still runs (tiny sizes); the numbers live in benchmarks/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.qemu
def test_benchmarks_smoke():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke", "--only", "overhead,chains,startup"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| case" in out.stdout and "chaintui UI" in out.stdout and "first paint" in out.stdout
