"""Shared fixtures: a real lab (qemu-img chains, real QEMU processes) and a hub."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tui.backend.hub import Hub
from tui.backend.lab import Lab, LabQemu

MiB = 1 << 20
QEMU_TOOLS = ("qemu-img", "qemu-io", "qemu-storage-daemon", "qemu-system-x86_64")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nightly", action="store_true", help="run the long randomized / nightly-size tests")


def pytest_configure(config: pytest.Config) -> None:
    missing = [t for t in QEMU_TOOLS if shutil.which(t) is None]
    if missing:
        raise pytest.UsageError(
            "chaintui's tests drive real QEMU, and these are missing: "
            + ", ".join(missing)
            + " (apt-get install qemu-utils qemu-system-x86, or run `make test`)"
        )


@pytest.fixture
def lab(tmp_path: Path):
    with Lab(root=tmp_path / "lab") as lab:
        yield lab


@pytest.fixture
async def hub():
    h = Hub(poll_interval=0.05)
    yield h
    await h.close()


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def connect(hub: Hub, q: LabQemu, drives: int = 1):
    session = await hub.add(str(q.qmp))
    await wait_for(lambda: len(hub.drives.get(session.name, [])) >= drives, what="drives")
    return session


async def chain_of(hub: Hub, session: str, drive: str = "drive0") -> list[str]:
    await hub.refresh(session)
    return [img.label for img in hub.drive(session, drive).images]
