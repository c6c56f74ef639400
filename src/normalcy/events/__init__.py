"""Categorical events: a score per event made of entities (user, host, process, port ...), and
the pair of entities that fits least well together."""

from normalcy.events.ape import APE
from normalcy.events.data import EventEncoder, read_events
from normalcy.events.frequency import Frequency

__all__ = ["APE", "EventEncoder", "Frequency", "read_events"]
