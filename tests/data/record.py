"""Record what real QEMU answers about its drives, for the tests that build plans on recorded drives.

Run it again when QEMU's answers change (a new QEMU, a new VM shape)::

    .venv/bin/python tests/data/record.py

It starts the lab's QEMU shapes (the libvirt-style q35 VM with ``-blockdev`` chains, a ``-drive``
q35 VM, qemu-storage-daemon, and a libvirt-style VM with a mirror running), asks each the
questions chaintui asks (:mod:`tui.backend.qmp_read`; the devices' ``drive`` properties always, though
chaintui asks them only for ``-drive`` backends) and ``query-block`` (what chaintui asked before it
named devices without it: the tests check both name them alike), and writes one JSON file per shape into
``qemuN/`` here (N: QEMU's major version), with the lab's temporary directory written as ``/lab``.
For QEMU 10: ``scripts/test-qemu10 DIR .venv/bin/python tests/data/record.py``, then copy
``DIR/fs/root/chaintui/tests/data/qemu10`` here.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from typing import Any

from qemu.qmp import ExecuteError, QMPClient

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1])]

from tests.fixtures_vm import MiB, start_vm  # noqa: E402
from tui.backend.errors import QMPCommandError  # noqa: E402
from tui.backend.lab import Lab  # noqa: E402
from tui.backend.qmp_read import read_device_drives  # noqa: E402

QUESTIONS = {
    "graph": ("x-debug-query-block-graph", None),
    "named": ("query-named-block-nodes", {"flat": True}),
    "block": ("query-block", None),
    "exports": ("query-block-exports", None),
}


class Asking:
    """The recording client as :mod:`tui.backend.qmp_read` expects a session: refusals as QMPCommandError."""

    def __init__(self, client: QMPClient) -> None:
        self.client = client

    async def execute(self, command: str, arguments: dict | None = None) -> Any:
        try:
            return await self.client.execute(command, arguments)
        except ExecuteError as exc:
            raise QMPCommandError(command, exc.error_class, str(exc)) from None


async def ask(sock: Path, before: list[tuple[str, dict]] | None = None) -> dict:
    client = QMPClient("record")
    await client.connect(str(sock))
    try:
        for command, arguments in before or []:
            if arguments.get("device") == "first disk":  # its top node (libvirt's disks have no -drive id)
                arguments = dict(arguments, device=(await client.execute("query-block"))[0]["inserted"]["node-name"])
            await client.execute(command, arguments)
        answers = {key: await client.execute(cmd, args) if args else await client.execute(cmd)
                   for key, (cmd, args) in QUESTIONS.items()}
        answers["devices"] = await read_device_drives(Asking(client))
        version = await client.execute("query-version")
        answers["qemu"] = "{major}.{minor}.{micro}".format(**version["qemu"])
        for command, arguments in before or []:
            if command == "drive-mirror":
                await client.execute("block-job-cancel", {"device": arguments["job-id"], "force": True})
        return answers
    finally:
        await client.disconnect()


def write(name: str, answers: dict, lab: Lab) -> None:
    text = json.dumps(answers, indent=1, sort_keys=True).replace(str(lab.dir), "/lab")
    where = HERE / f"qemu{answers['qemu'].split('.')[0]}"
    where.mkdir(exist_ok=True)
    (where / f"{name}.json").write_text(text + "\n")
    print(f"{name}.json: QEMU {answers['qemu']}, {len(answers['named'])} named nodes")


def main() -> None:
    with Lab() as lab:
        vm = start_vm(lab, "libvirt")
        write("libvirt_vm", asyncio.run(ask(vm.q.qmp)), lab)
        mirror = ("drive-mirror", {"job-id": "mirror-virtio-disk0", "device": "first disk",
                                   "target": str(lab.dir / "mirror target.qcow2"), "format": "qcow2",
                                   "sync": "top", "speed": 64 * 1024})
        write("libvirt_vm_mirror", asyncio.run(ask(vm.q.qmp, [mirror])), lab)
        vm2 = start_vm(lab, "q35")
        write("drive_vm", asyncio.run(ask(vm2.q.qmp)), lab)
        chains = [lab.make_chain(3, 16 * MiB, prefix=f"qsd{i}-", subdir="qsd") for i in range(2)]
        q = lab.start([c[-1] for c in chains], kind="qsd", name="qsd")
        write("qsd", asyncio.run(ask(q.qmp)), lab)


if __name__ == "__main__":
    main()
