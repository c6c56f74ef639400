"""Progress output: a bar on a terminal, plain lines in a log (issue 12 item 14: an 11-minute
fit once left an empty log), nothing when switched off."""

from __future__ import annotations

import pytest

from normalcy.core import progress as progress_module
from normalcy.core.progress import progress, set_progress


@pytest.fixture
def log_stderr(capsys, monkeypatch):
    """stderr captured, so not a terminal, as when output goes to a file or CI."""
    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.0)
    set_progress(None)
    return capsys


def test_without_a_terminal_progress_is_logged_as_lines(log_stderr):
    assert list(progress(range(4), desc="fit", unit="batch")) == [0, 1, 2, 3]
    lines = log_stderr.readouterr().err.splitlines()
    assert lines[0].startswith("fit: 1/4 batch (25%), ") and "left" in lines[0]
    assert lines[-1].startswith("fit: done, 4/4 batch (100%) in ")
    assert len(lines) == 5


def test_an_unsized_iterable_logs_counts(log_stderr):
    list(progress((i for i in range(3)), desc="read", unit="line"))
    assert log_stderr.readouterr().err.splitlines()[1].startswith("read: 2 line, ")


def test_a_quick_job_says_nothing_and_switched_off_says_nothing(log_stderr, monkeypatch):
    monkeypatch.setattr(progress_module, "LOG_EVERY", 3600.0)
    list(progress(range(100), desc="fit"))
    assert log_stderr.readouterr().err == ""
    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.0)
    set_progress(False)
    list(progress(range(3), desc="fit"))
    assert log_stderr.readouterr().err == ""
    set_progress(None)
