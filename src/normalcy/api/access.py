"""Reading HTTP access logs into requests: time, method, path, query, status, latency, size,
user and client, one row per request. docs/api.md repeats this for users.

Formats (`FORMATS`):

- ``combined``: Apache's and Nginx's combined (or common) log format,
  ``1.2.3.4 - frank [10/Oct/2000:13:55:36 -0700] "GET /users/7?x=1 HTTP/1.1" 200 2326 "ref" "agent"``,
  optionally followed by the request time in seconds (Nginx's ``$request_time``);
- ``jsonl``: one JSON object per line with ``method``, ``path`` (or ``url``, which may hold
  the query), ``query`` (a string ``a=1&b=2`` or an object), ``status``, ``latency`` (seconds;
  or ``latency_ms``), ``user``, ``client`` (or ``ip``), ``size``, ``time`` (epoch seconds or
  ISO 8601);
- ``openstack``: the REST lines of OpenStack's nova API log (loghub's OpenStack set), whose
  request context names the user;
- ``auto`` (the default): each file's format from its first request line;
- or a regex with named groups (``method``, ``path`` or ``target``, and any of ``time``,
  ``status``, ``latency``, ``size``, ``user``, ``client``, ``query``), matched within a time
  bound because it comes from a user or a model file (`normalcy.logs.patterns`).

Lines that are no request (a log's other lines, a line cut short) are skipped and counted; so
is a request whose time cannot be read. The user of a request is its authenticated user, or
its client address when there is none: sessions, call order and rates are per user.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd

from normalcy.core.errors import DataError
from normalcy.logs.formats import ReadStats, iter_lines
from normalcy.logs.patterns import Pattern

COLUMNS = ("time", "method", "path", "query", "status", "latency", "size", "user", "client")
WHERE = "where"  # the frame's column saying where a request came from: "file:line", "<lines>:n", "row i"
NO_USER = "-"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")

_COMBINED = re.compile(
    r'(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<target>\S+)(?: HTTP/[\d.]+)?" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)(?: "[^"]*" "[^"]*")?(?: (?P<latency>\d+(?:\.\d+)?))?\s*$')
_OPENSTACK = re.compile(
    r'\S+ (?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) \d+ \w+ \S+ \[(?P<context>[^\]]*)\] '
    r'(?P<client>\S+) "(?P<method>[A-Z]+) (?P<target>\S+)(?: HTTP/[\d.]+)?" status: (?P<status>\d{3}) '
    r'len: (?P<size>\d+) time: (?P<latency>\d+(?:\.\d+)?)')
FORMATS = ("auto", "combined", "jsonl", "openstack")


@dataclass
class RequestStats:
    """What reading found: lines, requests, and the lines skipped (with the first of them)."""

    lines: int = 0
    requests: int = 0
    skipped: int = 0
    first_skipped: str | None = None
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{self.requests} requests from {self.lines} lines of {len(self.sources)} source(s)"
        if self.skipped:
            text += f"; {self.skipped} lines were no request in the format and were skipped, first {self.first_skipped}"
        return text


def read_requests(source, log_format: str = "auto") -> tuple[pd.DataFrame, RequestStats]:
    """Requests from access-log files (paths; ``-`` is stdin), lines in memory (a list of str)
    or a table of requests (a DataFrame with COLUMNS, at least method and path)."""
    if isinstance(source, pd.DataFrame):
        return requests_from_frame(source), RequestStats(len(source), len(source), 0, None, ["data frame"])
    if isinstance(source, (str, Path)):
        return read_files([source], log_format)
    if isinstance(source, (bytes, bytearray)) or not hasattr(source, "__iter__"):
        raise DataError(f"API detectors take access-log lines, files or a table of requests, not "
                        f"{type(source).__name__}")
    items = list(source)
    if items and all(isinstance(i, Path) for i in items):
        return read_files(items, log_format)
    stats = RequestStats(sources=["<lines>"])
    rows = []
    parse = _parser(log_format, items)
    for n, line in enumerate(items, 1):
        if not isinstance(line, str):
            raise DataError(f"line {n} is a {type(line).__name__}, not text; give access-log lines")
        _add(rows, stats, parse, line.rstrip("\r\n"), f"<lines>:{n}")
    return _frame(rows, stats), stats


def read_files(paths: Iterable[str | Path], log_format: str = "auto") -> tuple[pd.DataFrame, RequestStats]:
    stats = RequestStats()
    rows: list[dict] = []
    read = ReadStats()
    for path in paths:
        stats.sources.append(str(path))
        lines = [(n, text) for n, text in iter_lines(path, read)]
        parse = _parser(log_format, [text for _, text in lines[:50]])
        for n, text in lines:
            _add(rows, stats, parse, text, f"{path}:{n}")
    return _frame(rows, stats), stats


def requests_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A table of requests checked and filled: method and path required, query parsed off the
    path, other columns optional."""
    missing = [c for c in ("method", "path") if c not in frame.columns]
    if missing:
        raise DataError(f"a table of requests needs the column(s) {', '.join(missing)}; found "
                        f"{', '.join(map(str, frame.columns)) or 'none'}")
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        where = record.get(WHERE) if isinstance(record.get(WHERE), str) else f"row {i}"  # read before: kept
        rows.append({**_from_record({k: (None if _is_missing(v) else v) for k, v in record.items()}, where),
                     WHERE: where})
    stats = RequestStats(len(rows), len(rows))
    return _frame(rows, stats)


