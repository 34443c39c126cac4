"""Domains defined on a libvirt connection but not opened in chaintui, as users of images.

A domain that is shut off has no drive anywhere, yet a commit into an image of its chain
changes what it sees, and deleting an image of its chain breaks it.  Against a real
libvirtd (the fixtures of test_libvirt.py; images under /var/tmp) with TCG domains with no
OS: one runs and is opened in chaintui, others are defined and shut off, one runs but is
not opened.  Domain names are unique per test (other test runs share the libvirtd).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tui.backend.audit import AuditLog
from tui.backend.backend import ImageUser
from tui.backend.disk_scan import DiskImage
from tui.backend.errors import ValidationError
from tui.backend.image_graph import ImageGraph, describe_dependents, image_key, shared_with_others
from tui.backend.lab import run as sh
from tui.backend.libvirt_demo import domain_xml
from tui.backend.libvirt_users import domain_disks
from tui.backend.deletion import Candidate
from tui.backend.usage import Usage
from tui.screens.graph import GraphScreen
from tui.widgets.image_tree import ImageTree

from .conftest import MiB, wait_for
from .test_libvirt import libvirtd, open_hub, run, same, start, stop, vlab  # noqa: F401 - fixtures
from .libvirt_lab import URI, virsh
from .uihelp import dialog, press, problem, running_app, until


def define_off(lab, disk: Path, tag: str) -> str:
    """A persistent domain on ``disk``, defined and never started (shut off); removed with the lab's."""
    name = f"{lab.domains.prefix}-{tag}"
    xml = disk.parent / f"{name}.xml"
    xml.write_text(domain_xml(name, [str(disk)]))
    virsh("define", str(xml))
    lab.domains.names.append(name)
    return name


def overlay(path: Path, backing: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(backing), "-F", "qcow2", str(path)])
    return path


def differs(lab, a, b) -> None:
    ok, _ = lab.compare(a, b)
    assert not ok, f"{a} is still the same as {b}"


# -- units: the domain XML and the graph, no libvirtd --------------------------
def test_domain_xml_disks_and_backing_store():
    xml = """<domain><name>vm9</name><devices>
      <disk type='file' device='disk'><source file='/img/top.qcow2' index='2'/>
        <backingStore type='file' index='1'><format type='qcow2'/><source file='/img/base.qcow2'/>
          <backingStore/></backingStore><target dev='vda'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc'/><readonly/></disk>
      <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/><target dev='vdb'/></disk>
      <disk type='block' device='disk'><source dev='/dev/vg/lv'/><target dev='vdc'/><readonly/></disk>
    </devices></domain>"""
    users = domain_disks("vm9", "shut off", xml, "qemu:///system")
    assert [(u.disk, u.chain, u.read_only) for u in users] == [
        ("vda", (os.path.realpath("/img/top.qcow2"), os.path.realpath("/img/base.qcow2")), False),
        ("vdc", (os.path.realpath("/dev/vg/lv"),), True),
    ]
    assert users[0].text == "vm9 (shut off) vda" and users[0].address == "qemu:///system#vm9" and users[0].local
    assert not domain_disks("vm9", "running", xml, "qemu+ssh://h/system")[0].local


def test_graph_counts_a_domain_on_the_base_and_one_backing_onto_it():
    disk = {
        "/i/base": DiskImage("/i/base", "qcow2", 1 << 30, 1, None),
        "/i/mid": DiskImage("/i/mid", "qcow2", 1 << 30, 1, "/i/base"),
    }
    off = ImageUser("off", "shut off", "vda", ("/i/base",), "qemu:///system#off")
    far = ImageUser("far", "shut off", "vdb", ("/x/far", "/i/mid"), "qemu:///system#far")  # XML's backingStore
    g = ImageGraph.build([], [], disk, [off, far])
    assert g.describe("/i/base") == "off (shut off) vda"
    assert g.nodes["/x/far"].backing == "/i/mid" and "/x/far" in g.nodes["/i/mid"].children
    assert g.describe("/i/mid") == "far (shut off) vdb (backing chain)"
    assert g.nodes["/i/base"].in_use and g.roots == ["/i/base"]


