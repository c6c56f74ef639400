"""Invariants of a web API, inferred from normal traffic and checked on new requests, after
MINES (Zhang, Lin, Kwok, Teoh, Xie, Liauw, Zhang and Dong, "MINES: Explainable Anomaly Detection
through Web API Invariant Inference", arXiv:2512.06906, 2025): explainable rules about each
endpoint's parameters and about the calls around it, each of which normal traffic kept; a
request that breaks one is reported with the rule in plain words. MINES infers its invariants
over the API's parameters joined with the application's database schema, with a language
model proposing the relations; here only the access log is known (no database, no model), so
the rules are Daikon-style ones over what a log line holds, listed below.

An endpoint is a method and a path template (`normalcy.api.paths`). A request's parameters are
its path parameters (`{int}`, `{uuid}` ...), its query parameters (`?page` ...) and its
response fields (`status`, `size`, `latency`). The kinds (docs/api.md lists them with examples):

    endpoint   the request's endpoint was seen in training (a path never seen is allowed only
               under a path whose children keep changing in normal traffic: an *open* prefix)
    params     a query parameter was sent to the endpoint before (and, over the whole API, a
               parameter name was sent to some endpoint before)
    required   a query parameter the endpoint always had
    type       a parameter's values all have one shape (int, number, bool, uuid, hex, date,
               email, token, word)
    range      a number between the training minimum and maximum, widened by `range_slack`
               of their span
    values     a parameter with few values (at most `max_values`) takes one of them
    length     a text parameter's length between the training minimum and maximum
    relation   a parameter always equals another or the user, or is never above another; and
               per user, a parameter the user always sent with one value (absent counts as a
               value) where chance would hardly give that: with q the value's share among the
               other users' requests to the endpoint (Laplace-smoothed), q ** n < CHANCE for
               the user's n requests
    callers    an endpoint called by few users is called by one of them
    owner      the ids in a path parameter each belong to one user (no user ever named another
               user's id anywhere): a request naming an id another user named is flagged (an
               order, a server: access to another user's object)
    scope      a user does not call under a top-level path (/admin ...) that they avoided in
               training more than chance allows: with n requests none of which went there,
               while a share q of all requests did, (1 - q) ** n < CHANCE
    flow       the id in a parameter appeared in an earlier request of the same user (an
               object is named before it is acted on: read before deleted)
    after      the endpoint always comes after another endpoint in the user's session
    rate       a user's requests in any `rate_window` seconds stay within the busiest window
               seen, widened by `rate_slack`

Every rule needs `min_support` observations. To keep only rules that generalise, inference
runs on the first part of the training traffic, every rule is checked on the held-out last
`validation` share, and the rules broken there are dropped; the kept rules are then learned
again on all of it. Order rules (flow, after) cannot be judged at the start of a log, where a
session may have begun before it: each is checked only past the longest delay it had in
training (e.g. from reading an object to deleting it) after the first request of a batch.
"""

from __future__ import annotations

import math
from collections import defaultdict
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd

from normalcy.api.paths import VALUE_TYPES, Matcher, is_placeholder, learn_templates, segments, shape
from normalcy.core.errors import ModelFileError

KINDS = ("endpoint", "params", "required", "type", "range", "values", "length", "relation", "callers", "owner",
         "scope", "flow", "after", "rate")
MAX_OWNED = 20_000  # ids an owner rule remembers (the latest)
RESPONSE = ("status", "size", "latency")
ABSENT = "(absent)"
# Value shapes of parameters, the narrower first (checked on the whole value).
TYPES = ("int", "number", "bool", "uuid", "hex", "date", "email", "token", "word")
_NUMBER = VALUE_TYPES["int"]
MAX_VALUE_CHARS = 4096  # values are cut to this before any check
MAX_SHOWN = 8  # values listed in a message
# How unlikely by chance a per-user habit must be to become a rule: a user who always sent one
# value (or never called a top-level path) in n requests, where a share q of all requests did
# so, is a rule when q ** n (or (1 - q) ** n) is below it.
CHANCE = 1e-3


def value_type(value: str) -> str:
    """The narrowest TYPES entry a value has, or "text"."""
    if _NUMBER.fullmatch(value):
        return "int"
    try:
        if math.isfinite(float(value)) and value.strip() == value and value:
            return "number"
    except ValueError:
        pass
    if value.lower() in ("true", "false"):
        return "bool"
    found = shape(value)
    if found in ("uuid", "hex", "date", "email", "token"):
        return found
    if value and len(value) <= 64 and all(c.isalnum() or c in "_-.:" for c in value):
        return "word"
    return "text"


