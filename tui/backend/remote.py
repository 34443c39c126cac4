"""QMP sockets on other machines, reached through OpenSSH's unix-socket forwarding.

``ssh://[user@]host[:port]/path/to/qmp.sock`` starts ``ssh -N -L LOCAL:REMOTE``
(the ``ssh`` client itself, from an argument list) and connects to the local
end.  ``CHAINTUI_SSH_CONFIG`` names an ssh config file to use (``ssh -F``);
otherwise ``~/.ssh/config`` applies as usual.  The tunnel is restarted when it
dies, and stopped with the session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from .errors import ConnectFailed


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int | None
    path: str

    @property
    def text(self) -> str:
        who = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"ssh://{who}{self.host}{port}{self.path}"


def parse_ssh(url: str) -> SshTarget | None:
    if not url.startswith("ssh://"):
        return None
    u = urlparse(url)
    if not u.hostname or not u.path or u.path == "/":
        raise ConnectFailed(f"{url}: expected ssh://[user@]host[:port]/path/to/qmp.sock")
    return SshTarget(unquote(u.username) if u.username else None, u.hostname, u.port, unquote(u.path))


class SshTunnel:
    def __init__(self, target: SshTarget) -> None:
        self.target = target
        self._dir = tempfile.mkdtemp(prefix="chaintui-ssh-")
        self.local = os.path.join(self._dir, "qmp.sock")
        self.proc: asyncio.subprocess.Process | None = None

    def args(self) -> list[str]:
        t = self.target
        args = ["ssh", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "StreamLocalBindUnlink=yes",
                "-o", "BatchMode=yes", "-o", "ServerAliveInterval=10"]
        config = os.environ.get("CHAINTUI_SSH_CONFIG")
        if config:
            args += ["-F", config]
        if t.port:
            args += ["-p", str(t.port)]
        args += ["-L", f"{self.local}:{t.path}"]
        args.append(f"{t.user}@{t.host}" if t.user else t.host)
        return args

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def ensure(self, timeout: float = 15.0) -> str:
        """Start the tunnel if it is not running; returns the local socket path."""
        if self.alive and os.path.exists(self.local):
            return self.local
        await self.stop(keep_dir=True)
        if shutil.which("ssh") is None:
            raise ConnectFailed(f"{self.target.text}: no ssh client (apt-get install openssh-client)")
        self.proc = await asyncio.create_subprocess_exec(
            *self.args(), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not os.path.exists(self.local):
            if self.proc.returncode is not None or loop.time() > deadline:
                err = b""
                if self.proc.returncode is not None and self.proc.stderr is not None:
                    err = await self.proc.stderr.read()
                await self.stop(keep_dir=True)
                why = err.decode(errors="replace").strip().splitlines()
                raise ConnectFailed(f"{self.target.text}: ssh failed: {why[-1] if why else 'timed out'}")
            await asyncio.sleep(0.02)
        return self.local

    async def stop(self, keep_dir: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
        if not keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
