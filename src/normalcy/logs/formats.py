"""Reading raw log lines and splitting each into header fields and content.

Reading is defensive, because a log file that is half binary or has one broken line must not
lose the rest of the file:

- a missing, empty or binary file (NUL bytes in its first 8 KiB) is refused with a DataError
  that names it;
- bytes that are not UTF-8 are replaced by U+FFFD and the line is kept;
- a line longer than `max_line_bytes` (64 KiB by default) is cut to that length and kept;
- a line holding NUL bytes after the first 8 KiB is skipped;
- a line that does not match the header format is kept, with the whole line as its content
  and no time, level or component.

Each of these is counted in `ReadStats`, which the CLI prints as one line on stderr.

Header formats are named regular expressions with the groups ``time``, ``level``,
``component`` and ``content`` (any may be absent); `FORMATS` holds presets for loghub's
layouts, and a custom one can be given as a regex with those group names.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from normalcy.core.errors import DataError

MAX_LINE_BYTES = 65536
_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class LogFormat:
    """A header layout: a regex with named groups, and how its `time` group reads."""

    name: str
    pattern: str
    # strptime format of the `time` group; "epoch" for seconds since 1970; None: no time.
    time_format: str | None = None

    def __post_init__(self):
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise DataError(f"log format {self.name!r}: not a valid regex: {exc}") from None
        if "content" not in regex.groupindex:
            raise DataError(f"log format {self.name!r} needs a named group (?P<content>...)")
        object.__setattr__(self, "_regex", regex)

    def parse(self, line: str) -> tuple[float | None, str, str, str, bool]:
        """(time, level, component, content, matched) of one line."""
        m = self._regex.match(line)
        if m is None:
            return None, "", "", line, False
        groups = m.groupdict()
        return (_parse_time(groups.get("time"), self.time_format), groups.get("level") or "",
                groups.get("component") or "", groups.get("content") or "", True)


FORMATS: dict[str, LogFormat] = {f.name: f for f in (
    LogFormat("raw", r"(?P<content>.*)"),
    # loghub HDFS: 081109 203615 148 INFO dfs.DataNode$PacketResponder: content
    LogFormat("hdfs", r"(?P<time>\d{6} \d{6}) +\d+ +(?P<level>\w+) +(?P<component>[^ ]+?): (?P<content>.*)",
              "%y%m%d %H%M%S"),
    # loghub BGL: label epoch date node datetime node type component level content
    LogFormat("bgl", r"[^ ]+ (?P<time>\d+) [^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+ (?P<component>[^ ]+) (?P<level>[^ ]+) ?"
                     r"(?P<content>.*)", "epoch"),
    # syslog (loghub OpenSSH, Linux): Dec 10 06:55:46 host component[pid]: content; no year in the
    # stamp, so times are read in the year 1900 (only differences matter for windows).
    LogFormat("syslog", r"(?P<time>\w{3} +\d+ \d\d:\d\d:\d\d) [^ ]+ (?P<component>[^:\[ ]+)(?:\[\d+\])?: "
                        r"(?P<content>.*)", "%b %d %H:%M:%S"),
)}
FORMATS["openssh"] = FORMATS["linux"] = FORMATS["syslog"]


def get_format(spec: str) -> LogFormat:
    """A preset name (raw, hdfs, bgl, syslog, openssh, linux) or a regex with (?P<content>...)."""
    if spec in FORMATS:
        return FORMATS[spec]
    if "(?P<content>" not in spec:
        raise DataError(f"unknown log format {spec!r}; expected one of {', '.join(sorted(FORMATS))} "
                        "or a regex with the named group (?P<content>...)")
    return LogFormat("custom", spec, "epoch" if "(?P<time>" in spec else None)


@dataclass
class ReadStats:
    lines: int = 0
    replaced: int = 0     # lines with bytes that are not UTF-8 (replaced by U+FFFD)
    truncated: int = 0    # lines cut to max_line_bytes
    skipped_binary: int = 0
    unmatched: int = 0    # lines the header format did not match (whole line taken as content)
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.lines} lines read from {len(self.sources)} source(s)"]
        for count, what in ((self.replaced, "had bytes that are not UTF-8 (replaced by U+FFFD)"),
                            (self.truncated, f"were longer than {MAX_LINE_BYTES} bytes (truncated)"),
                            (self.skipped_binary, "held NUL bytes (skipped)"),
                            (self.unmatched, "did not match the header format (whole line used as content)")):
            if count:
                parts.append(f"{count} {what}")
        return "; ".join(parts)


@dataclass
class LogRecords:
    """Parsed lines, column-wise: `source` and `line_no` say where each came from."""

    times: list[float | None] = field(default_factory=list)
    levels: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)
    contents: list[str] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)
    line_no: list[int] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    stats: ReadStats = field(default_factory=ReadStats)

    def __len__(self) -> int:
        return len(self.contents)


def read_logs(paths: Iterable[str | Path], fmt: LogFormat, max_line_bytes: int = MAX_LINE_BYTES) -> LogRecords:
    """Read and split every line of the files (``-`` = stdin) in order."""
    records = LogRecords()
    for path in paths:
        name = str(path)
        records.stats.sources.append(name)
        for line_no, text in iter_lines(path, records.stats, max_line_bytes):
            time, level, component, content, matched = fmt.parse(text)
            records.stats.unmatched += not matched
            records.times.append(time)
            records.levels.append(level)
            records.components.append(component)
            records.contents.append(content)
            records.raw.append(text)
            records.line_no.append(line_no)
            records.source.append(name)
    if not records.contents:
        raise DataError(f"no log lines in {', '.join(records.stats.sources) or '(no input)'}")
    return records


def records_from_lines(lines: Iterable[str], fmt: LogFormat, name: str = "<lines>") -> LogRecords:
    """Records from lines already in memory (tests, the Python API)."""
    records = LogRecords()
    records.stats.sources.append(name)
    for i, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        time, level, component, content, matched = fmt.parse(line)
        records.stats.lines += 1
        records.stats.unmatched += not matched
        for column, value in ((records.times, time), (records.levels, level), (records.components, component),
                              (records.contents, content), (records.raw, line), (records.line_no, i),
                              (records.source, name)):
            column.append(value)
    return records


def iter_lines(path: str | Path, stats: ReadStats, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of each usable line of a file or stdin (``-``); see the module doc."""
    name = str(path)
    if name == "-":
        fh = sys.stdin.buffer
    else:
        p = Path(path)
        if p.is_dir():
            raise DataError(f"{p} is a folder; expected a log file")
        if not p.is_file():
            raise DataError(f"{p}: no such log file")
        fh = open(p, "rb")
    try:
        head = fh.peek(_SNIFF_BYTES)[:_SNIFF_BYTES] if hasattr(fh, "peek") else b""
        if not head:
            raise DataError(f"{name} is empty; expected text log lines")
        if b"\0" in head:
            raise DataError(f"{name} looks like a binary file (NUL bytes in its first {_SNIFF_BYTES} bytes); "
                            "expected text log lines")
        for line_no, line in enumerate(_bounded_lines(fh, max_line_bytes, stats), 1):
            if b"\0" in line:
                stats.skipped_binary += 1
                continue
            line = line.rstrip(b"\r\n")
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = line.decode("utf-8", errors="replace")
                stats.replaced += 1
            stats.lines += 1
            yield line_no, text
    finally:
        if fh is not sys.stdin.buffer:
            fh.close()


def _bounded_lines(fh, max_line_bytes: int, stats: ReadStats) -> Iterator[bytes]:
    """Lines of a binary stream, each cut to max_line_bytes without reading a huge line whole."""
    while True:
        line = fh.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            stats.truncated += 1
            while True:  # drop the rest of the over-long line
                rest = fh.readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            line = line[:max_line_bytes]
        yield line


_time_cache: dict[tuple[str, str], float | None] = {}


def _parse_time(text: str | None, time_format: str | None) -> float | None:
    if text is None or time_format is None:
        return None
    key = (text, time_format)
    if key not in _time_cache:
        if len(_time_cache) > 100_000:
            _time_cache.clear()
        try:
            if time_format == "epoch":
                value = float(text)
            else:
                value = datetime.strptime(text, time_format).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            value = None
        _time_cache[key] = value
    return _time_cache[key]
