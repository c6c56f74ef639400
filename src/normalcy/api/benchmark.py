"""`normalcy api benchmark`: the API invariants on real and synthetic access logs with injected
tampering. The protocol (also in docs/api.md):

Corpora. ``openstack``: the REST lines of loghub's OpenStack sample (``OpenStack/OpenStack_2k.log``,
1,017 requests of nova's API over 15 minutes; no query parameters). ``shop``: the synthetic shop of
`normalcy.api.synthetic` (typed, ranged query parameters, roles; marked synthetic in every table),
a new traffic draw per seed. Each corpus in time order: the first TRAIN share is the normal
training traffic (the detector holds out its own validation part inside it), the rest the test
traffic, which is all normal.

The test traffic is checked as the continuation of the training traffic (the detector watches
the stream; a cut at the start of the test part would hide call orders that span it).

False alarms: the share of test requests flagged, on the test traffic as it is.

Injected tampering, INSTANCES per kind and seed, all of one kind into one copy of the test traffic,
made from the data alone (never from the learned rules):

    parameter tampering  a normal request with one parameter changed: an id of an object in the path
                         (an id one user only ever named) replaced by another user's object there
                         (or a fresh id of the same shape), a query value replaced by an attack
                         string or a number 1000 times too large, or an unknown parameter added
                         (role=admin)
    out-of-order call    a request naming an object (an id) moved to just before the first earlier
                         request of its user that named that object (deleted before it was read)
    privilege path       an admin path no one called (/admin/users, /.env ...) requested by a
                         normal user, or an endpoint of another role (called by at most 3 users in
                         training, under a top-level path the requesting user never called)
    burst                a normal request repeated BURST times within BURST_SECONDS by its user

A tampered request (a burst: any of its requests) is detected when it is flagged; recall is the
detected share of the instances. Precision is over requests: the flagged tampered requests
against all flagged requests of the copy (a burst also makes its user's next normal requests
break the rate rule: they count as false, as do the copy's false alarms).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from normalcy.api.access import read_requests
from normalcy.api.paths import segments, shape
from normalcy.api.synthetic import shop_traffic
from normalcy.core.benchmark import write_results
from normalcy.core.errors import DataError
from normalcy.core.registry import build

PACKAGES = ("numpy", "pandas")
COLUMNS = ["detector", "dataset", "kind", "precision", "recall", "false_alarm_rate", "n_instances", "n_normal",
           "caught_by"]
TRAIN = 0.6
INSTANCES = 10
BURST, BURST_SECONDS = 30, 3.0
KINDS = ("parameter tampering", "out-of-order call", "privilege path", "burst")
ATTACKS = ("1' OR '1'='1", "<script>alert(1)</script>", "../../../../etc/passwd", "A" * 2000)
ADMIN_PATHS = ("/admin", "/admin/users", "/.env", "/.git/config", "/server-status", "/actuator/env",
               "/internal/debug/vars")


def corpora(root: Path, seed: int) -> dict[str, pd.DataFrame]:
    openstack = root / "OpenStack" / "OpenStack_2k.log"
    if not openstack.is_file():
        raise DataError(f"benchmark data missing: {openstack} (expected loghub's folder, see ../shared/data/README.md)")
    return {"openstack": read_requests(openstack, "openstack")[0],
            "shop (synthetic)": read_requests(pd.DataFrame(shop_traffic(seed, sessions=400)))[0]}


def split(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = frame.iloc[np.argsort(frame["time"].to_numpy(), kind="stable")].reset_index(drop=True)
    cut = int(TRAIN * len(frame))
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


# --- injections ------------------------------------------------------------------------------------
def inject(kind: str, train: pd.DataFrame, test: pd.DataFrame, rng: np.random.Generator, instances: int
           ) -> tuple[pd.DataFrame, np.ndarray]:
    """A copy of `test` with `instances` tamperings of `kind`, and per row the instance it belongs
    to (-1 for the normal rows); fewer instances where the traffic offers fewer places."""
    make = {"parameter tampering": _tamper, "out-of-order call": _reorder, "privilege path": _privilege,
            "burst": _burst}[kind]
    added, removed = [], set()
    for k in range(instances * 3):  # a place already taken is drawn again, up to 3 times over
        if len(added) == instances:
            break
        found = make(train, test, rng)
        if found is None:
            break
        rows, taken = found
        if taken is not None and removed & set(taken):
            continue
        removed |= set(taken or ())
        added.append(rows.assign(instance=len(added)))
    combined = pd.concat([test.drop(index=sorted(removed)).assign(instance=-1), *added], ignore_index=True)
    combined = combined.iloc[np.argsort(combined["time"].to_numpy(), kind="stable")].reset_index(drop=True)
    return combined.drop(columns="instance"), combined["instance"].to_numpy()


def _tamper(train, test, rng):
    i = int(rng.integers(len(test)))
    row = test.iloc[[i]].copy()
    path, query = row["path"].iat[0], row["query"].iat[0]
    parts = segments(path)
    # Another user's object: an id in the path that one user only ever named (an order, a
    # server; not a product everyone views).
    everyone = pd.concat([train, test])
    users_of: dict[str, set] = {}
    for p, u in zip(everyone["path"], everyone["user"]):
        for s in segments(p):
            users_of.setdefault(s, set()).add(u)
    ids = [j for j, s in enumerate(parts) if shape(s) in ("uuid", "hex", "int") and len(users_of.get(s, ())) == 1]
    options = ["param"] + (["idor"] if ids else []) + (["query"] if query else [])
    how = options[int(rng.integers(len(options)))]
    if how == "idor":
        j = ids[int(rng.integers(len(ids)))]
        others = sorted({segments(p)[j] for p, u in zip(everyone["path"], everyone["user"])
                         if len(segments(p)) == len(parts) and u != row["user"].iat[0]
                         and shape(segments(p)[j]) == shape(parts[j]) and segments(p)[j] != parts[j]
                         and len(users_of[segments(p)[j]]) == 1})
        parts[j] = others[int(rng.integers(len(others)))] if others else _fresh(parts[j], rng)
        row["path"] = "/" + "/".join(parts)
    elif how == "query":
        pairs = [p.split("=", 1) + [""] for p in query.split("&")]
        k = int(rng.integers(len(pairs)))
        value = pairs[k][1]
        pairs[k][1] = str(int(value) * 1000) if value.isdigit() and rng.random() < 0.5 else \
            ATTACKS[int(rng.integers(len(ATTACKS)))]
        row["query"] = "&".join(f"{a}={b}" for a, b, *_ in pairs)
    else:
        row["query"] = (query + "&" if query else "") + "role=admin"
    return row, None


def _fresh(segment: str, rng) -> str:
    kind = shape(segment)
    if kind == "int":
        return str(int(segment) + int(rng.integers(1, 10_000)))
    digits = "0123456789abcdef"
    return "".join(c if c == "-" else digits[int(rng.integers(16))] for c in segment)


def _reorder(train, test, rng):
    """Requests whose id was named first by another request of the same user: move one to just
    before that first mention."""
    first: dict[tuple[str, str], int] = {}
    candidates = []
    for i, (path, user) in enumerate(zip(test["path"], test["user"])):
        for s in segments(path):
            if shape(s) in ("uuid", "hex", "int", "token"):
                earlier = first.setdefault((user, s), i)
                if earlier != i and _shape_of(test["path"].iat[earlier]) != _shape_of(path) \
                        or earlier != i and test["method"].iat[earlier] != test["method"].iat[i]:
                    candidates.append((i, earlier))
    # An id its user named in their first request may be older than the traffic (a project, an
    # account): only objects that came up during the traffic have an order to break.
    opening = test.groupby("user", sort=False).head(1).index
    candidates = [(i, e) for i, e in candidates if test.index[e] not in opening]
    if not candidates:
        return None
    i, earlier = candidates[int(rng.integers(len(candidates)))]
    row = test.iloc[[i]].copy()
    row["time"] = test["time"].iat[earlier] - 1e-3
    return row, [test.index[i]]


def _shape_of(path: str) -> tuple:
    return tuple(shape(s) or s for s in segments(path))


def _privilege(train, test, rng):
    """An admin path, or an endpoint of another role: called by at most 3 users in training,
    under a top-level path this request's user never called."""
    row = test.iloc[[int(rng.integers(len(test)))]].copy()
    user = row["user"].iat[0]
    mine = {_top(p) for p in train.loc[train["user"] == user, "path"]}
    known = len(train.loc[train["user"] == user]) >= 5  # a role needs a user seen in training
    endpoints = train.assign(endpoint=[f"{m} {_shape_of(p)}" for m, p in zip(train["method"], train["path"])])
    callers = endpoints.groupby("endpoint")["user"].agg(lambda u: set(u))
    tops = endpoints.groupby("endpoint")["path"].first().map(_top)
    few = [e for e, users in callers.items() if len(users) <= 3 and user not in users and tops[e] not in mine]
    if known and few and rng.random() < 0.5:
        endpoint = few[int(rng.integers(len(few)))]
        example = train[[f"{m} {_shape_of(p)}" == endpoint for m, p in zip(train["method"], train["path"])]].iloc[[0]]
        example = example.assign(time=row["time"].iat[0], user=row["user"].iat[0], client=row["client"].iat[0])
        return example, None
    row["path"] = ADMIN_PATHS[int(rng.integers(len(ADMIN_PATHS)))]
    row["query"] = ""
    return row, None


