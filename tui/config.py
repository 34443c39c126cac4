"""``~/.config/chaintui/config.toml``: named QMP endpoints opened by a bare ``chaintui``,
and the directories of images the image graph reads besides the chains' own.

    image_dirs = ["/var/lib/libvirt/images"]   # optional; top level, before any [[endpoint]]

    [[endpoint]]
    name = "vm1"                       # optional: how the drives panel calls it
    address = "/run/qemu/vm1.qmp"      # unix path, host:port, or ssh://[user@]host/path

    [keymap]                           # optional: binding id (tui/keys.py) -> keys
    mirror = "M"
    cancel-job = "X,ctrl+x"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Endpoint:
    address: str
    name: str | None = None


class ConfigError(Exception):
    pass


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "chaintui" / "config.toml"


def _read(path: Path) -> dict:  # type: ignore[type-arg]
    """The parsed file ({} when there is none); ConfigError when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def load_endpoints(path: Path | None = None) -> list[Endpoint]:
    path = path or config_path()
    data = _read(path)
    out = []
    for i, entry in enumerate(data.get("endpoint", [])):
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str) or not entry["address"].strip():
            raise ConfigError(f"{path}: endpoint {i + 1} needs an address")
        name = entry.get("name")
        out.append(Endpoint(entry["address"].strip(), str(name) if name else None))
    return out


def load_image_dirs(path: Path | None = None) -> list[str]:
    """``image_dirs = ["/var/lib/libvirt/images"]``: directories the on-disk scan also reads."""
    path = path or config_path()
    dirs = _read(path).get("image_dirs", [])
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{path}: image_dirs must be a list of directory names")
    return [os.path.expanduser(d) for d in dirs if d.strip()]


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """``[keymap]``: binding id -> keys (comma-separated), applied with ``App.set_keymap``."""
    path = path or config_path()
    table = _read(path).get("keymap", {})
    if not isinstance(table, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in table.items()):
        raise ConfigError(f"{path}: [keymap] maps binding ids to keys, e.g. mirror = \"M\"")
    return {k: v.strip() for k, v in table.items() if v.strip()}
