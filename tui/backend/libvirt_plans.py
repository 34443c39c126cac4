"""Operations and job control on a libvirt domain: every libvirt call chaintui makes is built here.

A plan is first checked as the QMP plan would be (:mod:`tui.backend.ops`: chain
positions, busy layers, target paths, space), then its steps are built as libvirt
calls from what it decided (:class:`~tui.backend.plan.Choice`, never from the QMP
arguments); each step's preview says the call and the equivalent ``virsh`` line,
and the ``virsh`` line goes into the audit trail with the call's arguments.
What libvirt cannot do is refused here, before anything is sent.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from . import ops
from .chain import Drive
from .errors import ValidationError
from .jobs import Job
from .plan import Choice, Plan, Step

if TYPE_CHECKING:
    from .libvirt_session import LibvirtSession

NO_PAUSE = ("libvirt has no API to pause or resume a block job: lower the speed limit (- or a smaller number) "
            "to slow it down, or cancel it")
NO_SWITCH = ("libvirt sets a mirror's copy mode only when it starts (blockCopy with SYNCHRONOUS_WRITES): cancel and "
             "start the mirror again with copy mode write-blocking")
ONE_JOB = "libvirt runs one block job per disk: {disk} is busy with job {job}; wait for it to end or cancel it first"


def _flags_text(flags: list[str]) -> str:
    return "|".join(f.removeprefix("VIR_") for f in flags) or "0"


class _Calls:
    """Builds the steps of one domain: the libvirt call, its preview and its virsh line."""

    def __init__(self, session: LibvirtSession) -> None:
        self.session = session

    def _virsh(self, *words: str) -> str:
        uri = self.session.uri
        head = ["virsh"] + (["-c", uri] if uri else [])
        return " ".join(shlex.quote(w) for w in head + list(words))

    def step(self, call: str, arguments: dict[str, Any], virsh: list[str], **kw: Any) -> Step:
        shown = ", ".join(
            _flags_text(v) if k == "flags" else repr(v) for k, v in arguments.items() if k not in ("job-id",)
        )
        line = self._virsh(*virsh)
        args = dict(arguments)
        args["virsh"] = line
        text = f"libvirt dom.{call}({shown})\nvirsh {line}"
        return Step(call, args, text=text, **kw)

    def _check_idle(self, drive: Drive) -> None:
        if drive.jobs:
            raise ValidationError(ONE_JOB.format(disk=drive.name, job=drive.jobs[0]), "base")

    # -- operations ----------------------------------------------------
    def pull(self, drive: Drive, base: str | None, bandwidth: int, job_id: str) -> Step:
        dom = self.session.domain
        bw = ["--bandwidth", str(bandwidth), "--bytes"] if bandwidth else []
        if base:
            flags = ["VIR_DOMAIN_BLOCK_REBASE_BANDWIDTH_BYTES"] if bandwidth else []
            return self.step("blockRebase", {"job-id": job_id, "disk": drive.name, "base": base, "bandwidth": bandwidth,
                                             "flags": flags},
                             ["blockpull", dom, drive.name, "--base", base, *bw],
                             starts_job=job_id, job_type="stream")
        flags = ["VIR_DOMAIN_BLOCK_PULL_BANDWIDTH_BYTES"] if bandwidth else []
        return self.step("blockPull", {"job-id": job_id, "disk": drive.name, "bandwidth": bandwidth, "flags": flags},
                         ["blockpull", dom, drive.name, *bw], starts_job=job_id, job_type="stream")


class LibvirtPlanner(_Calls):
    """Implements :class:`~tui.backend.backend.Planner` with libvirt's block-job API."""

    def plan_stream(self, drive: Drive, base: str | None, speed: Any, job_id: str,
                    shared: list[str] | None = None) -> Plan:
        self._check_idle(drive)
        plan = ops.plan_stream(drive, base, speed, job_id, shared=shared)
        plan.steps = [self.pull(drive, plan.choice.base, plan.choice.speed, job_id)]
        return plan

    def plan_commit(self, drive: Drive, base: str, top: str | None, speed: Any, job_id: str,
                    shared: list[str] | None = None, override: bool = False) -> Plan:
        self._check_idle(drive)
        plan = ops.plan_commit(drive, base, top, speed, job_id, shared=shared, override=override)
        bandwidth, top_node, base_node = plan.choice.speed, plan.choice.top, plan.choice.base
        assert base_node is not None  # a commit always has a base
        # no RELATIVE: libvirt refuses it for chains recorded with absolute names, and cannot tell beforehand
        flags = [] if top_node else ["VIR_DOMAIN_BLOCK_COMMIT_ACTIVE"]
        if bandwidth:
            flags.append("VIR_DOMAIN_BLOCK_COMMIT_BANDWIDTH_BYTES")
        virsh = ["blockcommit", self.session.domain, drive.name, "--base", base_node]
        virsh += ["--top", top_node] if top_node else ["--active"]
        if bandwidth:
            virsh += ["--bandwidth", str(bandwidth), "--bytes"]
        plan.steps = [self.step(
            "blockCommit",
            {"job-id": job_id, "disk": drive.name, "base": base_node, "top": top_node, "bandwidth": bandwidth,
             "flags": flags},
            virsh, starts_job=job_id, job_type="commit", ends_ready=not top_node)]
        return plan

    def plan_mirror(self, drive: Drive, target: str, fmt: str, sync: str, speed: Any, job_id: str,
                    mode: str = "absolute-paths", copy_mode: str | None = None,
                    on_target_error: str | None = None, in_use: dict[str, str] | None = None) -> Plan:
        if on_target_error:
            raise ValidationError("libvirt's blockCopy has no on-target-error setting: leave it empty", "on_error")
        self._check_idle(drive)
        plan = ops.plan_mirror(drive, target, fmt, sync, speed, job_id, mode=mode, copy_mode=copy_mode,
                               in_use=in_use, here=self.session.local)
        plan.steps = [self.copy_step(drive, plan.choice, job_id)]
        return plan

    def copy_step(self, drive: Drive, choice: Choice, job_id: str) -> Step:
        bandwidth, target, fmt = choice.speed, choice.target or "", choice.fmt or "qcow2"
        flags, virsh = [], ["blockcopy", self.session.domain, drive.name, "--dest", target, "--format", fmt]
        if choice.sync == "top":
            flags.append("VIR_DOMAIN_BLOCK_COPY_SHALLOW")
            virsh.append("--shallow")
        if choice.mode == "existing":
            flags.append("VIR_DOMAIN_BLOCK_COPY_REUSE_EXT")
            virsh.append("--reuse-external")
        if choice.copy_mode == "write-blocking":
            flags.append("VIR_DOMAIN_BLOCK_COPY_SYNCHRONOUS_WRITES")
            virsh.append("--synchronous-writes")
        if self.session.persistent:
            flags.append("VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB")
            virsh.append("--transient-job")
        params: dict[str, Any] = {}
        if bandwidth:
            params["bandwidth"] = bandwidth
            virsh += ["--bandwidth", str(bandwidth), "--bytes"]
        xml = f"<disk type='file'><source file={quoteattr(target)}/><driver type={quoteattr(fmt)}/></disk>"
        return self.step("blockCopy", {"job-id": job_id, "disk": drive.name, "destxml": xml, "params": params,
                                       "flags": flags},
                         virsh, starts_job=job_id, job_type="mirror", ends_ready=True,
                         creates_target="VIR_DOMAIN_BLOCK_COPY_REUSE_EXT" not in flags)

    def snapshot_step(self, drive: Drive, target: str) -> Step:
        disks = "".join(
            f"<disk name={quoteattr(d)} snapshot='external'><source file={quoteattr(target)}/></disk>"
            if d == drive.name else f"<disk name={quoteattr(d)} snapshot='no'/>"
            for d in (self.session.disks or [drive.name])
        )
        xml = f"<domainsnapshot><disks>{disks}</disks></domainsnapshot>"
        flags = ["VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY", "VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC",
                 "VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA"]
        virsh = ["snapshot-create-as", self.session.domain, "--disk-only", "--atomic", "--no-metadata",
                 "--diskspec", f"{drive.name},snapshot=external,file={target}"]
        virsh += [w for d in self.session.disks if d != drive.name for w in ("--diskspec", f"{d},snapshot=no")]
        return self.step("snapshotCreateXML", {"xmlDesc": xml, "flags": flags}, virsh,
                         changes_chain=True)

    def plan_snapshot(self, drive: Drive, target: str, node_name: str, fmt: str = "qcow2",
                      in_use: dict[str, str] | None = None) -> Plan:
        self._check_idle(drive)
        plan = ops.plan_snapshot(drive, target, node_name, fmt, in_use=in_use, here=self.session.local)
        plan.steps = [self.snapshot_step(drive, plan.target or target)]
        return plan

    def plan_copy(self, drive: Drive, target: str, method: str, fmt: str, speed: Any, job_id: str,
                  node_name: str, in_use: dict[str, str] | None = None) -> Plan:
        self._check_idle(drive)
        plan = ops.plan_copy(drive, target, method, fmt, speed, job_id, node_name, in_use=in_use,
                             here=self.session.local)
        if plan.choice.method == "mirror":
            plan.steps = [self.copy_step(drive, plan.choice, job_id)]
            return plan
        pull = self.pull(drive, None, plan.choice.speed, job_id)
        plan.steps = [self.snapshot_step(drive, plan.target or target), pull]
        return plan


