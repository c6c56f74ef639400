"""The `normalcy api` commands as a user runs them: fit on an access log, check another (only the
flagged requests, or all), list rules, bad input as one line; one real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from clirunner import run_in_process
from normalcy.api.synthetic import as_lines, shop_traffic


def run(*args: str):
    return run_in_process("api", *args)


def combined(request: dict) -> str:
    """A shop request in combined log format, with the request time in seconds at the end."""
    stamp = pd.Timestamp(request["time"], unit="s", tz="UTC").strftime("%d/%b/%Y:%H:%M:%S +0000")
    target = request["path"] + (f"?{request['query']}" if request["query"] else "")
    return (f'10.0.0.{len(request["user"])} - {request["user"]} [{stamp}] "{request["method"]} {target} HTTP/1.1" '
            f'{request["status"]} {request["size"]} "-" "shop-client" {request["latency"]}')


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("api")
    (root / "normal.jsonl").write_text("\n".join(as_lines(shop_traffic(seed=3, sessions=80))) + "\n")
    later = shop_traffic(seed=4, sessions=10)
    t = later[-1]["time"]
    later.append({"time": t + 1, "method": "GET", "path": "/admin/reports", "query": "from_day=1&to_day=2",
                  "status": 200, "latency": 0.1, "size": 100, "user": "u101"})
    (root / "today.jsonl").write_text("\n".join(as_lines(later)) + "\n")
    (root / "today.log").write_text("\n".join(combined(r) for r in later) + "\n")
    return root


@pytest.fixture(scope="module")
def model(files) -> Path:
    out = files / "shop.model"
    result = run("fit", str(files / "normal.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "invariants of 10 endpoints from" in result.stdout and "requests from" in result.stderr
    return out


@pytest.mark.parametrize("name", ["today.jsonl", "today.log"])
def test_check_writes_the_flagged_requests_with_the_rule_they_break(model, files, tmp_path, name):
    out = tmp_path / "flagged.jsonl"
    log_format = "jsonl" if name.endswith("jsonl") else "combined"
    # The model reads its own format; give the combined file to a model fitted on it.
    if log_format == "combined":
        fitted = tmp_path / "combined.model"
        (tmp_path / "normal.log").write_text("\n".join(combined(r) for r in shop_traffic(seed=3, sessions=80)) + "\n")
        assert run("fit", str(tmp_path / "normal.log"), "--out", str(fitted), "--format", "combined").returncode == 0
        model = fitted
    result = run("check", str(model), str(files / name), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    admin = [r for r in rows if r["path"] == "/admin/reports"]
    assert len(admin) == 1 and admin[0]["label"] == 1
    assert any(v.startswith("callers: GET /admin/reports: called by user u101") for v in admin[0]["violations"])
    assert all(r["label"] == 1 and r["violations"] for r in rows)
    assert f"requests checked, {len(rows)} break an invariant" in result.stdout


def test_check_all_writes_every_request_as_csv(model, files, tmp_path):
    out = tmp_path / "all.csv"
    result = run("check", str(model), str(files / "today.jsonl"), "--out", str(out), "--all")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert len(table) == len((files / "today.jsonl").read_text().splitlines())
    assert set(table["label"]) <= {0, 1} and table["where"].str.startswith(str(files / "today.jsonl")).all()


def test_rules_lists_the_invariants_of_a_kind(model):
    result = run("rules", str(model), "--kind", "callers")
    assert result.returncode == 0
    rules = [json.loads(line) for line in result.stdout.splitlines()]
    assert rules and all(r["kind"] == "callers" for r in rules)
    assert {"endpoint": "GET /admin/reports", "users": ["admin1", "admin2"]}.items() <= \
        next(r for r in rules if r["endpoint"] == "GET /admin/reports").items()


def test_bad_input_is_one_clear_line(model, files, tmp_path):
    (tmp_path / "junk.log").write_text("hello\nworld\n")
    for args, message in (
            (("check", str(model), str(tmp_path / "junk.log")), "no requests in"),
            (("check", str(model), str(tmp_path / "missing.log")), "no such log file"),
            (("fit", str(files / "normal.jsonl"), "--out", str(tmp_path / "m"), "--param", "min_support=1"),
             "min_support must be a whole number in [2"),
            (("fit", str(files / "normal.jsonl"), "--out", str(tmp_path / "m"), "--format", "(?P<x>.*)"),
             "named groups")):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_real_process_checks_a_log_from_stdin(model, files):
    done = subprocess.run([sys.executable, "-m", "normalcy", "api", "check", str(model), "-"],
                          input=(files / "today.jsonl").read_text(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert any("/admin/reports" in line for line in done.stdout.splitlines())
