"""Regular expressions that come from users or model files, matched within a time bound.

A log model carries regexes from outside normalcy: a custom header format, the `--group-by`
session pattern, custom masks, and the `--alert-regex` of an evaluation. A model file can be
written by anyone, and a pattern such as ``(a|aa)+$`` backtracks exponentially: one line
could hang a scorer or the server. So these patterns are

- refused when longer than MAX_PATTERN_CHARS or not valid (a DataError naming the pattern; a
  model file holding one is refused at load with a ModelFileError), and
- matched with the `regex` module's timeout: a match that runs past MATCH_TIMEOUT_S on one line
  stops with a DataError naming the pattern and the line, instead of running on.

normalcy's own patterns (the preset formats and default masks) are fixed and known to be
linear, and run on Python's `re`.
"""

from __future__ import annotations

import regex

from typing import Callable

from normalcy.core.errors import DataError

Where = str | Callable[[], str]  # what a match runs on, for errors: text, or made only when needed

MAX_PATTERN_CHARS = 1000
MATCH_TIMEOUT_S = 0.25


class Pattern:
    """A user-given regex (`what` says which, for errors) with time-bounded matching."""

    def __init__(self, pattern: str, what: str):
        if not isinstance(pattern, str):
            raise DataError(f"{what} must be a regular expression (text), got {type(pattern).__name__}")
        if len(pattern) > MAX_PATTERN_CHARS:
            raise DataError(f"{what} is {len(pattern)} characters long; at most {MAX_PATTERN_CHARS} are accepted")
        try:
            self._regex = regex.compile(pattern)
        except (regex.error, ValueError, OverflowError, RecursionError) as exc:
            raise DataError(f"{what} {pattern!r} is not a valid regex: {exc}") from None
        self.pattern = pattern
        self.what = what
        self.groupindex = self._regex.groupindex

    def match(self, text: str, where: Where = "a line"):
        return self._bounded(lambda: self._regex.match(text, timeout=MATCH_TIMEOUT_S), where)

    def search(self, text: str, where: Where = "a line"):
        return self._bounded(lambda: self._regex.search(text, timeout=MATCH_TIMEOUT_S), where)

    def findall(self, text: str, where: Where = "a line") -> list[str]:
        """Every whole match (group 0), in order."""
        return self._bounded(lambda: [m.group(0) for m in self._regex.finditer(text, timeout=MATCH_TIMEOUT_S)],
                             where)

    def sub(self, replacement: str, text: str, where: Where = "a token") -> str:
        return self._bounded(lambda: self._regex.sub(replacement, text, timeout=MATCH_TIMEOUT_S), where)

    def _bounded(self, run, where: Where):
        try:
            return run()
        except TimeoutError:
            where = where() if callable(where) else where
            raise DataError(f"{self.what} {self.pattern!r} ran over {MATCH_TIMEOUT_S:g} s on {where}: it backtracks "
                            "too much (e.g. a nested quantifier such as (a+)+ or (a|aa)+); simplify it") from None