class LibvirtControl(_Calls):
    """Implements :class:`~tui.backend.backend.JobControl`: blockJobAbort and blockJobSetSpeed."""

    def _disk(self, job: Job) -> str:
        if not job.drive:
            raise ValidationError(f"Job {job.id}: which disk it runs on is not known yet; try again", "job")
        return job.drive

    def cancel(self, job: Job, force: bool) -> Step:
        disk = self._disk(job)
        return self.step("blockJobAbort", {"disk": disk, "flags": ["VIR_DOMAIN_BLOCK_JOB_ABORT_ASYNC"]},
                         ["blockjob", self.session.domain, disk, "--abort", "--async"])

    def complete(self, job: Job) -> Step:
        disk = self._disk(job)
        return self.step("blockJobAbort", {"disk": disk, "flags": ["VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT"]},
                         ["blockjob", self.session.domain, disk, "--pivot"])

    def pause(self, job: Job) -> Step:
        raise ValidationError(NO_PAUSE, "job")

    def resume(self, job: Job) -> Step:
        raise ValidationError(NO_PAUSE, "job")

    def set_speed(self, job: Job, speed: int) -> Step:
        disk = self._disk(job)
        return self.step("blockJobSetSpeed", {"disk": disk, "bandwidth": int(speed),
                                              "flags": ["VIR_DOMAIN_BLOCK_JOB_SPEED_BANDWIDTH_BYTES"]},
                         ["blockjob", self.session.domain, disk, "--bandwidth", str(int(speed)), "--bytes"])

    def write_blocking(self, job: Job) -> Step:
        raise ValidationError(NO_SWITCH if job.type == "mirror" else
                              f"Job {job.id} is a {job.type} job: only a mirror has a copy mode", "job")

    def dismiss(self, job: Job) -> Step | None:
        return None