def fits_type(value: str, kind: str) -> bool:
    """Whether a value has shape `kind` (an int is a number; every shape is text)."""
    found = value_type(value)
    return found == kind or (kind == "number" and found == "int") or kind == "text" \
        or (kind == "word" and found in ("int", "number", "bool", "uuid", "hex", "date", "token"))


# --- requests, prepared ---------------------------------------------------------------------
class Prepared:
    """A batch of requests in time order, each with its endpoint and parameters."""

    def __init__(self, frame: pd.DataFrame, matcher: Matcher | None):
        order = np.argsort(frame["time"].to_numpy(dtype=np.float64), kind="stable")
        self.order = order
        rows = frame.iloc[order]
        self.times = rows["time"].to_numpy(dtype=np.float64)
        self.users = rows["user"].astype(str).to_numpy(dtype=object)
        self.methods = rows["method"].astype(str).to_numpy(dtype=object)
        self.paths = rows["path"].astype(str).to_numpy(dtype=object)
        self.templates: list[str | None] = []
        self.params: list[dict[str, list[str]]] = []
        for path, query, status, size, latency in zip(self.paths, rows["query"], rows["status"], rows["size"],
                                                      rows["latency"]):
            template, values = matcher.match(path) if matcher is not None else (None, {})
            self.templates.append(template)
            params = {name: [value[:MAX_VALUE_CHARS]] for name, value in values.items()}
            for key, value in parse_qsl(query or "", keep_blank_values=True):
                params.setdefault(f"?{key[:200]}", []).append(value[:MAX_VALUE_CHARS])
            for name, number in (("status", status), ("size", size), ("latency", latency)):
                if number is not None and not (isinstance(number, float) and math.isnan(number)):
                    params[name] = [_number_text(number)]
            self.params.append(params)
        self.endpoints = [None if t is None else f"{m} {t}" for m, t in zip(self.methods, self.templates)]

    def __len__(self) -> int:
        return len(self.times)


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(float(number))


# --- inference ------------------------------------------------------------------------------------
class Settings:
    """The inference parameters, as the detector has them."""

    def __init__(self, min_support: int, max_values: int, max_literals: int, range_slack: float, rate_window: float,
                 rate_slack: float, session_gap: float):
        self.min_support = min_support
        self.max_values = max_values
        self.max_literals = max_literals
        self.range_slack = range_slack
        self.rate_window = rate_window
        self.rate_slack = rate_slack
        self.session_gap = session_gap


def infer(batch: Prepared, settings: Settings, templates: list[str]) -> list[dict]:
    """Every rule the batch supports, as JSON-safe records (see the module doc)."""
    rules: list[dict] = [_endpoint_rule(batch, templates)]
    by_endpoint: dict[str, list[int]] = defaultdict(list)
    for i, endpoint in enumerate(batch.endpoints):
        if endpoint is not None:
            by_endpoint[endpoint].append(i)
    named = id_users(batch)
    for endpoint, rows in sorted(by_endpoint.items()):
        rules += _endpoint_rules(batch, endpoint, rows, settings, named)
    names = sorted({name for p in batch.params for name in p if name.startswith("?")})
    rules.append({"kind": "params", "endpoint": "*", "known": names, "n": len(batch)})
    rules += _order_rules(batch, by_endpoint, settings)
    rules += _rate_rules(batch, settings)
    rules += _scope_rules(batch, settings)
    return rules


def top(path: str) -> str:
    """The top-level path of a request: "/v2" for /v2/abc/servers, "/" for the root."""
    parts = segments(path)
    return "/" + parts[0] if parts else "/"


def _scope_rules(batch: Prepared, s: Settings) -> list[dict]:
    scopes: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    shares: dict[str, float] = defaultdict(float)
    for user, path in zip(batch.users, batch.paths):
        scopes[user].add(top(path))
        counts[user] += 1
        shares[top(path)] += 1.0 / len(batch)
    out = []
    for user in sorted(scopes):
        n = counts[user]
        avoided = sorted(p for p, q in shares.items() if p not in scopes[user] and (1.0 - q) ** n < CHANCE)
        if n >= s.min_support and avoided:
            out.append({"kind": "scope", "endpoint": "*", "user": user, "prefixes": sorted(scopes[user]),
                        "avoided": avoided, "n": n})
    return out


