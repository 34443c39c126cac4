"""The QEMU side of chaintui: sessions, chains, jobs, operations, lab.

Nothing in this package imports Textual; it is usable (and tested) without a screen.
"""

from .block_graph import build_drives
from .chain import Drive, Image, chain_notation
from .errors import ChainTuiError, ConnectFailed, NotConnected, QMPCommandError, ValidationError
from .hub import DrivesChanged, Hub, JobsChanged, LogEntry, SessionChanged
from .job_tracker import JobTracker
from .jobs import Job
from .session import QemuSession, SessionState

__all__ = [
    "ChainTuiError", "ConnectFailed", "Drive", "DrivesChanged", "Hub", "Image", "Job", "JobTracker",
    "JobsChanged", "LogEntry", "NotConnected", "QMPCommandError", "QemuSession", "SessionChanged",
    "SessionState", "ValidationError", "build_drives", "chain_notation",
]