# --- one line ----------------------------------------------------------------------------------
def _parser(log_format: str, sample: list):
    if not isinstance(log_format, str):
        raise DataError(f"the access-log format must be a name ({', '.join(FORMATS)}) or a regex, got "
                        f"{type(log_format).__name__}")
    if log_format == "auto":
        return _detect(sample)
    if log_format == "combined":
        return _combined
    if log_format == "jsonl":
        return _jsonl
    if log_format == "openstack":
        return _openstack
    return custom_parser(log_format)


def custom_parser(regex: str):
    """A parser from a user's regex with named groups, matched within a time bound."""
    if "(?P<method>" not in regex or not ("(?P<path>" in regex or "(?P<target>" in regex):
        raise DataError(f"unknown access-log format {regex[:80]!r}; expected one of {', '.join(FORMATS)} or a regex "
                        "with the named groups (?P<method>...) and (?P<path>...) or (?P<target>...)")
    pattern = Pattern(regex, "the access-log format")

    def parse(line: str, where: str) -> dict | None:
        m = pattern.match(line, where)  # a regex that backtracks without end: DataError, not a skip
        return None if m is None else _lenient({k: v for k, v in m.groupdict().items() if v is not None}, where)

    return parse


def _detect(sample: list):
    for line in sample:
        if not isinstance(line, str) or not line.strip():
            continue
        if line.lstrip().startswith("{"):
            return _jsonl
        if _OPENSTACK.match(line):
            return _openstack
        if _COMBINED.match(line):
            return _combined
    return _combined  # no request line in the sample: every line will be counted as skipped


def _combined(line: str, where: str) -> dict | None:
    m = _COMBINED.match(line)
    if m is None:
        return None
    g = m.groupdict()
    try:
        moment = datetime.strptime(g["time"], "%d/%b/%Y:%H:%M:%S %z").timestamp()
    except ValueError:
        return None
    return _lenient({**g, "time": moment, "size": None if g["size"] == "-" else g["size"]}, where)


def _openstack(line: str, where: str) -> dict | None:
    m = _OPENSTACK.match(line)
    if m is None:
        return None
    g = m.groupdict()
    context = g.pop("context").split()
    user = context[1] if len(context) > 1 and context[1] != "-" else None
    try:
        moment = datetime.fromisoformat(g["time"]).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None
    return _lenient({**g, "time": moment, "user": user}, where)


_JSON_KEYS = {"time": ("time", "timestamp", "ts", "@timestamp"), "method": ("method", "verb"),
              "path": ("path", "url", "uri", "target"), "query": ("query", "params", "query_string"),
              "status": ("status", "status_code", "code"), "latency": ("latency", "duration", "response_time"),
              "size": ("size", "bytes", "body_bytes_sent"), "user": ("user", "user_id", "username", "remote_user"),
              "client": ("client", "ip", "remote_addr", "client_ip")}