def _endpoint_rule(batch: Prepared, templates: list[str]) -> dict:
    endpoints = sorted({e for e in batch.endpoints if e is not None})
    return {"kind": "endpoint", "endpoint": "*", "known": endpoints, "templates": templates, "open": []}


def _endpoint_rules(batch: Prepared, endpoint: str, rows: list[int], s: Settings, named: dict[str, set[str]]
                    ) -> list[dict]:
    n = len(rows)
    out: list[dict] = []
    if n < s.min_support:
        return out
    params = [batch.params[i] for i in rows]
    names = sorted({name for p in params for name in p})
    query = [name for name in names if name.startswith("?")]
    out.append({"kind": "params", "endpoint": endpoint, "known": query, "n": n})
    for name in names:
        present = [p[name] for p in params if name in p]
        values = [v for vs in present for v in vs]
        if name.startswith("?") and len(present) == n:
            out.append({"kind": "required", "endpoint": endpoint, "param": name, "n": n})
        if len(values) < s.min_support:
            continue
        kinds = {value_type(v) for v in values}
        kind = _common_type(kinds)
        if kind != "text":
            out.append({"kind": "type", "endpoint": endpoint, "param": name, "type": kind, "n": len(values)})
        distinct = sorted(set(values))
        if len(distinct) <= s.max_values and len(values) >= 2 * len(distinct):
            out.append({"kind": "values", "endpoint": endpoint, "param": name, "values": distinct, "n": len(values)})
        elif kind in ("int", "number"):
            numbers = np.array([float(v) for v in values])
            lo, hi = float(numbers.min()), float(numbers.max())
            margin = s.range_slack * (hi - lo)
            out.append({"kind": "range", "endpoint": endpoint, "param": name, "low": lo - margin, "high": hi + margin,
                        "n": len(values)})
        if kind not in ("int", "number", "bool") and len(distinct) > s.max_values:
            lengths = [len(v) for v in values]
            out.append({"kind": "length", "endpoint": endpoint, "param": name, "low": min(lengths),
                        "high": max(lengths), "n": len(values)})
    out += _relations(batch, endpoint, rows, names, s)
    out += _owners(batch, endpoint, rows, names, s, named)
    users = [batch.users[i] for i in rows]
    distinct_users = sorted(set(users))
    if len(distinct_users) <= s.max_values and n >= 2 * len(distinct_users):
        out.append({"kind": "callers", "endpoint": endpoint, "users": distinct_users, "n": n})
    return out


def _common_type(kinds: set[str]) -> str:
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"int", "number"}:
        return "number"
    if kinds <= set(TYPES) - {"email"}:
        return "word"
    return "text"


def _relations(batch: Prepared, endpoint: str, rows: list[int], names: list[str], s: Settings) -> list[dict]:
    """Equal and ordered pairs of single-valued parameters present in every request, and per
    user the parameters each user always sent with one value."""
    out: list[dict] = []
    single = [name for name in names if name not in RESPONSE
              and all(len(batch.params[i].get(name, ())) == 1 for i in rows)]
    for a in single:
        if all(batch.params[i][a][0] == batch.users[i] for i in rows):
            out.append({"kind": "relation", "endpoint": endpoint, "param": a, "other": "user", "op": "==",
                        "n": len(rows)})
    for a_index, a in enumerate(single):
        for b in single[a_index + 1:]:
            pairs = [(batch.params[i][a][0], batch.params[i][b][0]) for i in rows]
            if all(x == y for x, y in pairs):
                out.append({"kind": "relation", "endpoint": endpoint, "param": a, "other": b, "op": "==",
                            "n": len(rows)})
            elif all(_NUMBER.fullmatch(x) and _NUMBER.fullmatch(y) for x, y in pairs):
                if all(int(x) <= int(y) for x, y in pairs):
                    out.append({"kind": "relation", "endpoint": endpoint, "param": a, "other": b, "op": "<=",
                                "n": len(rows)})
                elif all(int(x) >= int(y) for x, y in pairs):
                    out.append({"kind": "relation", "endpoint": endpoint, "param": b, "other": a, "op": "<=",
                                "n": len(rows)})
    by_user: dict[str, list[int]] = defaultdict(list)
    for i in rows:
        by_user[batch.users[i]].append(i)
    for name in names:
        if name in RESPONSE:
            continue
        sent = {i: "|".join(batch.params[i].get(name, [ABSENT])) for i in rows}
        counts = pd.Series(list(sent.values())).value_counts()
        fixed = {}
        for user, mine in by_user.items():
            seen = {sent[i] for i in mine}
            if len(mine) < s.min_support or len(seen) != 1:
                continue
            value = next(iter(seen))
            # The value's share among the other users' requests (Laplace-smoothed): a habit
            # chance would hardly give, share ** n < CHANCE, is the user's own.
            others = len(rows) - len(mine)
            share = (counts[value] - len(mine) + 1.0) / (others + 2.0)
            if share ** len(mine) < CHANCE:
                fixed[user] = value
        if fixed:
            out.append({"kind": "relation", "endpoint": endpoint, "param": name, "other": "user", "op": "per-user",
                        "values": dict(sorted(fixed.items())), "n": len(rows)})
    return out


