"""Template mining: masking, learning, match-only scoring, and the saved state."""

from __future__ import annotations

import numpy as np
import pytest

from normalcy.core.errors import DataError, ModelFileError
from normalcy.logs.formats import FORMATS, get_format, records_from_lines
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


@pytest.mark.parametrize("name,line,expected", [
    ("hdfs", "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating",
     ("INFO", "dfs.DataNode$PacketResponder", "PacketResponder 1 for block blk_3 terminating")),
    ("bgl", "- 1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 R02-M1-N0-C:J12-U11 RAS KERNEL "
     "INFO instruction cache parity error corrected", ("INFO", "KERNEL", "instruction cache parity error corrected")),
    ("openssh", "Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
     ("", "sshd", "Invalid user webmaster from 173.234.31.186")),
    ("linux", "Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown",
     ("", "sshd(pam_unix)", "check pass; user unknown")),
])
def test_header_presets_split_fields_and_read_the_time(name, line, expected):
    time, level, component, content, matched = FORMATS[name].parse(line)
    assert matched and (level, component, content) == expected and time is not None


def test_header_times_are_seconds():
    rec = records_from_lines(["081109 203615 1 INFO a: x", "081109 203715 1 INFO a: y"], FORMATS["hdfs"])
    assert rec.times[1] - rec.times[0] == 60.0
    assert FORMATS["bgl"].parse("- 1117838570 a b c d e f g h")[0] == 1117838570.0


def test_unmatched_line_keeps_whole_line_as_content():
    rec = records_from_lines(["not an hdfs header at all"], FORMATS["hdfs"])
    assert rec.contents == ["not an hdfs header at all"] and rec.times == [None] and rec.stats.unmatched == 1


def test_custom_format_needs_a_content_group():
    assert get_format(r"(?P<level>\w+) (?P<content>.*)").parse("WARN disk full")[1:4] == ("WARN", "", "disk full")
    with pytest.raises(DataError, match="content"):
        get_format("no-such-preset")
