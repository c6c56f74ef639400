"""Reading raw log lines and splitting each into header fields and content.

Reading is defensive, because a log file that is half binary or has one broken line must not
lose the rest of the file:

- a missing, empty or binary file (NUL bytes in its first 8 KiB) is refused with a DataError
  that names it;
- bytes that are not UTF-8 are replaced by U+FFFD and the line is kept;
- a line longer than `max_line_bytes` (64 KiB by default) is cut to that length and kept;
- a line holding NUL bytes after the first 8 KiB is skipped;
- a line that does not match the header format is kept, with the whole line as its content
  and no time, level or component;
- a line whose time cannot be read is kept without a time; the first such line and its text
  are reported.

Each of these is counted in `ReadStats`, which the CLI prints as one line on stderr.

Header formats (`FORMATS`, docs/logs.md lists them) are regular expressions with the named
groups ``time``, ``level``, ``component`` and ``content`` (any but content may be absent), or
JSON lines. A custom format is a regex with those group names; its `time` group is read as
epoch seconds, ISO 8601, or any layout of the presets (`TIME_LAYOUTS`).

Times are seconds since 1970 in the log's own clock: a stamp with a UTC offset is converted to
UTC, one without is taken as written. Syslog stamps (``Dec 10 06:55:46``) carry no year: a
line takes the year given (`year`, the CLI's ``--year``), or else the latest year that does not
put it after the file's modification time (for lines not from a file: after now), so a file
written in January keeps its December lines in the year before.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time as clock
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator

from normalcy.core.errors import DataError
from normalcy.logs.patterns import Pattern

MAX_LINE_BYTES = 65536
_SNIFF_BYTES = 8192
EPOCH, ISO = "epoch", "iso"
# Times outside years 1..9999 cannot be named or windowed: they count as unreadable.
_TIME_RANGE = (datetime(1, 1, 2, tzinfo=timezone.utc).timestamp(), datetime(9999, 12, 30, tzinfo=timezone.utc).timestamp())

# Every time layout a preset uses, tried in this order on a custom format's `time` group.
TIME_LAYOUTS = (
    EPOCH, ISO,
    "%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S.%f %Y",  # Apache error log, ctime
    "%d/%b/%Y:%H:%M:%S %z",                              # Apache / Nginx access log
    "%Y/%m/%d %H:%M:%S",                                 # Nginx error log
    "%Y-%m-%d %H:%M:%S,%f",                              # log4j (Hadoop, Zookeeper)
    "%Y-%m-%d-%H.%M.%S.%f",                              # BGL
    "%y%m%d %H%M%S",                                     # HDFS
    "%b %d %H:%M:%S",                                    # syslog (no year)
)


@dataclass(frozen=True)
class LogFormat:
    """A header layout: a regex with named groups (or JSON lines), and how its `time` reads.

    `time_layouts`: strptime layouts of the `time` group, or EPOCH (seconds since 1970) or ISO
    (ISO 8601), tried in order; empty: the format has no time. `custom`: the regex came from a
    user (or a model file), so it is matched within a time bound (`normalcy.logs.patterns`).
    """

    name: str
    pattern: str | None
    time_layouts: tuple[str, ...] = ()
    custom: bool = False
    description: str = ""

    def __post_init__(self):
        if self.pattern is None:  # JSON lines
            return
        if self.custom:
            regex = Pattern(self.pattern, "the log format")
        else:
            regex = re.compile(self.pattern)
        if "content" not in regex.groupindex:
            raise DataError(f"log format {self.pattern if self.custom else self.name!r} needs a named group "
                            "(?P<content>...)")
        object.__setattr__(self, "_regex", regex)

    def split(self, line: str, where: str = "a line") -> tuple[str | None, str, str, str, bool]:
        """(time text, level, component, content, matched) of one line."""
        if self.pattern is None:
            return _split_json(line)
        m = self._regex.match(line, where) if self.custom else self._regex.match(line)
        if m is None:
            return None, "", "", line, False
        groups = m.groupdict()
        return (groups.get("time") if self.time_layouts else None, groups.get("level") or "",
                groups.get("component") or "", groups.get("content") or "", True)


_SYSLOG = r"(?P<time>\w{3} +\d+ \d\d:\d\d:\d\d) [^ ]+ (?P<component>[^:\[ ]+)(?:\[\d+\])?: (?P<content>.*)"
_ACCESS = r"\S+ \S+ \S+ \[(?P<time>[^\]]+)\] (?P<content>.*)"
FORMATS: dict[str, LogFormat] = {f.name: f for f in (
    LogFormat("raw", r"(?P<content>.*)", description="the whole line is content; no time"),
    LogFormat("hdfs", r"(?P<time>\d{6} \d{6}) +\d+ +(?P<level>\w+) +(?P<component>[^ ]+?): (?P<content>.*)",
              ("%y%m%d %H%M%S",), description="081109 203615 148 INFO dfs.DataNode$PacketResponder: ..."),
    LogFormat("bgl", r"[^ ]+ (?P<time>\d+) [^ ]+ [^ ]+ [^ ]+ [^ ]+ [^ ]+ (?P<component>[^ ]+) (?P<level>[^ ]+) ?"
                     r"(?P<content>.*)", (EPOCH,),
              description="- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 ... INFO ..."),
    LogFormat("syslog", _SYSLOG, ("%b %d %H:%M:%S",),
              description="Dec 10 06:55:46 host sshd[24200]: ... (no year in the stamp: see --year)"),
    LogFormat("syslog-iso", r"(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?) [^ ]+ "
                            r"(?P<component>[^:\[ ]+)(?:\[\d+\])?: (?P<content>.*)", (ISO,),
              description="2023-12-10T06:55:46.123456+01:00 host sshd[24200]: ... (rsyslog, RFC 3339 stamps)"),
    LogFormat("apache-access", _ACCESS, ("%d/%b/%Y:%H:%M:%S %z",),
              description='1.2.3.4 - frank [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0" 200 2326 ... '
                          "(common and combined log format; also Nginx's default)"),
    LogFormat("apache-error", r"\[(?P<time>\w{3} \w{3} +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)? \d{4})\] "
                              r"\[(?:(?P<component>[^:\]\s]+):)?(?P<level>\w+)\] ?(?P<content>.*)",
              ("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S.%f %Y"),
              description="[Sun Dec 04 04:47:44 2005] [error] ... (Apache 2.2 and 2.4 [module:level])"),
    LogFormat("nginx-error", r"(?P<time>\d{4}/\d\d/\d\d \d\d:\d\d:\d\d) \[(?P<level>\w+)\] "
                             r"(?P<component>\d+#\d+): (?P<content>.*)", ("%Y/%m/%d %H:%M:%S",),
              description="2023/10/11 14:32:52 [error] 1234#5678: *1 open() ..."),
    LogFormat("jsonl", None, TIME_LAYOUTS, description='one JSON object per line: "message" (or msg, log) is the '
                                                       'content; "time" (or timestamp, @timestamp, ts), "level", "logger"'),
)}
ALIASES = {"openssh": "syslog", "linux": "syslog", "nginx-access": "apache-access", "json": "jsonl"}


def get_format(spec: str) -> LogFormat:
    """A preset name (FORMATS or ALIASES) or a regex with (?P<content>...)."""
    if not isinstance(spec, str):
        raise DataError(f"log format must be a preset name or a regex, got {type(spec).__name__}")
    if spec in FORMATS or spec in ALIASES:
        return FORMATS[ALIASES.get(spec, spec)]
    if "(?P<content>" not in spec:
        raise DataError(f"unknown log format {spec!r}; expected one of {', '.join(sorted([*FORMATS, *ALIASES]))} "
                        "or a regex with the named group (?P<content>...)")
    return LogFormat("custom", spec, TIME_LAYOUTS if "(?P<time>" in spec else (), custom=True)


# --- JSON lines ------------------------------------------------------------------------------
_JSON_FIELDS = {"time": ("time", "timestamp", "@timestamp", "ts", "t"),
                "level": ("level", "severity", "lvl", "loglevel"),
                "component": ("logger", "component", "name", "module", "source"),
                "content": ("message", "msg", "log", "text", "event")}


def _split_json(line: str) -> tuple[str | None, str, str, str, bool]:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        return None, "", "", line, False
    found = {key: next((record[n] for n in names if record.get(n) is not None), None)
             for key, names in _JSON_FIELDS.items()}
    if found["content"] is None:
        return None, "", "", line, False
    time = found["time"]
    if isinstance(time, (int, float)) and not isinstance(time, bool):
        # Numbers are epoch seconds, or milliseconds (pino, bunyan) when too large for seconds.
        time = repr(time / 1000 if abs(time) > 1e11 else float(time))
    text = {key: value if isinstance(value, str) else "" if value is None else json.dumps(value)
            for key, value in found.items()}
    return None if time is None else str(time), text["level"], text["component"], text["content"], True


# --- times -----------------------------------------------------------------------------------
def _yearless(layout: str) -> bool:
    return layout not in (EPOCH, ISO) and "%Y" not in layout and "%y" not in layout


class TimeReader:
    """Reads the `time` texts of one source: the format's layouts, the year for stamps without
    one (see the module doc), and a cache, since stamps repeat."""

    def __init__(self, layouts: tuple[str, ...], year: int | None = None, reference: float | None = None):
        self.layouts = layouts
        self.year = year
        self.reference = clock.time() if reference is None else reference
        self.years: set[int] = set()
        self._cache: dict[str, float | None] = {}
        self._last = 0  # the layout that read the last time: tried first

    def read(self, text: str | None) -> float | None:
        if text is None:
            return None
        if text not in self._cache:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[text] = self._parse(text.strip())
        return self._cache[text]

    def _parse(self, text: str) -> float | None:
        order = [self._last, *(i for i in range(len(self.layouts)) if i != self._last)]
        for i in order:
            value = self._one(text, self.layouts[i])
            if value is not None and _TIME_RANGE[0] <= value <= _TIME_RANGE[1]:
                self._last = i
                return value
        return None

    def _one(self, text: str, layout: str) -> float | None:
        try:
            if layout == EPOCH:
                value = float(text)
                return value if math.isfinite(value) else None
            if layout == ISO:
                return _timestamp(datetime.fromisoformat(text))
            if _yearless(layout):
                return self._with_year(text, layout)
            return _timestamp(datetime.strptime(text, layout))
        except (ValueError, OverflowError):
            return None

    def _with_year(self, text: str, layout: str) -> float | None:
        if self.year is not None:
            self.years.add(self.year)
            return _timestamp(datetime.strptime(f"{self.year} {text}", f"%Y {layout}"))
        latest = self.reference + 86400  # a day's slack for clocks and time zones
        start = datetime.fromtimestamp(self.reference, timezone.utc).year
        for year in range(start, start - 8, -1):  # 8 years reach back past any February 29
            try:
                value = _timestamp(datetime.strptime(f"{year} {text}", f"%Y {layout}"))
            except ValueError:
                continue
            if value <= latest:
                self.years.add(year)
                return value
        return None


def _timestamp(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def time_name(seconds: float) -> str:
    """A time as people read it, e.g. "2005-12-04 04:47:44" (milliseconds when it has them)."""
    try:
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=float(seconds))
    except OverflowError:  # past year 9999: no calendar name
        return f"{seconds:.0f} s after 1970"
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{moment.microsecond // 1000:03d}" if moment.microsecond else "")


# --- reading ---------------------------------------------------------------------------------
@dataclass
class ReadStats:
    lines: int = 0
    replaced: int = 0     # lines with bytes that are not UTF-8 (replaced by U+FFFD)
    truncated: int = 0    # lines cut to max_line_bytes
    skipped_binary: int = 0
    unmatched: int = 0    # lines the header format did not match (whole line taken as content)
    bad_times: int = 0    # lines whose time text could not be read
    first_bad_time: str | None = None  # "source:line: 'text'" of the first of them
    years: set[int] = field(default_factory=set)  # years given to stamps that carry none
    year_given: bool = False
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{self.lines} lines read from {len(self.sources)} source(s)"]
        for count, what in ((self.replaced, "had bytes that are not UTF-8 (replaced by U+FFFD)"),
                            (self.truncated, f"were longer than {MAX_LINE_BYTES} bytes (truncated)"),
                            (self.skipped_binary, "held NUL bytes (skipped)"),
                            (self.unmatched, "did not match the header format (whole line used as content)"),
                            (self.bad_times, f"had a time that could not be read, first {self.first_bad_time}")):
            if count:
                parts.append(f"{count} {what}")
        if self.years:
            how = "--year" if self.year_given else "the latest year not after the file's modification time; --year sets it"
            parts.append(f"time stamps carry no year: read in {', '.join(map(str, sorted(self.years)))} ({how})")
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

    def add(self, fmt: LogFormat, times: TimeReader, text: str, line_no: int, source: str) -> None:
        """Split one line and append it."""
        where = f"{source}:{line_no}"
        time_text, level, component, content, matched = fmt.split(text, where)
        when = times.read(time_text)
        stats = self.stats
        stats.unmatched += not matched
        if time_text is not None and when is None:
            stats.bad_times += 1
            if stats.first_bad_time is None:
                stats.first_bad_time = f"{where}: {time_text[:100]!r}"
        for column, value in ((self.times, when), (self.levels, level), (self.components, component),
                              (self.contents, content), (self.raw, text), (self.line_no, line_no),
                              (self.source, source)):
            column.append(value)


def read_logs(paths: Iterable[str | Path], fmt: LogFormat, max_line_bytes: int = MAX_LINE_BYTES,
              year: int | None = None) -> LogRecords:
    """Read and split every line of the files (``-`` = stdin) in order; `year` for time stamps
    that carry none (default: from each file's modification time, see the module doc)."""
    _check_year(year)
    records = LogRecords()
    records.stats.year_given = year is not None
    for path in paths:
        name = str(path)
        records.stats.sources.append(name)
        times = TimeReader(fmt.time_layouts, year, None if name == "-" else _mtime(path))
        for line_no, text in iter_lines(path, records.stats, max_line_bytes):
            records.add(fmt, times, text, line_no, name)
        records.stats.years |= times.years
    if not records.contents:
        raise DataError(f"no log lines in {', '.join(records.stats.sources) or '(no input)'}")
    return records


def records_from_lines(lines: Iterable[str], fmt: LogFormat, name: str = "<lines>",
                       year: int | None = None) -> LogRecords:
    """Records from lines already in memory (tests, the Python API, a request to the server):
    time stamps without a year take `year`, or else the latest year not after now."""
    _check_year(year)
    records = LogRecords()
    records.stats.sources.append(name)
    records.stats.year_given = year is not None
    times = TimeReader(fmt.time_layouts, year)
    for i, line in enumerate(lines, 1):
        if not isinstance(line, str):
            raise DataError(f"{name}: line {i} is a {type(line).__name__}, not text")
        records.stats.lines += 1
        records.add(fmt, times, line.rstrip("\r\n"), i, name)
    records.stats.years |= times.years
    return records


def _check_year(year) -> None:
    if year is not None and (isinstance(year, bool) or not isinstance(year, int) or not 1 <= year <= 9998):
        raise DataError(f"year must be a whole number from 1 to 9998, got {year!r}")


def _mtime(path: str | Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None  # iter_lines names the problem


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
