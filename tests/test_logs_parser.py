"""Template mining: masking, learning, match-only scoring, and the saved state."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import numpy as np
import pytest

from normalcy.core.errors import DataError, ModelFileError
from normalcy.logs.formats import FORMATS, get_format, read_logs, records_from_lines
from normalcy.logs.parser import UNSEEN, LogParser

# The generator's templates, with the masks the parser should put in place of the variables.
TEMPLATES = [
    ("Receiving block {blk} src: /{ip}:{port} dest: /{ip}:{port}",
     "Receiving block <BLK> src: /<IP> dest: /<IP>"),
    ("PacketResponder {n} for block {blk} terminating", "PacketResponder <NUM> for block <BLK> terminating"),
    ("Deleting block {blk} file {path}", "Deleting block <BLK> file <PATH>"),
    ("writeBlock {blk} received exception java.io.IOException at {hex}",
     "writeBlock <BLK> received exception java.io.IOException at <HEX>"),
    ("Served block {blk} to {ip} in {n} ms", "Served block <BLK> to <IP> in <NUM> ms"),
]


def hdfs_like_lines(rng: np.random.Generator, n: int) -> tuple[list[str], list[int]]:
    lines, kinds = [], []
    for _ in range(n):
        k = int(rng.integers(len(TEMPLATES)))
        ip = ".".join(str(int(v)) for v in rng.integers(0, 256, 4))
        lines.append(TEMPLATES[k][0].format(
            blk=f"blk_{int(rng.integers(-10**12, 10**12))}", ip=ip, port=int(rng.integers(1, 65536)),
            n=int(rng.integers(0, 1000)), path=f"/data/dfs/{'sub/' * int(rng.integers(1, 3))}f{int(rng.integers(99))}",
            hex=hex(int(rng.integers(1, 2**32)))))
        kinds.append(k)
    return lines, kinds


@pytest.fixture(scope="module")
def mined():
    lines, kinds = hdfs_like_lines(np.random.default_rng(0), 400)
    parser = LogParser()
    ids = parser.fit(lines)
    return parser, lines, kinds, ids


def test_masks_replace_each_kind_of_variable():
    parser = LogParser()
    assert parser.mask("blk_-123 10.1.2.3:50010 0xdeadBEEF /var/log/x.log 42 -7 3.5 deadbeef00 R02-M1") == \
        "<BLK> <IP> <HEX> <PATH> <NUM> <NUM> <NUM> <ID> R02-M1"


def test_mining_finds_one_template_per_message_kind_with_masked_variables(mined):
    parser, _, kinds, ids = mined
    assert sorted(parser.templates().values()) == sorted(t for _, t in TEMPLATES)
    # Same kind <=> same event id.
    pairs = set(zip(kinds, ids.tolist()))
    assert len(pairs) == len(TEMPLATES) == len({i for _, i in pairs})
    assert UNSEEN not in ids


def test_match_only_does_not_learn(mined):
    parser, lines, _, ids = mined
    before = {cid: (c.log_template_tokens, c.size) for cid, c in parser.drain.id_to_cluster.items()}
    new = ["Completely different message with 3 words", "Another unseen line", lines[0]]
    got = parser.transform(new)
    assert got[:2].tolist() == [UNSEEN, UNSEEN] and got[2] == ids[0]
    assert parser.transform(new[:1])[0] == UNSEEN  # still unseen: nothing was learned
    assert {cid: (c.log_template_tokens, c.size) for cid, c in parser.drain.id_to_cluster.items()} == before


def test_state_round_trip_gives_identical_ids(mined):
    parser, lines, _, ids = mined
    arrays, meta = parser.get_state()
    assert all(isinstance(t, list) for t in meta["templates"])  # plain JSON, no pickles
    again = LogParser.from_state(arrays, meta)
    probe = lines[:50] + hdfs_like_lines(np.random.default_rng(9), 50)[0] + ["never seen before"]
    assert np.array_equal(again.transform(probe), parser.transform(probe))
    assert again.templates() == parser.templates()


def test_state_with_mismatched_templates_is_refused(mined):
    arrays, meta = mined[0].get_state()
    with pytest.raises(ModelFileError):
        LogParser.from_state(arrays, {**meta, "templates": meta["templates"][:-1]})


def split(fmt, line: str):
    """(time, level, component, content, matched) of one line, as a reader of a file written now."""
    rec = records_from_lines([line], fmt if not isinstance(fmt, str) else get_format(fmt))
    return rec.times[0], rec.levels[0], rec.components[0], rec.contents[0], not rec.stats.unmatched


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize("name,line,expected", [
    ("hdfs", "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating",
     (utc(2008, 11, 9, 20, 36, 15), "INFO", "dfs.DataNode$PacketResponder",
      "PacketResponder 1 for block blk_3 terminating")),
    ("bgl", "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL "
     "INFO instruction cache parity error corrected",
     (1117838570.0, "INFO", "KERNEL", "instruction cache parity error corrected")),
    ("syslog-iso", "2023-12-10T06:55:46.5+01:00 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
     (utc(2023, 12, 10, 5, 55, 46) + 0.5, "", "sshd", "Invalid user webmaster from 173.234.31.186")),
    ("apache-error", "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6",
     (utc(2005, 12, 4, 4, 47, 44), "error", "", "mod_jk child workerEnv in error state 6")),
    ("apache-error", "[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] File does not exist",
     (utc(2000, 10, 11, 14, 32, 52) + 0.123456, "error", "core", "[pid 35708:tid 4328636416] File does not exist")),
    ("apache-access", '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
     (utc(2000, 10, 10, 20, 55, 36), "", "", '"GET /apache_pb.gif HTTP/1.0" 200 2326')),
    ("nginx-error", '2023/10/11 14:32:52 [error] 1234#5678: *1 open() "/x" failed (2: No such file or directory)',
     (utc(2023, 10, 11, 14, 32, 52), "error", "1234#5678", '*1 open() "/x" failed (2: No such file or directory)')),
    ("jsonl", '{"time": "2023-10-11T14:32:52Z", "level": "warn", "logger": "db", "msg": "slow query 3 s"}',
     (utc(2023, 10, 11, 14, 32, 52), "warn", "db", "slow query 3 s")),
    ("json", '{"time": 1697034772000, "level": 40, "message": "pino logs epoch milliseconds"}',
     (utc(2023, 10, 11, 14, 32, 52), "40", "", "pino logs epoch milliseconds")),
])
def test_header_presets_split_fields_and_read_the_time(name, line, expected):
    time, level, component, content, matched = split(name, line)
    assert matched and (level, component, content) == expected[1:]
    assert time == pytest.approx(expected[0], abs=1e-6)


def test_syslog_presets_split_fields():
    for name, line, expected in [
        ("openssh", "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
         ("", "sshd", "Invalid user webmaster from 173.234.31.186")),
        ("linux", "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
         ("", "sshd(pam_unix)", "check pass; user unknown")),
    ]:
        time, level, component, content, matched = split(name, line)
        assert matched and (level, component, content) == expected and time is not None


def test_header_times_are_seconds():
    rec = records_from_lines(["081109 203615 1 INFO a: x", "081109 203715 1 INFO a: y"], FORMATS["hdfs"])
    assert rec.times[1] - rec.times[0] == 60.0


def test_syslog_stamps_take_the_latest_year_not_after_the_files_modification_time(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("Dec 31 23:59:00 h sshd[1]: before midnight\nJan  1 00:01:00 h sshd[1]: after midnight\n")
    os.utime(log, (utc(2024, 1, 1, 0, 5), utc(2024, 1, 1, 0, 5)))
    rec = read_logs([log], FORMATS["syslog"])
    # Read in 1900 before: windows were named by negative epoch seconds.
    assert rec.times == [utc(2023, 12, 31, 23, 59), utc(2024, 1, 1, 0, 1)]
    assert "time stamps carry no year: read in 2023, 2024" in rec.stats.summary()
    given = read_logs([log], FORMATS["syslog"], year=2005)
    assert given.times == [utc(2005, 12, 31, 23, 59), utc(2005, 1, 1, 0, 1)]
    assert "read in 2005 (--year)" in given.stats.summary()


def test_february_29_in_a_syslog_stamp_finds_its_leap_year(tmp_path):
    log = tmp_path / "auth.log"
    log.write_text("Feb 29 10:00:00 h sshd[1]: leap day\n")
    os.utime(log, (utc(2025, 6, 1), utc(2025, 6, 1)))
    # strptime's default year 1900 is no leap year: this line had no time at all before.
    assert read_logs([log], FORMATS["syslog"]).times == [utc(2024, 2, 29, 10)]


def test_a_custom_format_reads_an_apache_time_and_names_a_time_it_cannot_read(tmp_path):
    custom = r"\[(?P<time>[^\]]+)\] \[(?P<level>\w+)\] (?P<content>.*)"
    time, level, _, content, _ = split(custom, "[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok")
    assert (time, level, content) == (utc(2005, 12, 4, 4, 47, 44), "notice", "workerEnv.init() ok")
    log = tmp_path / "odd.log"
    log.write_text("[yesterday at noon] [notice] one\n[Sun Dec 04 04:47:44 2005] [notice] two\n")
    rec = read_logs([log], get_format(custom))
    assert rec.times[0] is None and rec.stats.bad_times == 1
    assert f"1 had a time that could not be read, first {log}:1: 'yesterday at noon'" in rec.stats.summary()


def test_unmatched_line_keeps_whole_line_as_content():
    rec = records_from_lines(["not an hdfs header at all"], FORMATS["hdfs"])
    assert rec.contents == ["not an hdfs header at all"] and rec.times == [None] and rec.stats.unmatched == 1


@pytest.mark.parametrize("line", ["not json", "[1, 2]", '{"level": "info"}', "[" * 100_000 + "]" * 100_000,
                                  '{"msg": "x", "time": 1e400}'])
def test_json_lines_that_are_no_log_record_are_kept_whole_not_fatal(line):
    rec = records_from_lines([line], FORMATS["jsonl"])
    assert rec.contents[0] == line or (rec.contents[0] == "x" and rec.times[0] is None)


def test_custom_format_needs_a_content_group():
    assert split(r"(?P<level>\w+) (?P<content>.*)", "WARN disk full")[1:4] == ("WARN", "", "disk full")
    with pytest.raises(DataError, match="content"):
        get_format("no-such-preset")


def test_a_custom_format_that_backtracks_without_end_stops_with_a_clear_error():
    fmt = get_format(r"(?P<content>(a|aa)+$)")
    with pytest.raises(DataError, match=r"the log format .* ran over .* s on <lines>:1: it backtracks too much"):
        records_from_lines(["a" * 60 + "!"], fmt)


def test_custom_masks_run_within_a_time_bound_and_the_defaults_stay_as_they_were():
    parser = LogParser(masks=[("SLOW", r"(a|aa)+$")])
    with pytest.raises(DataError, match="mask SLOW"):
        parser.mask("a" * 60 + "!")
    with pytest.raises(DataError, match="mask name"):
        LogParser(masks=[("A\\1", r"x")])


def test_a_model_file_with_a_mask_that_is_no_regex_is_refused(mined):
    arrays, meta = mined[0].get_state()
    with pytest.raises(ModelFileError, match="not a valid regex"):
        LogParser.from_state(arrays, {**meta, "masks": [["NUM", "(unclosed"]]})
    with pytest.raises(ModelFileError, match="characters long"):
        LogParser.from_state(arrays, {**meta, "masks": [["NUM", "a" * 5000]]})


@pytest.mark.parametrize("token,masked", [
    ("b9000564-fe1a-409b-b8cc-1e88b294cd1d", "<UUID>"),
    ("2005-06-03-15.43.03.623873", "<TIME>"),
    ("2023-12-10T06:55:46Z", "<TIME>"),
    ("2016/9/28:16:00:46.635", "<TIME>"),
    ("06:55:46,123", "<TIME>"),
    ("fe80::1ff:fe23:4567:890a", "<IP>"),
    ("00:1b:44:11:3a:b7", "<IP>"),
    ("proxy.cse.cuhk.edu.hk:5070", "<HOST>"),
    ("core.4505", "core.<NUM>"),
    ("cpu=3,", "cpu=<NUM>,"),
    ("R02-M1", "R02-M1"),  # a name with digits in its words stays
])
def test_masks_for_uuids_times_addresses_hosts_and_numbers_in_tokens(token, masked):
    assert LogParser().mask(token) == masked


def test_numbers_and_hex_ids_in_the_same_place_make_one_template():
    # 00106210 is a number and 003a90fc a hex id to the masks; Drain takes them as one variable.
    lines = ["iar 00106210 dear 0244c1dc", "iar 003a90fc dear 00b360e8", "iar 00106211 dear 00b360e9"] * 3
    parser = LogParser()
    assert len(set(parser.fit(lines).tolist())) == 1 and parser.n_templates == 1


def test_masked_lines_are_events_of_their_own_and_survive_a_save():
    from normalcy.logs.parser import MaskedLines, parser_from_state

    parser = MaskedLines()
    ids = parser.fit(["open /a/b 3", "open /c 4", "close /c", "open /d 9"])
    assert ids.tolist() == [1, 1, 2, 1] and parser.template(2) == "close <PATH>"
    again = parser_from_state(*parser.get_state())
    assert again.transform(["close /x/y", "delete /c"]).tolist() == [2, UNSEEN]
    arrays, meta = parser.get_state()
    with pytest.raises(ModelFileError, match="do not match"):
        parser_from_state({"parser.ids": arrays["parser.ids"][:1]}, meta)


def test_grouping_accuracy_counts_lines_of_exactly_recovered_groups():
    from normalcy.logs.parsing import grouping_accuracy

    truth = ["a", "a", "b", "b", "c", "d"]
    # Parsed group 1 is all of a (2 lines right); group 2 is half of b; group 3 mixes b and c;
    # group 4 is all of d (1 line right): 3 of 6.
    assert grouping_accuracy(truth, [1, 1, 2, 3, 3, 4]) == pytest.approx(3 / 6)
    assert grouping_accuracy(truth, [7, 7, 9, 9, 8, 0]) == 1.0  # names do not matter
    assert grouping_accuracy(truth, [1] * 6) == 0.0
    with pytest.raises(DataError):
        grouping_accuracy(truth, [1, 2])
