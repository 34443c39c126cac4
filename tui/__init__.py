"""chaintui: a terminal UI for live QEMU backing-chain operations."""

__version__ = "0.1.0"
