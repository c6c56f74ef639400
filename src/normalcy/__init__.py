"""normalcy: learn what normal looks like, then flag, localise and explain what departs from it."""

__version__ = "0.1.0"
