"""Errors raised by the QEMU side, each with a message fit for an operator."""

from __future__ import annotations


class ChainTuiError(Exception):
    """Base class: ``str(err)`` is a complete sentence for the operator."""


class ValidationError(ChainTuiError):
    """Bad input found before anything was sent to QEMU.

    ``field`` names the dialog field the problem belongs to (``target``,
    ``base``, ``speed``, ``format`` ...) so the UI can show it next to it.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class QMPCommandError(ChainTuiError):
    """QEMU refused a command: carries QEMU's error class and its own words."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"{command}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class NotConnected(ChainTuiError):
    """The QMP connection is down (QEMU gone, or reconnecting)."""


class ConnectFailed(ChainTuiError):
    """A QMP socket could not be reached or did not speak QMP."""


class NoMembers(ConnectFailed):
    """An address naming a group (every domain of a libvirt URI) has none now; one may start later."""
