"""The `normalcy` entry point itself: --version, and that no raw traceback reaches the user."""

from __future__ import annotations

from unittest import mock

from clirunner import run_in_process
from normalcy import __version__


def test_version_needs_no_command():
    result = run_in_process("--version")
    assert result.returncode == 0 and result.stdout.strip() == __version__


def test_a_bug_is_one_line_not_a_traceback(monkeypatch):
    monkeypatch.delenv("NORMALCY_DEBUG", raising=False)
    with mock.patch("normalcy.cli.common.list_models", side_effect=KeyError("boom")):
        result = run_in_process("table", "models")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("internal error: KeyError") and "report" in lines[0]


def test_input_nested_too_deeply_is_one_line(monkeypatch):
    with mock.patch("normalcy.cli.common.list_models", side_effect=RecursionError("maximum recursion depth")):
        result = run_in_process("table", "models")
    assert result.returncode == 2 and result.stderr.strip() == "error: the input is nested too deeply to read"
