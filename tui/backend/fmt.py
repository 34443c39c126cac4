"""Numbers as the operator reads and types them: sizes, speeds, clock times, durations."""

from __future__ import annotations

import re
import time

from .errors import ValidationError

MAX_SPEED = 1 << 50  # 1 PiB/s: anything above is a typo

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)?(?:/s)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def count(n: int, word: str, many: str | None = None) -> str:
    """``1 image``, ``2 images`` (``many``: an irregular plural)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def these(n: int, word: str) -> str:
    """``this image``, ``these 2 images``."""
    return f"this {word}" if n == 1 else f"these {count(n, word)}"


def parse_speed(text: str | int | None) -> int:
    """``""``/``0`` = unlimited; ``10M``, ``512K``, ``1.5G``, ``1048576`` (bytes/s)."""
    if text is None:
        return 0
    if isinstance(text, int):
        value = text
    else:
        raw = text.strip()
        if raw in ("", "0", "unlimited", "none"):
            return 0
        if raw.startswith("-"):
            raise ValidationError(f"Speed limit must not be negative: {raw!r}", "speed")
        m = _SIZE.match(raw)
        if not m:
            raise ValidationError(
                f"Speed limit {raw!r} is not a number of bytes per second (e.g. 10M, 512K, 0 = unlimited)",
                "speed",
            )
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value < 0:
        raise ValidationError(f"Speed limit must not be negative: {value}", "speed")
    if value > MAX_SPEED:
        raise ValidationError(f"Speed limit {text} is absurdly high (max 1P per second; 0 = unlimited)", "speed")
    return value


def human_size(n: float | int | None) -> str:
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def clock_text(when: float) -> str:
    """A wall-clock time of day, as the event log and the traffic view show it."""
    return time.strftime("%H:%M:%S", time.localtime(when))


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