# -- a real libvirtd ---------------------------------------------------------
async def test_shut_off_domain_on_the_base_refuses_commit_until_override(vlab, tmp_path):
    """Running domain on A<-B<-C<-D; shut-off domain 'off' has A itself as its disk, 'far' an
    overlay of B in a directory no chain lives in.  Commit into A: refused naming both (shut
    off); with the override it goes through, audited first; A then differs from its copy."""
    name, (paths,), (ref,) = start(vlab)
    a, b = paths[0], paths[1]
    a_before = vlab.flatten(a)
    far_disk = overlay(vlab.dir / "elsewhere" / "far.qcow2", b)
    off = define_off(vlab, a, "off")
    far = define_off(vlab, far_disk, "far")
    hub, s = await open_hub(name)
    hub.audit = AuditLog(tmp_path / "audit.jsonl")
    try:
        usage = Usage(hub)
        result = await usage.scan()
        assert str(far_disk.parent) in result.directories  # the domain's directory is read too
        graph = usage.graph()
        assert name not in {u.name for u in usage.other_users()}  # shown live: not counted twice
        key_a = str(a.resolve())
        assert f"{off} (shut off) vda" in graph.describe(key_a)
        assert str(far_disk) in graph.nodes[str(b.resolve())].children

        d = hub.drive(s, "vda")
        shared = describe_dependents(graph, shared_with_others(graph, d, image_key(s, d.images[0])))
        planner = hub.planner(d)
        with pytest.raises(ValidationError) as err:
            planner.plan_commit(d, "A.qcow2", "B.qcow2", "", hub.new_job_id("commit", d), shared=shared)
        assert err.value.field == "override"
        assert f"{off} (shut off) vda" in err.value.message and f"{far} (shut off) vda" in err.value.message
        assert not list(hub.audit.read())  # nothing sent

        plan = planner.plan_commit(d, "A.qcow2", "B.qcow2", "", hub.new_job_id("commit", d), shared=shared,
                                   override=True)
        job = await run(hub, s, plan)
        assert job.outcome == "completed", job.outcome
        first, second = hub.audit.read()
        assert first["command"] == "override-shared-image-refusal"
        assert any(f"{off} (shut off) vda" in i for i in first["arguments"]["images"])
        assert second["command"] == "blockCommit" and second["ok"]
        # B left the chain, but 'far' still backs onto it: cleanup refuses it, naming the domain
        await wait_for(lambda: str(b.resolve()) in usage.leftovers, what="B left over")
        [cand] = await usage.check([c for c in usage.candidates() if c.path == str(b.resolve())])
        assert any(f"domain {far} (shut off) vda (through far.qcow2)" in r for r in cand.reasons), cand.reasons
    finally:
        await hub.close()
    stop(name)
    same(vlab, paths[-1], ref)  # the running domain sees what it saw
    differs(vlab, a, a_before)  # the shut-off domain would not: that is what the override accepted


async def test_image_graph_shows_shut_off_and_unopened_domains(vlab):
    name, (paths,), _ = start(vlab)
    off = define_off(vlab, overlay(vlab.dir / "idle" / "off.qcow2", paths[1]), "off")
    other, (other_paths,), _ = start(vlab)  # running, not opened in chaintui
    async with running_app([f"{URI}#{name}"], size=(140, 40)) as (app, pilot):
        await press(pilot, "g")
        screen = await until(pilot, lambda: isinstance(app.screen, GraphScreen) and app.screen, what="graph")
        tree = screen.query_one("#image-tree", ImageTree)
        off_key = str((vlab.dir / "idle" / "off.qcow2").resolve())
        await until(pilot, lambda: tree.graph.nodes.get(off_key) and tree.graph.nodes[off_key].others,
                    what="the shut-off domain in the graph")
        row = next(i for i, r in enumerate(tree.rows) if r.key == off_key)
        assert f"{off} (shut off) vda" in "".join(s.text for s in tree._render_row(row, 140))
        assert tree.graph.nodes[off_key].backing == str(paths[1].resolve())
        top = str(other_paths[-1].resolve())
        assert tree.graph.describe(top) == f"{other} (running) vda"
        assert all(u.name != name for n in tree.graph.nodes.values() for u in (o.user for o in n.others))
        tree.select_key(off_key)
        await until(pilot, lambda: f"{off} (shut off) vda" in str(screen.query_one("#graph-details").render()),
                    what="details")
        # the commit dialog reads the domains again and refuses the base 'off' backs onto
        await press(pilot, "escape")
        await until(pilot, lambda: app.screen is app.main_screen, what="back")
        await press(pilot, "home", "c")
        dlg = await dialog(pilot, app)
        await until(pilot, lambda: f"{off} (shut off) vda" in problem(dlg, "override"),
                    what="the refusal naming the shut-off domain")
        assert dlg.plan is None and dlg.query_one("#confirm").disabled
    stop(name)
    stop(other)


async def test_cleanup_refuses_an_image_a_shut_off_domain_uses(vlab):
    name, (paths,), _ = start(vlab)
    lone = vlab.make_chain(1, 16 * MiB, names=["lone"], absolute=True, subdir="lone")[0]
    hub, s = await open_hub(name)
    try:
        usage = Usage(hub)
        off = define_off(vlab, lone, "off")
        [c] = await usage.check([Candidate(str(lone.resolve()), "test")])
        assert any(f"domain {off} (shut off) vda" in r for r in c.reasons), c.reasons
        deleted, refused = await usage.delete([c])
        assert not deleted and refused and lone.exists()
        out = subprocess.run([sys.executable, "-m", "tui", "users", str(lone), f"{URI}#{name}"], capture_output=True,
                             text=True, timeout=60, env=dict(os.environ, XDG_STATE_HOME=str(vlab.dir / "state")))
        assert f"domain {off} (shut off) vda ({URI}#{off}): its disk" in out.stdout, out.stdout + out.stderr
        virsh("undefine", off)
        [c] = await usage.check([Candidate(str(lone.resolve()), "test")])
        assert c.deletable, c.reasons  # the domain was the reason
    finally:
        await hub.close()
    stop(name)