def _jsonl(line: str, where: str) -> dict | None:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    found = {key: next((record[n] for n in names if record.get(n) is not None), None)
             for key, names in _JSON_KEYS.items()}
    if found["latency"] is None and isinstance(record.get("latency_ms"), (int, float)):
        found["latency"] = record["latency_ms"] / 1000.0
    if found["method"] is None or found["path"] is None:
        return None
    return _lenient(found, where)


def _lenient(fields: dict, where: str) -> dict | None:
    """A log line's request, or None when a field is malformed: the line is skipped and counted."""
    try:
        return _from_record(fields, where)
    except DataError:
        return None


def _from_record(g: dict, where: str) -> dict:
    """A request from parsed fields: text checked, the query split off the path or target,
    numbers read; DataError names `where` and the field."""
    method = g.get("method")
    target = g.get("path", g.get("target"))
    if not isinstance(method, str) or not isinstance(target, str) or not method or not target:
        raise DataError(f"{where}: a request needs a method and a path as text, got {method!r} and {target!r}")
    parts = urlsplit(target) if "?" in target or "://" in target else None
    path = parts.path if parts is not None else target
    query = g.get("query")
    if isinstance(query, dict):
        query = urlencode([(str(k), str(x)) for k, v in query.items() for x in (v if isinstance(v, list) else [v])])
    elif query is not None and not isinstance(query, str):
        raise DataError(f"{where}: query must be text (a=1&b=2) or an object, got {type(query).__name__}")
    if parts is not None and parts.query:
        query = parts.query if not query else f"{parts.query}&{query}"
    user, client = _text(g.get("user")), _text(g.get("client"))
    for name, text in (("method", method), ("path", path), ("query", query or ""), ("user", user), ("client", client)):
        if not _unicode(text):
            raise DataError(f"{where}: the {name} is not valid Unicode text (a lone surrogate)")
    return {"time": _number(g.get("time"), "time", where, time=True), "method": method.upper(), "path": path or "/",
            "query": query or "", "status": _number(g.get("status"), "status", where, integer=True),
            "latency": _number(g.get("latency"), "latency", where), "size": _number(g.get("size"), "size", where),
            "user": user or None, "client": client or NO_USER}


def _number(value, name: str, where: str, integer: bool = False, time: bool = False) -> float:
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool):
        raise DataError(f"{where}: {name} must be a number, got {value!r}")
    if time and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            try:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            except ValueError:
                raise DataError(f"{where}: time {value!r} is neither epoch seconds nor ISO 8601") from None
            number = (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    else:
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{where}: {name} must be a number, got {str(value)[:80]!r}") from None
    if not math.isfinite(number) or abs(number) > 1e15 or (integer and number != round(number)):
        raise DataError(f"{where}: {name} {value!r} is not a {'whole ' if integer else ''}number in range")
    return number


def _text(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "" if text == NO_USER else text


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _add(rows: list, stats: RequestStats, parse, line: str, where: str) -> None:
    stats.lines += 1
    request = parse(line, where)
    if request is not None:
        request[WHERE] = where
    if request is None:
        stats.skipped += 1
        if stats.first_skipped is None:
            stats.first_skipped = f"{where}: {line[:120]!r}"
        return
    rows.append(request)


def _frame(rows: list[dict], stats: RequestStats) -> pd.DataFrame:
    timed = [r for r in rows if not math.isnan(r["time"])]
    if timed and len(timed) < len(rows):  # a request whose time cannot be read among timed ones
        stats.skipped += len(rows) - len(timed)
        stats.first_skipped = stats.first_skipped or "a request without a readable time"
        rows = timed
    stats.requests = len(rows)
    if not rows:
        how = f" (first skipped: {stats.first_skipped})" if stats.first_skipped else ""
        raise DataError(f"no requests in {', '.join(stats.sources) or 'the input'}{how}")
    frame = pd.DataFrame(rows, columns=[*COLUMNS, WHERE])
    for column in ("method", "path", "query", "client"):
        frame[column] = frame[column].astype(object)
    if np.isnan(frame["time"].to_numpy(dtype=np.float64)).all():
        # Without times, requests are taken one second apart in the order given.
        frame["time"] = np.arange(len(frame), dtype=np.float64)
    frame["user"] = [u if isinstance(u, str) and u else c for u, c in zip(frame["user"], frame["client"])]
    return frame


def _unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
