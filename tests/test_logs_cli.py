"""The `normalcy logs` commands as a user runs them: exit codes, messages, files, and bad input
that must give one clear line (or a documented skip) and never lose the rest. They run the
CLI's `main` in this process (a new interpreter costs seconds of imports); one runs a real
process to check the whole path from the shell."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from clirunner import run_in_process

GROUP = r"blk_-?\d+"


def run(*args: str, stdin: bytes | None = None) -> SimpleNamespace:
    """`normalcy ARGS` in this process (stdin given as bytes): returncode, stdout, stderr."""
    if stdin is None:
        return run_in_process(*args)
    saved = sys.stdin
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(stdin)))
    try:
        return run_in_process(*args)
    finally:
        sys.stdin = saved


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
def fitted(files) -> tuple[Path, SimpleNamespace]:
    result = run("logs", "fit", str(files / "train.log"), "--format", "hdfs", "--group-by", GROUP,
                 "--out", str(files / "m"))
    assert result.returncode == 0, result.stderr
    return files / "m", result


@pytest.fixture(scope="module")
def model(fitted) -> Path:
    return fitted[0]


def test_fit_writes_a_json_and_safetensors_model(model, files):
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["class"] == "normalcy.logs.model.LogModel"
    assert manifest["threshold"] == 1.0 and manifest["calibration"]["rule"] == "one broken invariant"
    assert len(manifest["state"]["parser"]["templates"]) == 4
    n_lines = len((files / "train.log").read_text().splitlines())
    assert manifest["state"]["training"] == {"lines": n_lines, "groups": 150}
    assert sorted(p.name for p in model.iterdir()) == ["arrays.safetensors", "manifest.json"]


def test_fit_message_says_what_an_event_is_and_how_many_sessions_trained_it(fitted, files):
    model, result = fitted
    n_lines = len((files / "train.log").read_text().splitlines())
    assert result.stdout.splitlines() == [
        f"saved invariants trained on 150 sessions (by --group-by) from {n_lines} lines (an event is one line's "
        f"template: 4 templates mined, 4 of them in the training sessions) to {model} (threshold 1: one broken "
        "invariant)"]
    assert result.stderr == f"{n_lines} lines read from 1 source(s)\n"


def test_a_held_out_threshold_says_how_many_sessions_set_it_and_warns_when_too_few(files, tmp_path):
    result = run("logs", "fit", str(files / "train.log"), "--format", "hdfs", "--group-by", GROUP,
                 "--detector", "clustering", "--param", "max_dist=0.2", "--threshold", "fpr:0.01",
                 "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "saved clustering trained on 135 sessions" in result.stdout
    assert "fpr:0.01 from 15 held-out sessions" in result.stdout
    assert "warning: 15 held-out normal items cannot resolve a false-alarm rate of 0.01" in result.stderr
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["detector_params"] == {"max_dist": 0.2} and manifest["calibration"]["n_items"] == 15


def test_score_flags_the_broken_session_with_evidence(model, files, tmp_path):
    out = tmp_path / "scored.jsonl"
    result = run("logs", "score", str(model), str(files / "new.log"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 20
    assert [r["group"] for r in rows if r["label"] == 1] == ["blk_1003"]
    flagged = next(r for r in rows if r["label"] == 1)
    assert any("count(" in reason for reason in flagged["reasons"])
    assert any("PacketResponder" in t or "allocateBlock" in t for t in flagged["evidence_templates"])
    assert flagged["evidence_lines"] and all(e.startswith(str(files / "new.log")) for e in flagged["evidence_lines"])
    assert result.stderr.endswith(f"20 sessions scored, 1 flagged anomalous; results in {out}\n")


def test_score_reads_stdin_and_writes_csv(model, files, tmp_path):
    out = tmp_path / "scored.csv"
    result = run("logs", "score", str(model), "-", "--out", str(out), stdin=(files / "new.log").read_bytes())
    assert result.returncode == 0, result.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20 and {r["label"] for r in rows} == {"0", "1"}


def test_evaluate_prints_the_shared_report_against_a_label_file(model, files, tmp_path):
    out = tmp_path / "m.json"
    result = run("logs", "evaluate", str(model), str(files / "new.log"), "--labels", str(files / "labels.csv"),
                 "--json", str(out))
    assert result.returncode == 0, result.stderr
    found = json.loads(out.read_text())
    assert (found["tp"], found["fp"], found["fn"]) == (1, 0, 0) and found["f1"] == 1.0
    assert found["n_groups"] == 20 and found["n_anomalies"] == 1 and found["detector"] == "invariants"
    figures, wrote = result.stdout.splitlines()
    assert figures.startswith("n_groups 20  n_anomalies 1  threshold 1.0000  auroc 1.0000")
    assert wrote == f"wrote {out}"


@pytest.mark.parametrize("content,message", [
    (b"", "is empty"),
    (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4, "binary"),
])
def test_empty_and_binary_files_are_refused_in_one_line(model, tmp_path, content, message):
    bad = tmp_path / "bad.log"
    bad.write_bytes(content)
    result = run("logs", "score", str(model), str(bad))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


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
    assert result.returncode == 0, result.stderr
    err = result.stderr
    assert "1 had bytes that are not UTF-8" in err and "1 were longer than" in err and "1 held NUL bytes" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # Every session after the bad lines is still there and still right.
    assert len(rows) == 20 and [r["group"] for r in rows if r["label"] == 1] == ["blk_1003"]


@pytest.mark.parametrize("args,message", [
    (("--window", "1m", "--group-by", GROUP), "not both"),
    (("--model", "nope"), "unknown logs detector 'nope'; expected one of invariants, pca, clustering, deeplog, unseen"),
    (("--format", "hdfs", "--window", "0s"), "duration '0s' must be longer than 0 s"),  # was: every line a group
    (("--param", "bogus=1"), "invariants has no parameter(s) bogus"),
    (("--param", "support=2"), "InvariantsMining support must be a number in (0.5, 1]"),
    (("--group-by", "blk_("), "--group-by 'blk_(' is not a valid regex"),
    (("--format", "hdfs", "--window", "1h"), "the log gives 1 window from 924 lines; invariants needs at least 2"),
])
def test_bad_fit_options_give_one_line_and_no_model(files, tmp_path, args, message):
    result = run("logs", "fit", str(files / "train.log"), "--out", str(tmp_path / "x"), *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert not (tmp_path / "x").exists()


def test_bad_score_options_give_one_line(model, files, tmp_path):
    for args, message in [((str(files / "nothing.log"),), "no such log file"),
                          ((str(files / "new.log"), "--out", str(tmp_path / "r.txt")), ".jsonl")]:
        result = run("logs", "score", str(model), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_models_and_formats_list_what_the_options_take():
    models = run("logs", "models").stdout
    assert [line.split(":")[0] for line in models.splitlines() if not line.startswith(" ")][:7] == \
        ["invariants", "pca", "clustering", "deeplog", "unseen", "semantic-seq", "semantic-bag"]
    formats = run("logs", "formats").stdout
    for name in ("syslog (= openssh, linux)", "syslog-iso", "apache-access (= nginx-access)", "apache-error",
                 "nginx-error", "jsonl (= json)"):
        assert f"\n{name}: " in f"\n{formats}"


@pytest.mark.parametrize("parser", ["drain", "masked"])
def test_a_semantic_detector_flags_a_new_kind_of_line_and_says_how_far_it_is(files, tmp_path, parser):
    out = tmp_path / "m"
    result = run("logs", "fit", str(files / "train.log"), "--format", "hdfs", "--group-by", GROUP, "--out", str(out),
                 "--detector", "semantic-bag", "--param", "embedder=hashing", "--parser", parser)
    assert result.returncode == 0, result.stderr
    assert "saved semantic-bag trained on" in result.stdout
    lines = (files / "new.log").read_text().splitlines()
    lines.insert(5, "081109 203610 9 ERROR dfs.DataNode: Disk failure on /dev/sda1 while writing blk_1001")
    today = tmp_path / "today.log"
    today.write_text("\n".join(lines) + "\n")
    scored = tmp_path / "s.jsonl"
    result = run("logs", "score", str(out), str(today), "--out", str(scored))
    assert result.returncode == 0, result.stderr
    rows = {r["group"]: r for r in map(json.loads, scored.read_text().splitlines())}
    assert rows["blk_1001"]["label"] == 1 and rows["blk_1001"]["score"] == max(r["score"] for r in rows.values())
    assert any("never seen in training: 'Disk failure on <PATH> while writing <BLK>'" in r
               for r in rows["blk_1001"]["reasons"])
    assert "unseen: Disk failure on <PATH> while writing <BLK>" in rows["blk_1001"]["evidence_templates"]


def test_an_unknown_parser_is_one_line(files, tmp_path):
    result = run("logs", "fit", str(files / "train.log"), "--out", str(tmp_path / "x"), "--parser", "spell")
    assert result.returncode == 2 and "parser must be one of drain, masked, got 'spell'" in result.stderr


def test_syslog_windows_are_named_by_readable_times_in_the_year_the_file_was_written(tmp_path):
    lines = [f"Dec 10 {6 + i // 60:02d}:{i % 60:02d}:00 LabSZ sshd[{100 + i}]: Accepted password for u{i % 3}"
             for i in range(180)]
    log = tmp_path / "auth.log"
    log.write_text("\n".join(lines) + "\n")
    written = datetime(2024, 1, 2, tzinfo=timezone.utc).timestamp()
    os.utime(log, (written, written))
    result = run("logs", "fit", str(log), "--format", "syslog", "--window", "1h", "--model", "unseen",
                 "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "time stamps carry no year: read in 2023" in result.stderr
    result = run("logs", "score", str(tmp_path / "m"), str(log))
    # Read in 1900 before, the windows were named "-2191938828" and so on.
    assert [json.loads(line)["group"] for line in result.stdout.splitlines()] == \
        ["2023-12-10 06:00:00", "2023-12-10 07:00:00", "2023-12-10 08:00:00"]
    result = run("logs", "score", str(tmp_path / "m"), str(log), "--year", "2019")
    assert json.loads(result.stdout.splitlines()[0])["group"] == "2019-12-10 06:00:00"


def test_apache_error_logs_have_a_format_and_an_unreadable_custom_time_is_named(tmp_path):
    levels = ["notice", "error"]
    lines = [f"[Sun Dec 04 {4 + i // 60:02d}:{i % 60:02d}:44 2005] [{levels[i % 2]}] worker {i % 5} in state {i % 3}"
             for i in range(120)]
    log = tmp_path / "error_log"
    log.write_text("\n".join(lines) + "\n")
    result = run("logs", "fit", str(log), "--format", "apache-error", "--window", "30m", "--model", "unseen",
                 "--out", str(tmp_path / "m"))
    assert result.returncode == 0, result.stderr
    assert "trained on 4 windows of 30m from 120 lines" in result.stdout
    # A custom time group that holds a word, not a time: the error names the line and the text.
    result = run("logs", "fit", str(log), "--format", r"\[(?P<time>\w+)[^\]]*\] (?P<content>.*)", "--window", "30m",
                 "--out", str(tmp_path / "c"))
    assert result.returncode == 2
    assert f"no line's time could be read: the first, {log}:1: 'Sun', is not a time" in result.stderr


def test_a_real_process_scores_from_the_shell(model, files, tmp_path):
    out = tmp_path / "scored.jsonl"
    result = subprocess.run([sys.executable, "-m", "normalcy", "logs", "score", str(model), str(files / "new.log"),
                             "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["group"] for line in out.read_text().splitlines() if json.loads(line)["label"]] == \
        ["blk_1003"]
    assert result.stderr.splitlines()[-1] == f"20 sessions scored, 1 flagged anomalous; results in {out}"


def test_fit_on_labelled_history_learns_level_weights_and_its_threshold(files, tmp_path):
    rng = np.random.default_rng(5)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lines, labels = hdfs_lines(rng, 160), []
    for b in range(160):
        kind = rng.random()
        if kind < 0.4:  # a new message of random words: normal operation's (INFO) or a failure's (FATAL)
            text = " ".join("".join(rng.choice(letters, 7)) for _ in range(4))
            level = "INFO" if kind < 0.25 else "FATAL"
            lines.append(f"081109 2036{b % 60:02d} 5 {level} dfs.DataNode: {text} blk_{1000 + b}")
        labels.append(f"blk_{1000 + b},{'Anomaly' if 0.25 <= kind < 0.4 else 'Normal'}\n")
    (tmp_path / "history.log").write_text("\n".join(lines) + "\n")
    (tmp_path / "labels.csv").write_text("BlockId,Label\n" + "".join(labels))
    common = ("logs", "fit", str(tmp_path / "history.log"), "--format", "hdfs", "--group-by", GROUP)
    semantic = ("--detector", "semantic-bag", "--param", "embedder=hashing")
    result = run(*common, *semantic, "--out", str(tmp_path / "m"), "--threshold", "history", "--labels",
                 str(tmp_path / "labels.csv"), "--folds", "5")
    assert result.returncode == 0, result.stderr
    assert "threshold" in result.stdout and "history from 160 held-out sessions" in result.stdout
    assert "level weights: INFO x0.25" in result.stdout
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["detector_params"]["level_weights"] == {"INFO": 0.25}
    for args, message in [((*semantic, "--threshold", "history"), "needs exactly one of --alert-regex or --labels"),
                          ((*semantic, "--alert-regex", "FATAL"), "label the groups for --threshold history"),
                          (("--threshold", "history", "--alert-regex", "FATAL"),
                           "needs a semantic detector (semantic-seq, semantic-bag), not invariants")]:
        result = run(*common, "--out", str(tmp_path / "x"), *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
        assert not (tmp_path / "x").exists()
