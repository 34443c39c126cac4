"""Domains come and go while chaintui watches a libvirt URI: the screen follows, with no key pressed.

A domain started after the URI was opened appears; a domain that stops says so (not "lost,
retrying"), its running job ends as lost (never as finished), keys on it send nothing and say
why; when it starts again its chains come back and jobs run on it again.  The guest's data is
compared with ``qemu-img compare`` against a copy made before.
"""

from __future__ import annotations

from tui.backend.session import SessionState
from tui.widgets import JobsPanel

from .libvirt_lab import URI, virsh
from .test_libvirt import libvirtd, same, start, stop, vlab  # noqa: F401 - fixtures
from .uihelp import main, press, running_app, until


def option_text(app, option_id: str) -> str:
    """What the drives panel shows on one line (a QEMU's header: ``session\x1fNAME``; a drive: ``NAME\x1fDISK``)."""
    drives = main(app).query_one("#drives")
    for i in range(drives.option_count):
        option = drives.get_option_at_index(i)
        if option.id == option_id:
            return str(option.prompt)
    return ""


def session_line(app, session: str) -> str:
    return option_text(app, f"session\x1f{session}")


async def test_domains_started_and_stopped_while_watched(vlab, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(vlab.dir / "state"))
    a, (a_chain,), (a_ref,) = start(vlab, persistent=True)
    async with running_app([URI], size=(140, 45)) as (app, pilot):
        hub = app.hub
        await until(pilot, lambda: [d.name for d in hub.drives.get(a, [])] == ["vda"], what="the first domain")

        b, (b_chain,), (b_ref,) = start(vlab)  # started after the URI was opened
        await until(pilot, lambda: [d.name for d in hub.drives.get(b, [])] == ["vda"], what="the later domain")
        assert hub.sessions[b].address_text == f"{URI}#{b}"
        await until(pilot, lambda: any(f"{URI}#{b} started" in e.text for e in hub.log), what="said in the log")

        d = hub.drive(a, "vda")
        (job,) = await hub.run_plan(hub.planner(d).plan_stream(d, None, "64K", hub.new_job_id("stream", d)))
        await until(pilot, lambda: job.running and job.offset > 0, what="the stream moving")
        virsh("destroy", a)
        await until(pilot, lambda: hub.sessions[a].state is SessionState.STOPPED, what="the domain stopped")
        await until(pilot, lambda: job.finished, what="its job ended")
        assert job.result == "lost" and "was destroyed" in job.outcome and not job.succeeded
        jobs = main(app).query_one(JobsPanel)
        await until(pilot, lambda: "LOST" in jobs.text_of(job), what="the card says LOST")
        assert "100%" not in jobs.text_of(job)
        await until(pilot, lambda: "stopped" in session_line(app, a), what="the drives panel says stopped")
        assert hub.drive(a, "vda").jobs == [] and "⚙" not in option_text(app, f"{a}\x1fvda")  # no job holds it
        assert "retry" not in session_line(app, a) and "stopped: was destroyed" in session_line(app, a)

        # a key on the stopped domain's drive sends nothing and says why
        main(app).query_one("#drives").selected = (a, "vda")
        log_before = len(hub.log)
        await press(pilot, "s")
        await until(pilot, lambda: any(f"{a} is not connected (domain {a} was destroyed): nothing was sent" == m
                                       for m, _ in app.notices), what="the key says why")
        assert not any(e.kind == "action" for e in list(hub.log)[log_before:])

        stale = hub.drive(a, "vda")
        virsh("start", a)  # persistent: the same domain starts again
        await until(pilot, lambda: hub.sessions[a].state is SessionState.CONNECTED, what="the domain back")
        await until(pilot, lambda: "stopped" not in session_line(app, a), what="the panel says so")
        await until(pilot, lambda: hub.drive(a, "vda") is not stale, what="its chains read again")
        d = hub.drive(a, "vda")
        assert [i.label for i in d.images] == [p.name for p in a_chain]
        (again,) = await hub.run_plan(hub.planner(d).plan_stream(d, None, "", hub.new_job_id("stream", d)))
        await until(pilot, lambda: again.finished, timeout=60, what="a stream after the restart")
        assert again.outcome == "completed"
    stop(a)
    stop(b)
    same(vlab, a_chain[-1], a_ref)  # stopped mid-stream, then flattened: what the guest sees is unchanged
    same(vlab, b_chain[-1], b_ref)


async def test_a_uri_with_no_domain_running_waits_for_one(vlab, monkeypatch):
    """chaintui opened on a URI before any domain runs: it says it waits (not a connection error),
    and the first domain that starts is shown with no key pressed."""
    monkeypatch.setenv("XDG_STATE_HOME", str(vlab.dir / "state"))
    async with running_app([URI], size=(120, 40), wait_for_drive=False) as (app, pilot):
        hub = app.hub
        await until(pilot, lambda: any(f"{URI}: no running domains: waiting" in e.text for e in hub.log),
                    what="the wait said in the log")
        assert not any(e.kind == "error" for e in hub.log)
        assert not any(severity == "error" for _, severity in app.notices)
        a, (a_chain,), (a_ref,) = start(vlab)
        await until(pilot, lambda: [d.name for d in hub.drives.get(a, [])] == ["vda"], what="the domain shown")
        assert hub.sessions[a].address_text == f"{URI}#{a}"
    stop(a)
    same(vlab, a_chain[-1], a_ref)
