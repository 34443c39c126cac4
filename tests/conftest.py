"""Shared fixtures: a real lab (qemu-img chains, real QEMU processes) and a hub."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tui.backend.hub import Hub
from tui.backend.lab import Lab, LabQemu, MiB  # noqa: F401 - MiB for the tests

QEMU_TOOLS = ("qemu-img", "qemu-io", "qemu-storage-daemon", "qemu-system-x86_64")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nightly", action="store_true", help="run the long randomized / nightly-size tests")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "qemu: drives real QEMU (also implied by the lab fixtures): fails, naming the package, without it"
    )


QEMU_FIXTURES = {"lab", "picture_lab"}
QEMU_PACKAGES = "qemu-utils qemu-system-x86"


@pytest.fixture(autouse=True)
def _qemu_present(request: pytest.FixtureRequest) -> None:
    """Tests that drive QEMU fail at once, saying what to install, when QEMU is missing.

    Pure tests (parsers, plans on recorded drives, formatting) need nothing and run anywhere.
    """
    if QEMU_FIXTURES.isdisjoint(request.fixturenames) and request.node.get_closest_marker("qemu") is None:
        return
    missing = [t for t in QEMU_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(
            f"this test drives real QEMU, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing: apt-get install {QEMU_PACKAGES} (or run `make test`)",
            pytrace=False,
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


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition", pause=lambda: asyncio.sleep(0.02)):
    """``predicate()``'s value once it is true (checked again after each ``pause()``), else an AssertionError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pause()


def same(lab: Lab, a, b) -> None:
    """``qemu-img compare`` says the two images hold the same data (only on images QEMU has closed)."""
    ok, msg = lab.compare(a, b)
    assert ok, f"{a} differs from {b}: {msg}"


async def connect(hub: Hub, q: LabQemu, drives: int = 1):
    session = await hub.add(str(q.qmp))
    await wait_for(lambda: len(hub.drives.get(session.name, [])) >= drives, what="drives")
    return session


async def chain_of(hub: Hub, session: str, drive: str = "drive0") -> list[str]:
    await hub.refresh(session)
    return [img.label for img in hub.drive(session, drive).images]
