from .chain_graph import ChainGraph
from .drives import DrivesPanel
from .event_log import EventLog
from .image_tree import ImageTree
from .jobs import JobsPanel

__all__ = ["ChainGraph", "DrivesPanel", "EventLog", "ImageTree", "JobsPanel"]
