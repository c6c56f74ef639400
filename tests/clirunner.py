"""`normalcy ARGS` through the CLI's entry point in this process, for tests that need no
subprocess: returncode, stdout and stderr as a subprocess would give them."""

from __future__ import annotations

import contextlib
import io
import sys
from types import SimpleNamespace
from unittest import mock

from normalcy.cli.main import main


def run_in_process(*argv: str) -> SimpleNamespace:
    out, err, code = io.StringIO(), io.StringIO(), 0
    with mock.patch.object(sys, "argv", ["normalcy", *argv]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exc:
            code = exc.code or 0
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