def _top(path: str) -> str:
    parts = segments(path)
    return parts[0] if parts else ""


def _burst(train, test, rng):
    row = test.iloc[[int(rng.integers(len(test)))]]
    start = row["time"].iat[0]
    copies = pd.concat([row] * BURST, ignore_index=True)
    copies["time"] = start + np.sort(rng.uniform(0.0, BURST_SECONDS, BURST))
    return copies, None


# --- evaluation -------------------------------------------------------------------------------------
def evaluate_corpus(name: str, frame: pd.DataFrame, seed: int, instances: int) -> tuple[dict, list[dict]]:
    """False alarms on the test traffic, and per kind the outcome of each injected instance."""
    train, test = split(frame)
    detector = build("api", "mines").fit(train)

    def explain(traffic):
        # The test traffic is checked as the continuation of the training traffic, as a detector
        # watching the stream sees it (a cut would hide the order of calls that span it).
        explanation = detector.explain(pd.concat([train, traffic], ignore_index=True))
        return explanation.scores[len(train):], explanation.evidence[len(train):]

    normal_scores = explain(test)[0]
    base = {"false_alarms": int((normal_scores >= detector.threshold_).sum()), "n_normal": len(test),
            "rules": detector.summary_["rules"]}
    outcomes = []
    rng = np.random.default_rng(seed)
    for kind in KINDS:
        combined, instance = inject(kind, train, test, rng, instances)
        scores, evidence = explain(combined)
        flagged = scores >= detector.threshold_
        normal_flagged = int(flagged[instance < 0].sum())
        for k in range(instance.max() + 1):
            rows = np.flatnonzero(instance == k)
            hits = rows[flagged[rows]]
            outcomes.append({"dataset": name, "kind": kind, "detected": bool(len(hits)), "flagged": int(len(hits)),
                             "normal_flagged": normal_flagged if k == 0 else 0,
                             "caught_by": [e.split(":", 1)[0] for i in hits for e in evidence[i]],
                             "request": " ".join(str(v) for v in combined.loc[rows[0], ["user", "method", "path",
                                                                                      "query"]]),
                             "example": evidence[hits[0]][0] if len(hits) else None})
    return base, outcomes


