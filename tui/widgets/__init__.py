from .chain_graph import ChainGraph
from .details_line import DetailsLine
from .drives import DrivesPanel
from .event_log import EventLog
from .image_tree import ImageTree
from .jobs import JobsPanel
from .tick_box import TickBox

__all__ = ["ChainGraph", "DetailsLine", "DrivesPanel", "EventLog", "ImageTree", "JobsPanel", "TickBox"]
