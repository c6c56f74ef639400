"""The `normalcy logs` commands as a user runs them: a real process, exit codes, files, and
bad input that must give one clear line (or a documented skip) and never lose the rest."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

GROUP = r"blk_-?\d+"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "normalcy", *args], capture_output=True, timeout=300,
                          input=stdin)


def run_here(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    """The same entry point in this process (no interpreter start-up): exit status and stderr."""
    from normalcy.cli.main import main

    monkeypatch.setattr(sys, "argv", ["normalcy", *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


def hdfs_lines(rng: np.random.Generator, n_blocks: int, broken: set[int] = frozenset()) -> list[str]:
    """HDFS-format lines of n_blocks sessions; a broken block is allocated but never closed."""
    lines = []
    for b in range(n_blocks):
        blk = f"blk_{1000 + b}"
        lines.append(f"081109 2036{b % 60:02d} 1 INFO dfs.FSNamesystem: BLOCK* allocateBlock: /user/f{b} {blk}")
        for r in range(int(rng.integers(1, 4))):
            lines.append(f"081109 2036{b % 60:02d} 2 INFO dfs.DataNode: Receiving block {blk} src: /10.0.0.{r}:50010")
            lines.append(f"081109 2036{b % 60:02d} 3 INFO dfs.DataNode: Received block {blk} of size {r * 100 + 7}")
        if b not in broken:
            lines.append(f"081109 2036{b % 60:02d} 4 INFO dfs.DataNode: PacketResponder 1 for block {blk} terminating")
    return lines


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("logs")
    rng = np.random.default_rng(0)
    (root / "train.log").write_text("\n".join(hdfs_lines(rng, 150)) + "\n")
    (root / "new.log").write_text("\n".join(hdfs_lines(rng, 20, broken={3})) + "\n")
    (root / "labels.csv").write_text("BlockId,Label\n" + "".join(
        f"blk_{1000 + b},{'Anomaly' if b == 3 else 'Normal'}\n" for b in range(20)))
    return root


@pytest.fixture(scope="module")
def model(files) -> Path:
    result = run("logs", "fit", str(files / "train.log"), "--format", "hdfs", "--group-by", GROUP,
                 "--out", str(files / "m"))
    assert result.returncode == 0, result.stderr.decode()
    return files / "m"


def test_fit_writes_a_json_and_safetensors_model(model):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.logs.model.LogModel"
    assert manifest["threshold"] == 1.0
    assert len(manifest["state"]["parser"]["templates"]) == 4
    assert sorted(p.name for p in model.iterdir()) == ["arrays.safetensors", "manifest.json"]


def test_score_flags_the_broken_session_with_evidence(model, files, tmp_path):
    out = tmp_path / "scored.jsonl"
    result = run("logs", "score", str(model), str(files / "new.log"), "--out", str(out))
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20
    assert [r["group"] for r in rows if r["label"] == 1] == ["blk_1003"]
    flagged = next(r for r in rows if r["label"] == 1)
    assert any("count(" in reason for reason in flagged["reasons"])
    assert any("PacketResponder" in t or "allocateBlock" in t for t in flagged["evidence_templates"])
    assert flagged["evidence_lines"] and all(e.startswith(str(files / "new.log")) for e in flagged["evidence_lines"])


def test_score_reads_stdin_and_writes_csv(model, files, tmp_path):
    out = tmp_path / "scored.csv"
    result = run("logs", "score", str(model), "-", "--out", str(out), stdin=(files / "new.log").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and {r["label"] for r in rows} == {"0", "1"}


def test_evaluate_against_a_label_file(model, files, tmp_path):
    result = run("logs", "evaluate", str(model), str(files / "new.log"), "--labels", str(files / "labels.csv"),
                 "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr.decode()
    found = json.loads((tmp_path / "m.json").read_text())
    assert (found["tp"], found["fp"], found["fn"]) == (1, 0, 0) and found["f1"] == 1.0


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4, "binary"),
])
def test_empty_and_binary_files_are_refused_in_one_line(model, tmp_path, capsys, monkeypatch, content, message):
    bad = tmp_path / "bad.log"
    bad.write_bytes(content)
    code, err = run_here(capsys, monkeypatch, "logs", "score", str(model), str(bad))
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_undecodable_bytes_long_lines_and_nul_lines_are_kept_or_skipped_not_fatal(model, files, tmp_path):
    # Lines with no block id belong to no session: they pad the file past 8 KiB.
    filler = [b"081109 203600 5 INFO dfs.DataNode: heartbeat from the data node is fine\n"] * 150
    good = filler + (files / "new.log").read_bytes().splitlines(keepends=True)
    bad = tmp_path / "mixed.log"
    # After the first 8 KiB (so the file is not taken for binary): a non-UTF-8 line, a 1 MB
    # line and a line with a NUL byte, then the rest of the file.
    bad.write_bytes(b"".join(good[:200]) + b"081109 203600 9 INFO x: caf\xe9 \xff\xfe\n" + b"A" * 1_000_000 + b"\n"
                    + b"with a \x00 byte\n" + b"".join(good[200:]))
    assert len(b"".join(good[:200])) > 8192
    out = tmp_path / "scored.jsonl"
    result = run("logs", "score", str(model), str(bad), "--out", str(out))
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert "1 had bytes that are not UTF-8" in err and "1 were longer than" in err and "1 held NUL bytes" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # Every session after the bad lines is still there and still right.
    assert len(rows) == 20 and [r["group"] for r in rows if r["label"] == 1] == ["blk_1003"]


def test_bad_options_give_one_line(files, model, tmp_path, capsys, monkeypatch):
    for args, message in [
        (("logs", "fit", str(files / "train.log"), "--out", str(tmp_path / "x"), "--window", "1m",
          "--group-by", GROUP), "not both"),
        (("logs", "fit", str(files / "train.log"), "--out", str(tmp_path / "x"), "--model", "nope"), "unknown model"),
        (("logs", "score", str(model), str(files / "nothing.log")), "no such log file"),
        (("logs", "score", str(model), str(files / "new.log"), "--out", str(tmp_path / "r.txt")), ".jsonl"),
    ]:
        code, err = run_here(capsys, monkeypatch, *args)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
