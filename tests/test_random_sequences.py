"""Randomized job sequences against real QEMU, checked against a reference model.

Hypothesis (deterministic: derandomized) builds chains of 2-8 images with
random data and runs random sequences of stream / commit / mirror / snapshot /
copy / cancel / complete, while a writer plays the guest through the NBD
export.  After every step the guest-visible data is read back through NBD and
compared with the model: a map from 64 KiB block to the byte pattern the guest
wrote there last.  `make test` runs 10 sequences; `--nightly` runs 100.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tui.backend import ops
from tui.backend.errors import ValidationError
from tui.backend.hub import Hub
from tui.backend.lab import Lab, MiB, pattern_for, run

SIZE = 16 * MiB
BLOCK = 64 * 1024
BLOCKS = SIZE // BLOCK
CHUNK = 1 * MiB


def model_runs(model: dict[int, int]) -> list[tuple[int, int, int]]:
    """(offset, length, pattern) runs covering the disk; pattern 0 where nothing was written."""
    runs: list[tuple[int, int, int]] = []
    for b in range(BLOCKS):
        p = model.get(b, 0)
        if runs and runs[-1][2] == p and runs[-1][0] + runs[-1][1] == b * BLOCK:
            off, ln, _ = runs[-1]
            runs[-1] = (off, ln + BLOCK, p)
        else:
            runs.append((b * BLOCK, BLOCK, p))
    return runs


def write_model(model: dict[int, int], offset: int, length: int, pattern: int) -> None:
    for b in range(offset // BLOCK, (offset + length) // BLOCK):
        model[b] = pattern


def check_guest(uri: str, model: dict[int, int], where: str) -> None:
    args = ["qemu-io", "-f", "raw"]
    for off, ln, p in model_runs(model):
        args += ["-c", f"read -P {p} {off} {ln}"]
    out = run(args + [uri], check=False)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "Pattern verification failed" not in text and "error" not in text.lower(), (
        f"guest data differs from the model after {where}: {text[:400]}"
    )


index = st.integers(min_value=0, max_value=15)
ending = st.sampled_from(["complete", "cancel"])
operation = st.one_of(
    st.tuples(st.just("stream"), st.one_of(st.none(), index)),
    st.tuples(st.just("commit"), index, index, ending),
    st.tuples(st.just("mirror"), st.sampled_from(["full", "top"]), st.sampled_from(["qcow2", "raw"]), ending),
    st.tuples(st.just("snapshot")),
    st.tuples(st.just("copy"), st.sampled_from(["stream", "mirror"])),
    st.tuples(st.just("cancel-early"), st.sampled_from(["stream", "mirror"])),
    st.tuples(st.just("write"), st.integers(0, BLOCKS - 1), st.integers(1, 8), st.integers(1, 255)),
)
scenario = st.tuples(
    st.integers(min_value=2, max_value=8),
    st.lists(st.tuples(index, st.integers(0, BLOCKS - 1), st.integers(1, 4), st.integers(1, 255)), max_size=6),
    st.lists(operation, min_size=1, max_size=5),
)


async def run_scenario(root, n, extra, steps) -> list[str]:
    done: list[str] = []
    with Lab(root=root) as lab:
        paths = lab.make_chain(n, SIZE, chunk=CHUNK, absolute=True)
        model: dict[int, int] = {}
        per_image: dict[int, list] = {}
        for img, blk, nblk, pat in extra:
            per_image.setdefault(img % n, []).append((blk, nblk, pat))
        for i, path in enumerate(paths):
            write_model(model, i * CHUNK, CHUNK, pattern_for(i))
            for blk, nblk, pat in per_image.get(i, []):
                nblk = min(nblk, BLOCKS - blk)
                lab.fill(path, blk * BLOCK, nblk * BLOCK, pat)
                write_model(model, blk * BLOCK, nblk * BLOCK, pat)
        q = lab.start(paths[-1], named_nodes=True)
        uri = q.nbd_uri()
        hub = Hub(poll_interval=0.05)
        try:
            s = (await hub.add(str(q.qmp), reconnect=False)).name
            await hub.refresh(s)
            check_guest(uri, model, "start")
            counter = 0

            def guest_write(blk: int, nblk: int, pat: int) -> None:
                nblk = min(nblk, BLOCKS - blk)
                q.write(blk * BLOCK, nblk * BLOCK, pat)
                write_model(model, blk * BLOCK, nblk * BLOCK, pat)

            async def run_job(plan, end: str = "complete", writes: bool = True) -> None:
                [job] = await hub.run_plan(plan)
                if writes:
                    guest_write((counter * 37) % BLOCKS, 2, (counter * 53) % 250 + 3)
                await hub.set_speed(s, job.id, 0)
                await hub.wait_job(s, job.id, lambda j: j.finished or j.ready, timeout=60)
                if job.ready and not job.finished:
                    if writes:
                        guest_write((counter * 91) % BLOCKS, 1, (counter * 29) % 250 + 3)
                    if end == "complete":
                        await hub.complete(s, job.id)
                    else:
                        await hub.cancel(s, job.id)
                    await hub.wait_job(s, job.id, lambda j: j.finished, timeout=60)
                assert not (job.outcome or "").startswith("failed"), job.outcome
                await hub.refresh(s)

            for step in steps:
                counter += 1
                drive = hub.drive(s, "drive0")
                images = drive.images
                kind = step[0]
                target = str(lab.dir / f"t{counter}.{'raw' if 'raw' in step else 'qcow2'}")
                try:
                    if kind == "write":
                        guest_write(step[1], step[2], step[3])
                    elif kind == "stream":
                        base = None if step[1] is None else images[step[1] % len(images)].node_name
                        await run_job(ops.plan_stream(drive, base, "64K", f"s{counter}"))
                    elif kind == "commit":
                        base = images[step[1] % len(images)].node_name
                        top = images[step[2] % len(images)].node_name
                        await run_job(ops.plan_commit(drive, base, top, "64K", f"c{counter}"), step[3])
                    elif kind == "mirror":
                        await run_job(ops.plan_mirror(drive, target, step[2], step[1], "1M", f"m{counter}"), step[3])
                    elif kind == "snapshot":
                        if len(images) >= 10:
                            continue
                        await hub.run_plan(ops.plan_snapshot(drive, target, f"n{counter}"))
                        await hub.refresh(s)
                    elif kind == "copy":
                        if len(images) >= 10 and step[1] == "stream":
                            continue
                        plan = ops.plan_copy(drive, target, step[1], "qcow2", "1M", f"y{counter}", f"y{counter}")
                        await run_job(plan, "cancel")
                    elif kind == "cancel-early":
                        plan = (
                            ops.plan_stream(drive, None, "16K", f"e{counter}")
                            if step[1] == "stream"
                            else ops.plan_mirror(drive, target, "qcow2", "full", "16K", f"e{counter}")
                        )
                        [job] = await hub.run_plan(plan)
                        guest_write((counter * 13) % BLOCKS, 1, 0x99)
                        await hub.cancel(s, job.id)
                        await hub.wait_job(s, job.id, lambda j: j.finished, timeout=60)
                        await hub.refresh(s)
                except ValidationError:
                    done.append(f"{kind}: refused")
                    continue
                done.append(kind)
                check_guest(uri, model, f"step {counter} {step}")
        finally:
            await hub.close()
            q.stop()
    return done


def _examples(config) -> int:
    return 100 if config.getoption("--nightly") else 10


@pytest.fixture
def examples(request) -> int:
    return _examples(request.config)


@pytest.mark.qemu
def test_random_sequences(tmp_path_factory, examples):
    seen: list[list[str]] = []

    @settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenario)
    def check(sc):
        n, extra, steps = sc
        root = tmp_path_factory.mktemp("seq")
        seen.append(asyncio.run(run_scenario(root, n, extra, steps)))

    check()
    assert len(seen) >= examples
    ran = [k for s in seen for k in s if not k.endswith("refused")]
    assert ran, "no operation ran at all"
