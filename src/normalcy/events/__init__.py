"""Categorical events: a score per event made of entities (user, host, process, port ...), and
the pair of entities that fits least well together. Importing this package registers its
detectors (`normalcy.core.registry.detectors("events")`)."""

from normalcy.events.ape import APE
from normalcy.events.base import EventDetector
from normalcy.events.data import EventEncoder, read_events
from normalcy.events.frequency import Frequency

DEFAULT = "ape"

__all__ = ["APE", "DEFAULT", "EventDetector", "EventEncoder", "Frequency", "read_events"]