def summarise(name: str, bases: list[dict], outcomes: list[dict]) -> list[dict]:
    fa = sum(b["false_alarms"] for b in bases) / sum(b["n_normal"] for b in bases)
    records = []
    frame = pd.DataFrame(outcomes)
    for kind in (*KINDS, "all kinds"):
        part = frame if kind == "all kinds" else frame[frame["kind"] == kind] if len(frame) else frame
        rec = {"detector": "mines", "dataset": name, "kind": kind, "false_alarm_rate": fa,
               "n_normal": int(np.mean([b["n_normal"] for b in bases])), "n_instances": int(len(part))}
        if len(part):
            flagged, flagged_normal = int(part["flagged"].sum()), int(part["normal_flagged"].sum())
            rec["recall"] = float(part["detected"].mean())
            rec["precision"] = flagged / (flagged + flagged_normal) if flagged + flagged_normal else None
            kinds = pd.Series([c for cs in part["caught_by"] for c in cs]).value_counts()
            rec["caught_by"] = ", ".join(f"{k} {v}" for k, v in kinds.items())
            rec["example"] = next((e for e in part["example"] if e), None)
        else:
            rec.update(recall=None, precision=None, caught_by="not measurable: no place for it in this traffic")
        records.append(rec)
    return records


def run(root: str | Path, json_path: str | Path, seeds: int = 5, instances: int = INSTANCES):
    if not isinstance(seeds, int) or seeds < 1:
        raise DataError(f"seeds must be a whole number >= 1, got {seeds!r}")
    root = Path(root)
    start = time.perf_counter()
    results: dict[str, tuple[list, list]] = {}
    for seed in range(seeds):
        for name, frame in corpora(root, seed).items():
            print(f"benchmark: {name}, seed {seed} ...", file=sys.stderr, flush=True)
            base, outcomes = evaluate_corpus(name, frame, seed, instances)
            bases, all_outcomes = results.setdefault(name, ([], []))
            bases.append(base)
            all_outcomes.extend(outcomes)
    records = [r for name, (bases, outcomes) in results.items() for r in summarise(name, bases, outcomes)]
    settings = {"train": TRAIN, "instances_per_kind_and_seed": instances, "seeds": seeds, "burst": BURST,
                "burst_seconds": BURST_SECONDS, "seconds": round(time.perf_counter() - start, 1)}
    json_out, md_out = write_results(records, json_path, PACKAGES, "API invariants on injected tampering", COLUMNS,
                                     settings)
    return json_out, md_out, records