def id_users(batch: Prepared) -> dict[str, set[str]]:
    """Every id-like value of the batch, with the users who named it anywhere."""
    users: dict[str, set[str]] = defaultdict(set)
    for params, user in zip(batch.params, batch.users):
        for name, values in params.items():
            if name not in RESPONSE:
                for value in values:
                    if _id_like(value):
                        users[value].add(user)
    return users


def _owners(batch: Prepared, endpoint: str, rows: list[int], names: list[str], s: Settings,
            named: dict[str, set[str]]) -> list[dict]:
    """owner rules: the path ids of the endpoint each named by one user only, among at least
    two users (with one user the callers rule says it all)."""
    out = []
    if len({batch.users[i] for i in rows}) < 2:
        return out
    for name in names:
        if not name.startswith("{"):
            continue
        owners: dict[str, str] = {}
        for i in rows:
            value = batch.params[i].get(name, [""])[0]
            if _id_like(value):
                owners[value] = batch.users[i]
        if len(owners) >= s.min_support and all(len(named[v]) == 1 for v in owners):
            latest = dict(list(owners.items())[-MAX_OWNED:])
            out.append({"kind": "owner", "endpoint": endpoint, "param": name, "owners": latest, "n": len(rows)})
    return out


def sessions(batch: Prepared, gap: float) -> np.ndarray:
    """A session number per request: one user's requests with no silence longer than `gap`."""
    out = np.empty(len(batch), dtype=np.int64)
    last: dict[str, tuple[float, int]] = {}
    count = 0
    for i, (user, t) in enumerate(zip(batch.users, batch.times)):
        previous = last.get(user)
        if previous is None or t - previous[0] > gap:
            previous = (t, count)
            count += 1
        last[user] = (t, previous[1])
        out[i] = previous[1]
    return out


