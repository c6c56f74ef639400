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


def test_fit_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path):
    """Issue 12 item 1: a project folder with its own manifest.json lost every other file."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)}).to_csv(tmp_path / "t.csv", index=False)
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "manifest.json").write_text("{}")
    (project / "README.md").write_text("notes")
    result = run_in_process("table", "fit", "--data", str(tmp_path / "t.csv"), "--out", str(project),
                            "--threshold", "fixed:1")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not a normalcy model folder" in result.stderr
    assert sorted(p.name for p in project.iterdir()) == ["README.md", "manifest.json", "src"]
