"""API invariants (normalcy.api): reading access logs, path templates, each kind of invariant
inferred from hand-made traffic and broken by one hand-made request with its plain-words
evidence, rules that held in training but not on the held-out part dropped, bounded custom
formats, model files that are refused, and the serving codec."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from normalcy.api import Mines
from normalcy.api.access import read_requests
from normalcy.api.invariants import check_rules
from normalcy.api.paths import Matcher, learn_templates
from normalcy.api.serving import ApiCodec
from normalcy.core.errors import DataError, ModelFileError
from normalcy.serve.codec import Limits, parse_inputs


def test_reading_combined_jsonl_and_openstack_lines():
    combined = ['1.2.3.4 - frank [10/Oct/2000:13:55:36 -0700] "GET /users/7?page=2&q=a%20b HTTP/1.1" 200 2326 '
                '"http://ref" "agent/1.0" 0.031',
                "not a request at all"]
    frame, stats = read_requests(combined)
    assert stats.skipped == 1 and len(frame) == 1
    row = frame.iloc[0]
    assert (row.time, row.method, row.path, row.query, row.status, row["size"], row.latency, row.user) == \
        (971211336.0, "GET", "/users/7", "page=2&q=a%20b", 200, 2326, 0.031, "frank")
    jsonl = [json.dumps({"ts": "2024-01-01T00:00:00Z", "method": "post", "url": "/a?x=1", "query": {"y": [2, 3]},
                         "status": 201, "latency_ms": 12, "ip": "10.0.0.1"})]
    row = read_requests(jsonl)[0].iloc[0]
    assert (row.method, row.path, row.query, row.latency, row.user) == ("POST", "/a", "x=1&y=2&y=3", 0.012, "10.0.0.1")
    openstack = ['nova-api.log.1 2017-05-16 00:00:00.008 25746 INFO nova.osapi_compute.wsgi.server [req-38 113d 54fa'
                 ' - - -] 10.11.10.1 "GET /v2/54fa/servers/detail HTTP/1.1" status: 200 len: 1893 time: 0.2477829']
    row = read_requests(openstack)[0].iloc[0]
    assert (row.user, row.client, row.status, row["size"]) == ("113d", "10.11.10.1", 200, 1893)


def test_templates_turn_ids_and_crowded_names_into_parameters():
    paths = ["/users/7/orders/9f1c2b3a-1111-2222-3333-444455556666",
             "/users/8/orders/9f1c2b3a-1111-2222-3333-444455556667",
             *(f"/tags/name{i}" for i in range(30)), "/tags/popular", "/v2/54fadb412c4e40cdbaed9335e4c35a9e/servers"]
    templates = learn_templates(paths, max_literals=20)
    assert templates == ["/tags/{value}", "/users/{int}/orders/{uuid}", "/v2/{hex}/servers"]
    template, values = Matcher(templates).match("/users/12/orders/9f1c2b3a-1111-2222-3333-444455550000")
    assert template == "/users/{int}/orders/{uuid}" and values == {"{int}": "12",
                                                                  "{uuid}": "9f1c2b3a-1111-2222-3333-444455550000"}
    assert Matcher(templates).match("/users/abc/orders/x") == (None, {})


def traffic(n_sessions: int = 40, start: float = 1000.0) -> list[dict]:
    """Two users (alice owns account 1001, bob 2002) reading then deleting items; an admin."""
    rows, t = [], start
    for k in range(n_sessions):
        user, account = [("alice", "1001"), ("bob", "2002")][k % 2]
        item = str(50_000 + k)
        for method, path, query, status in (
                ("GET", f"/accounts/{account}/items", f"page={1 + k % 5}&limit=20", 200),
                ("GET", f"/accounts/{account}/items/{item}", "", 200),
                ("DELETE", f"/accounts/{account}/items/{item}", "", 204)):
            t += 2.0
            rows.append({"time": t, "method": method, "path": path, "query": query, "status": status,
                         "latency": 0.05 + 0.01 * (k % 3), "user": user})
        if k % 8 == 0:
            t += 2.0
            rows.append({"time": t, "method": "GET", "path": "/admin/stats", "query": "", "status": 200,
                         "latency": 0.2, "user": "root"})
    return rows


@pytest.fixture(scope="module")
def model():
    return Mines(validation=0.0).fit(pd.DataFrame(traffic()))


def one(model, request: dict, before: list[dict] | None = None) -> list[str]:
    """The evidence for `request` checked after the (normal) requests `before`."""
    rows = (before or []) + [request]
    return model.explain(pd.DataFrame(rows)).evidence[-1]


NEXT = {"time": 10_000.0, "status": 200, "latency": 0.05, "query": ""}


@pytest.mark.parametrize("request_, kind, words", [
    ({"method": "GET", "path": "/accounts/1001/items", "query": "page=3&limit=20", "user": "alice"}, None, None),
    ({"method": "GET", "path": "/admin/users", "user": "alice"}, "endpoint", "an endpoint never seen in training"),
    ({"method": "POST", "path": "/accounts/1001/items", "query": "page=1&limit=20", "user": "alice"}, "endpoint",
     "never called with POST in training (only GET)"),
    ({"method": "GET", "path": "/accounts/1001/items", "query": "page=1&limit=20&debug=1", "user": "alice"}, "params",
     "parameter ?debug was never sent"),
    ({"method": "GET", "path": "/accounts/1001/items", "query": "limit=20", "user": "alice"}, "required",
     "parameter ?page is missing; it was sent in all"),
    ({"method": "GET", "path": "/accounts/1001/items", "query": "page=1 OR 1=1&limit=20", "user": "alice"}, "type",
     "?page was always of type int in training; got '1 OR 1=1'"),
    ({"method": "GET", "path": "/accounts/1001/items", "query": "page=4&limit=5000", "user": "alice"}, "values",
     "?limit was always one of 20 in training; got '5000'"),
    ({"method": "GET", "path": "/accounts/2002/items", "query": "page=1&limit=20", "user": "alice"}, "relation",
     "user alice always sent {int}=1001 in training; this request has {int}=2002"),
    ({"method": "GET", "path": "/admin/stats", "user": "alice"}, "callers",
     "called by user alice, but in training only by root"),
    ({"method": "GET", "path": "/accounts/1001/items", "query": "page=2&limit=20", "user": "alice", "status": 500},
     "values", "status was always one of 200 in training; got '500'"),
])
def test_each_kind_of_invariant_is_broken_with_its_rule_in_plain_words(model, request_, kind, words):
    evidence = one(model, {**NEXT, **request_})
    if kind is None:
        assert evidence == []
    else:
        assert any(e.startswith(f"{kind}: ") and words in e for e in evidence), evidence


def test_call_order_owner_and_rate(model):
    # An item deleted before anyone read it: flow (and only past the rule's warm-up).
    read_first = [{**NEXT, "time": 10_000.0 + i, "method": "GET", "path": "/accounts/1001/items",
                   "query": "page=1&limit=20", "user": "alice"} for i in range(0, 60, 3)]
    evidence = one(model, {**NEXT, "time": 10_070.0, "method": "DELETE", "path": "/accounts/1001/items/77777",
                           "status": 204, "user": "alice"}, read_first)
    assert any(e.startswith("flow: ") and "{int2}=77777 was never named in an earlier request" in e for e in evidence)
    # Bob reads an item alice read: owner.
    alice = {**NEXT, "method": "GET", "path": "/accounts/1001/items/60000", "user": "alice"}
    evidence = one(model, {**alice, "time": 10_002.0, "path": "/accounts/2002/items/60000", "user": "bob"}, [alice])
    assert any(e.startswith("owner: ") and "belongs to user alice; user bob named it" in e for e in evidence)
    # 40 requests in 4 s: the busiest 10 s of training held 5.
    burst = [{**NEXT, "time": 10_000.0 + 0.1 * i, "method": "GET", "path": "/accounts/1001/items",
              "query": "page=1&limit=20", "user": "alice"} for i in range(40)]
    evidence = model.explain(pd.DataFrame(burst)).evidence
    flagged = [i for i, e in enumerate(evidence) if any(x.startswith("rate: ") for x in e)]
    limit = next(r["limit"] for r in model.rules_ if r["kind"] == "rate" and r["user"] == "alice")
    assert flagged == list(range(limit, 40))


def test_rules_broken_on_the_held_out_part_are_dropped():
    rows = traffic(60)
    for k, row in enumerate(rows[-40:]):
        if row["method"] == "GET" and row["query"]:
            row["query"] = row["query"].replace("limit=20", "limit=50")  # the last part pages by 50
    kept = Mines(validation=0.25).fit(pd.DataFrame(rows))
    assert not [r for r in kept.rules_ if r["kind"] == "values" and r.get("param") == "?limit"]
    assert kept.summary_["dropped"] >= 1
    again = Mines(validation=0.0).fit(pd.DataFrame(rows))
    assert [r for r in again.rules_ if r["kind"] == "values" and r.get("param") == "?limit"]


def test_scores_count_broken_rules_and_explanations_split_them_by_kind(model):
    frame = pd.DataFrame([{**NEXT, "method": "GET", "path": "/accounts/2002/items", "query": "page=x&limit=20",
                           "user": "alice"}])
    explanation = model.explain(frame)
    assert explanation.scores[0] == len(explanation.evidence[0]) == explanation.contributions.sum()
    assert model.predict(frame)[0] == 1
    assert explanation.contributions[0, explanation.parts.index("type")] == 1


def test_a_custom_format_is_bounded_and_a_model_file_regex_too(tmp_path):
    fmt = r"(?P<user>\w+) (?P<method>[A-Z]+) (?P<path>\S+)"
    fitted = Mines(log_format=fmt, min_support=2, validation=0.0).fit(["ann GET /a", "bob GET /a", "ann GET /b"] * 3)
    assert fitted.decision_function(["ann GET /zzz"])[0] >= 1
    with pytest.raises(DataError, match="named groups"):
        Mines(log_format="(?P<x>.*)").fit(["x"])
    evil = Mines(log_format=r"(?P<method>(a|aa)+)$(?P<path>x)", min_support=2, validation=0.0)
    with pytest.raises(DataError, match="backtracks too much"):
        evil.fit(["a" * 40 + "b"])


@pytest.mark.parametrize("mutate, message", [
    (lambda rules: rules.__setitem__(0, {"kind": "nope"}), "starting with the endpoint rule"),
    (lambda rules: rules.append({"kind": "type", "endpoint": "GET /a", "param": "?x", "type": "regex:.*", "n": 3}),
     "unknown type"),
    (lambda rules: rules.append({"kind": "rate", "endpoint": "*", "user": "*", "limit": 0, "window": 1.0, "n": 3}),
     "limit >= 1"),
    (lambda rules: rules.append({"kind": "range", "endpoint": "GET /a", "param": "?x", "low": "0", "high": 1, "n": 3}),
     "bad field 'low'"),
])
def test_malformed_rules_in_a_model_file_are_refused(model, mutate, message):
    rules = json.loads(json.dumps(model.rules_))
    mutate(rules)
    with pytest.raises(ModelFileError, match=message):
        check_rules(rules)


def test_the_codec_gives_each_request_its_line_and_score(model):
    codec = ApiCodec(model, Limits())
    lines = [json.dumps({**NEXT, "method": "GET", "path": "/admin/users", "user": "alice"}), "garbage",
             json.dumps({**NEXT, "time": 10_001.0, "method": "GET", "path": "/accounts/1001/items",
                         "query": "page=1&limit=20", "user": "alice"})]
    body = {"inputs": [{"name": "lines", "datatype": "BYTES", "shape": [3], "data": lines}]}
    out = {o.name: o.data for o in codec.predict(codec.decode(parse_inputs(body, codec.inputs, Limits()), {}), {})}
    np.testing.assert_array_equal(out["line"], [1, 3])
    np.testing.assert_array_equal(out["score"] >= 1, [True, False])