def _order_rules(batch: Prepared, by_endpoint: dict[str, list[int]], s: Settings) -> list[dict]:
    """flow and after rules, each with the longest delay it had (its warm-up)."""
    start = batch.times[0] if len(batch) else 0.0
    session = sessions(batch, s.session_gap)
    value_seen: dict[tuple[int, str], float] = {}
    endpoint_seen: dict[int, dict[str, float]] = defaultdict(dict)
    flow: dict[tuple[str, str], list[float]] = defaultdict(list)  # delays; inf = never seen before
    flow_start: dict[tuple[str, str], list[float]] = defaultdict(list)
    after: dict[str, list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for i in range(len(batch)):
        t, k, endpoint = batch.times[i], session[i], batch.endpoints[i]
        if endpoint is not None:
            for name, values in batch.params[i].items():
                if name in RESPONSE or not _id_like(values[0]):
                    continue
                seen = value_seen.get((k, values[0]))
                flow[(endpoint, name)].append(math.inf if seen is None else t - seen)
                flow_start[(endpoint, name)].append(t - start)
            after[endpoint].append((t - start, {e: t - seen for e, seen in endpoint_seen[k].items() if e != endpoint}))
            endpoint_seen[k][endpoint] = t
        for values in batch.params[i].values():
            for value in values:
                if _id_like(value):
                    value_seen[(k, value)] = t
    out = []
    for (endpoint, name), delays in sorted(flow.items()):
        rule = _excused(delays, flow_start[(endpoint, name)], s)
        if rule is not None:
            out.append({"kind": "flow", "endpoint": endpoint, "param": name, "warmup": rule, "n": len(delays)})
    for endpoint, occurrences in sorted(after.items()):
        candidates = set().union(*(d.keys() for _, d in occurrences)) if occurrences else set()
        for other in sorted(candidates):
            delays = [d.get(other, math.inf) for _, d in occurrences]
            rule = _excused(delays, [t for t, _ in occurrences], s)
            if rule is not None:
                out.append({"kind": "after", "endpoint": endpoint, "other": other, "warmup": rule,
                            "n": len(occurrences)})
    return out


def _excused(delays: list[float], since_start: list[float], s: Settings) -> float | None:
    """The warm-up of an order rule when it holds: every occurrence without the earlier event
    falls within the longest delay seen after the batch's start; None when it does not hold."""
    finite = [d for d in delays if math.isfinite(d)]
    if len(finite) < s.min_support:
        return None
    warmup = max(finite)
    if any(not math.isfinite(d) and t > warmup for d, t in zip(delays, since_start)):
        return None
    return float(warmup)


def _id_like(value: str) -> bool:
    """Whether a value names an object (an id of some shape), so its order of appearance means
    something; numbers under 1000 (pages, counts) and words do not."""
    kind = value_type(value)
    if kind == "int":
        return len(value.lstrip("+-")) >= 4
    return kind in ("uuid", "hex", "token", "email")


def _rate_rules(batch: Prepared, s: Settings) -> list[dict]:
    busiest = _busiest_windows(batch, s.rate_window)
    counts = defaultdict(int)
    for user in batch.users:
        counts[user] += 1
    per_user = {u: b for u, b in busiest.items() if counts[u] >= s.min_support}
    if not busiest:
        return []
    out = [{"kind": "rate", "endpoint": "*", "user": "*", "limit": _limit(max(busiest.values()), s),
            "window": s.rate_window, "n": len(batch)}]
    for user, b in sorted(per_user.items()):
        out.append({"kind": "rate", "endpoint": "*", "user": user, "limit": _limit(b, s), "window": s.rate_window,
                    "n": counts[user]})
    return out


def _limit(busiest: int, s: Settings) -> int:
    return int(math.ceil(busiest * (1.0 + s.rate_slack)))


def window_counts(batch: Prepared, window: float) -> np.ndarray:
    """Per request, how many requests its user sent in the `window` seconds up to it (itself
    included)."""
    out = np.empty(len(batch), dtype=np.int64)
    recent: dict[str, list[float]] = defaultdict(list)
    first: dict[str, int] = defaultdict(int)
    for i, (user, t) in enumerate(zip(batch.users, batch.times)):
        times = recent[user]
        times.append(t)
        while times[first[user]] <= t - window:
            first[user] += 1
        out[i] = len(times) - first[user]
    return out


def _busiest_windows(batch: Prepared, window: float) -> dict[str, int]:
    counts = window_counts(batch, window)
    busiest: dict[str, int] = {}
    for user, c in zip(batch.users, counts):
        busiest[user] = max(busiest.get(user, 0), int(c))
    return busiest


# --- checking -------------------------------------------------------------------------------------
def check(batch: Prepared, rules: list[dict], settings: Settings) -> list[list[tuple[int, str]]]:
    """Per request of the batch (its time order), the broken rules as (rule index, plain words)."""
    out: list[list[tuple[int, str]]] = [[] for _ in range(len(batch))]
    by_endpoint: dict[str, list[int]] = defaultdict(list)
    order: list[int] = []
    rates: dict[str, int] = {}
    everywhere: list[int] = []
    owned: list[int] = []
    scopes: dict[str, int] = {}
    for r, rule in enumerate(rules):
        if rule["kind"] == "endpoint":
            _check_endpoints(batch, r, rule, out)
        elif rule["kind"] == "scope":
            scopes[rule["user"]] = r
        elif rule["endpoint"] == "*" and rule["kind"] == "params":
            everywhere.append(r)
        elif rule["kind"] in ("flow", "after"):
            order.append(r)
        elif rule["kind"] == "owner":
            owned.append(r)
        elif rule["kind"] == "rate":
            rates[rule["user"]] = r
        else:
            by_endpoint[rule["endpoint"]].append(r)
    for i, endpoint in enumerate(batch.endpoints):
        for r in by_endpoint.get(endpoint, ()) if endpoint is not None else ():
            message = _broken(rules[r], batch.params[i], batch.users[i])
            if message is not None:
                out[i].append((r, f"{endpoint}: {message}"))
    for i, (user, path) in enumerate(zip(batch.users, batch.paths)):
        for r in everywhere:
            unknown = [name for name in batch.params[i] if name.startswith("?") and name not in rules[r]["known"]]
            if unknown:
                out[i].append((r, f"parameter {unknown[0]} was never sent to any endpoint in training"))
        r = scopes.get(user)
        if r is not None and top(path) in rules[r]["avoided"]:
            out[i].append((r, f"user {user} called {top(path)}, which they never called in {rules[r]['n']} requests "
                              f"in training, though other users often did (they called only "
                              f"{_listed(rules[r]['prefixes'])})"))
    _check_order(batch, rules, order, settings, out)
    _check_owners(batch, rules, owned, out)
    if rates:
        counts = window_counts(batch, settings.rate_window)
        for i, (user, c) in enumerate(zip(batch.users, counts)):
            r = rates.get(user, rates.get("*"))
            if r is not None and c > rules[r]["limit"]:
                rule = rules[r]
                whose = f"user {user}" if rule["user"] != "*" else "any user"
                out[i].append((r, f"user {user} sent {c} requests within {rule['window']:g} s; {whose} sent at "
                                  f"most {rule['limit']} in training (with slack)"))
    return out


def _check_endpoints(batch: Prepared, r: int, rule: dict, out: list) -> None:
    known = set(rule["known"])
    methods: dict[str, list[str]] = defaultdict(list)
    for endpoint in rule["known"]:
        method, _, template = endpoint.partition(" ")
        methods[template].append(method)
    prefixes = Matcher(sorted({"/" + "/".join(segments(t)[:d]) for t in rule["templates"]
                               for d in range(len(segments(t)) + 1)}))
    open_prefixes = set(rule["open"])
    for i, endpoint in enumerate(batch.endpoints):
        if endpoint is not None and endpoint in known:
            continue
        template = batch.templates[i]
        if template is not None and template in methods:
            out[i].append((r, f"{batch.methods[i]} {template}: never called with {batch.methods[i]} in "
                                       f"training (only {', '.join(sorted(methods[template]))})"))
            continue
        prefix = _longest_prefix(prefixes, batch.paths[i])
        if prefix in open_prefixes:
            continue
        out[i].append((r, f"{batch.methods[i]} {batch.paths[i][:200]}: an endpoint never seen in training "
                                   f"(nothing under {prefix} but the {len(known)} known endpoints)"))


def _longest_prefix(prefixes: Matcher, path: str) -> str:
    parts = segments(path)
    for depth in range(len(parts), -1, -1):
        template, _ = prefixes.match("/" + "/".join(parts[:depth]))
        if template is not None:
            return template
    return "/"


def _broken(rule: dict, params: dict[str, list[str]], user: str) -> str | None:
    kind = rule["kind"]
    if kind == "params":
        unknown = [name for name in params if name.startswith("?") and name not in rule["known"]]
        if unknown:
            takes = ", ".join(rule["known"]) or "no query parameters"
            return f"parameter {unknown[0]} was never sent to this endpoint in training (it takes {takes})"
        return None
    if kind == "callers":
        if user not in rule["users"]:
            return (f"called by user {user}, but in training only by {_listed(rule['users'])} "
                    f"({rule['n']} requests)")
        return None
    name = rule["param"]
    values = params.get(name)
    if kind == "required":
        return None if values else f"parameter {name} is missing; it was sent in all {rule['n']} requests in training"
    if kind == "relation" and rule["op"] == "per-user":
        expected = rule["values"].get(user)
        actual = "|".join(values) if values else ABSENT
        if expected is not None and actual != expected:
            return (f"user {user} always sent {name}={expected} in training; this request has {name}="
                    f"{actual[:100]}")
        return None
    if not values:
        return None
    if kind == "type":
        bad = next((v for v in values if not fits_type(v, rule["type"])), None)
        return None if bad is None else f"{name} was always of type {rule['type']} in training; got {bad[:100]!r}"
    if kind == "values":
        bad = next((v for v in values if v not in rule["values"]), None)
        return None if bad is None else (f"{name} was always one of {_listed(rule['values'])} in training; "
                                         f"got {bad[:100]!r}")
    if kind == "range":
        lo, hi = rule["low"], rule["high"]
        for v in values:
            try:
                number = float(v)
            except ValueError:
                continue  # a value of another type breaks the type rule
            if not lo <= number <= hi:
                return f"{name} was always between {lo:g} and {hi:g} in training (with slack); got {v[:100]}"
        return None
    if kind == "length":
        bad = next((v for v in values if not rule["low"] <= len(v) <= rule["high"]), None)
        return None if bad is None else (f"{name} was always {rule['low']} to {rule['high']} characters long in "
                                         f"training; got {len(bad)}")
    if kind == "relation" and rule["other"] == "user":
        if values[0] != user:
            return f"{name} always equalled the requesting user in training; got {values[0][:60]!r} from user {user}"
        return None
    if kind == "relation":
        other = params.get(rule["other"])
        if not other:
            return None
        a, b = values[0], other[0]
        if rule["op"] == "==" and a != b:
            return f"{name} always equalled {rule['other']} in training; got {a[:60]!r} and {b[:60]!r}"
        if rule["op"] == "<=" and _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b) and int(a) > int(b):
            return f"{name} was never above {rule['other']} in training; got {a[:60]} > {b[:60]}"
    return None


def _check_owners(batch: Prepared, rules: list[dict], indices: list[int], out: list) -> None:
    """owner rules: a request naming an id that another user named (in training, or earlier in
    the batch anywhere)."""
    by_endpoint: dict[str, list[int]] = defaultdict(list)
    for r in indices:
        by_endpoint[rules[r]["endpoint"]].append(r)
    named: dict[str, str] = {}
    for i, (endpoint, user) in enumerate(zip(batch.endpoints, batch.users)):
        for r in by_endpoint.get(endpoint, ()) if endpoint is not None else ():
            rule = rules[r]
            value = batch.params[i].get(rule["param"], [""])[0]
            owner = rule["owners"].get(value, named.get(value))
            if owner is not None and owner != user:
                out[i].append((r, f"{endpoint}: {rule['param']}={value[:80]} belongs to user {owner}; user {user} "
                                  "named it (in training every id here was named by one user only)"))
        for name, values in batch.params[i].items():
            if name not in RESPONSE:
                for value in values:
                    if _id_like(value):
                        named.setdefault(value, user)


def _check_order(batch: Prepared, rules: list[dict], indices: list[int], s: Settings, out: list) -> None:
    if not indices or not len(batch):
        return
    start = batch.times[0]
    session = sessions(batch, s.session_gap)
    flows: dict[str, list[int]] = defaultdict(list)
    afters: dict[str, list[int]] = defaultdict(list)
    for r in indices:
        (flows if rules[r]["kind"] == "flow" else afters)[rules[r]["endpoint"]].append(r)
    value_seen: set[tuple[int, str]] = set()
    endpoint_seen: set[tuple[int, str]] = set()
    for i in range(len(batch)):
        k, endpoint, since = session[i], batch.endpoints[i], batch.times[i] - start
        for r in flows.get(endpoint, ()) if endpoint is not None else ():
            rule = rules[r]
            values = batch.params[i].get(rule["param"])
            if values and since > rule["warmup"] and (k, values[0]) not in value_seen:
                out[i].append((r, f"{endpoint}: {rule['param']}={values[0][:80]} was never named in an earlier "
                                       f"request of user {batch.users[i]}; in training it always was (e.g. an object "
                                       "read before it is changed or deleted)"))
        for r in afters.get(endpoint, ()) if endpoint is not None else ():
            rule = rules[r]
            if since > rule["warmup"] and (k, rule["other"]) not in endpoint_seen:
                out[i].append((r, f"{endpoint} came before any {rule['other']} in the session of user "
                                        f"{batch.users[i]}; in training it always came after one"))
        if endpoint is not None:
            endpoint_seen.add((k, endpoint))
        for values in batch.params[i].values():
            for value in values:
                if _id_like(value):
                    value_seen.add((k, value))


def _listed(values: list[str]) -> str:
    shown = ", ".join(str(v) for v in values[:MAX_SHOWN])
    return shown + (f" and {len(values) - MAX_SHOWN} more" if len(values) > MAX_SHOWN else "")


# --- generalisation -----------------------------------------------------------------------------
def rule_key(rule: dict) -> tuple:
    """What identifies a rule across inferences (its learned numbers aside)."""
    return (rule["kind"], rule["endpoint"], rule.get("param"), rule.get("other"), rule.get("op"), rule.get("user"))


def learn(frame: pd.DataFrame, settings: Settings, validation: float) -> tuple[list[str], list[dict], dict]:
    """Templates and the rules that hold on held-out normal traffic (see the module doc), and
    counts of what was inferred and dropped."""
    n = len(frame)
    frame = frame.iloc[np.argsort(frame["time"].to_numpy(dtype=np.float64), kind="stable")]
    cut = int(round(n * (1.0 - validation)))
    if validation > 0 and 0 < cut < n:
        templates = learn_templates(list(frame["path"].iloc[:cut]), settings.max_literals)
        matcher = Matcher(templates)
        first, held = Prepared(frame.iloc[:cut], matcher), Prepared(frame.iloc[cut:], matcher)
        candidate = infer(first, settings, templates)
        broken = {r for row in check(held, candidate, settings) for r, _ in row if r}  # rule 0, endpoints, stays
        dropped = {rule_key(candidate[r]) for r in broken}
        kept_keys = {rule_key(r) for r in candidate} - dropped
        open_prefixes = _open_prefixes(first, held, templates)
    else:
        kept_keys, dropped, open_prefixes = None, set(), []
    templates = learn_templates(list(frame["path"]), settings.max_literals)
    everything = Prepared(frame, Matcher(templates))
    rules = infer(everything, settings, templates)
    if kept_keys is not None:
        rules = [r for r in rules if r["kind"] == "endpoint" or rule_key(r) in kept_keys]
    rules[0]["open"] = open_prefixes
    summary = {"requests": n, "endpoints": len(rules[0]["known"]), "rules": len(rules) - 1,
               "dropped": len(dropped)}
    return templates, rules, summary


def _open_prefixes(first: Prepared, held: Prepared, templates: list[str]) -> list[str]:
    """The template prefixes under which the held-out part called endpoints the first part
    never did: where new paths are part of normal traffic."""
    prefixes = Matcher(sorted({"/" + "/".join(segments(t)[:d]) for t in templates
                               for d in range(len(segments(t)) + 1)}))
    known = set(first.templates) - {None}
    found = set()
    for path, template in zip(held.paths, held.templates):
        if template is None or template not in known:
            found.add(_longest_prefix(prefixes, path))
    return sorted(found)


# --- model file --------------------------------------------------------------------------------
_FIELDS = {
    "endpoint": {"known": list, "templates": list, "open": list},
    "params": {"known": list, "n": int},
    "required": {"param": str, "n": int},
    "type": {"param": str, "type": str, "n": int},
    "range": {"param": str, "low": float, "high": float, "n": int},
    "values": {"param": str, "values": list, "n": int},
    "length": {"param": str, "low": int, "high": int, "n": int},
    "relation": {"param": str, "other": str, "op": str, "n": int},
    "callers": {"users": list, "n": int},
    "owner": {"param": str, "owners": dict, "n": int},
    "scope": {"user": str, "prefixes": list, "avoided": list, "n": int},
    "flow": {"param": str, "warmup": float, "n": int},
    "after": {"other": str, "warmup": float, "n": int},
    "rate": {"user": str, "limit": int, "window": float, "n": int},
}


def check_rules(rules) -> list[dict]:
    """Rules read from a model file, checked field by field; ModelFileError on anything else."""
    if not isinstance(rules, list) or not rules or not isinstance(rules[0], dict) or rules[0].get("kind") != "endpoint":
        raise ModelFileError("model state: the API rules must be a list starting with the endpoint rule")
    for i, rule in enumerate(rules):
        kind = rule.get("kind") if isinstance(rule, dict) else None
        if kind not in _FIELDS or not isinstance(rule.get("endpoint"), str):
            raise ModelFileError(f"model state: API rule {i} has no known kind and endpoint")
        for name, expected in _FIELDS[kind].items():
            value = rule.get(name)
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                  if expected is float else isinstance(value, expected) and not isinstance(value, bool))
            if not ok or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                raise ModelFileError(f"model state: API rule {i} ({kind}) has a bad field {name!r}")
        if kind == "relation" and (rule["op"] not in ("==", "<=", "per-user") or (
                rule["op"] == "per-user" and not (isinstance(rule.get("values"), dict)
                                                  and all(isinstance(k, str) and isinstance(v, str)
                                                          for k, v in rule["values"].items())))):
            raise ModelFileError(f"model state: API rule {i} (relation) has a bad operator or values")
        if kind == "owner" and not all(isinstance(k, str) and isinstance(v, str) for k, v in rule["owners"].items()):
            raise ModelFileError(f"model state: API rule {i} (owner) must map ids to users")
        if kind == "type" and rule["type"] not in TYPES:
            raise ModelFileError(f"model state: API rule {i} names an unknown type {rule['type']!r}")
        if kind == "rate" and (rule["limit"] < 1 or rule["window"] <= 0):
            raise ModelFileError(f"model state: API rule {i} (rate) needs a limit >= 1 and a window > 0")
    if any(not is_placeholder(p) and "{" in p for t in rules[0]["templates"] for p in segments(t)):
        raise ModelFileError("model state: a path template has a malformed placeholder")
    return rules
