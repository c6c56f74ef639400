"""Reading texts from files: formats, labels and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from normalcy.core.errors import DataError
from normalcy.text.data import read_texts


def test_plain_text_keeps_every_line_including_blank_ones_and_crlf(tmp_path):
    f = tmp_path / "a.log"
    f.write_bytes("first line\r\n\r\nthird, with a comma\nlast without newline".encode())
    texts, labels = read_texts(f)
    assert texts == ["first line", "", "third, with a comma", "last without newline"] and labels is None


def test_csv_and_jsonl_with_labels(tmp_path):
    (tmp_path / "a.csv").write_text('msg,y\n"hello, world",0\n"two\nlines",1\n,false\n')
    texts, labels = read_texts(tmp_path / "a.csv", "msg", "y")
    assert texts == ["hello, world", "two\nlines", ""] and labels.tolist() == [0, 1, 0]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in
                                                [{"text": "a", "y": True}, {"text": None, "y": 0}]) + "\n\n")
    texts, labels = read_texts(tmp_path / "a.jsonl", label_column="y")
    assert texts == ["a", ""] and np.array_equal(labels, [1, 0])


@pytest.mark.parametrize("name, content, label_column, message", [
    ("a.csv", "msg\nx\n", None, "has no field 'text'"),
    ("a.csv", "text,y\nx,2\n", "y", "label must be 0/1"),
    ("a.jsonl", '{"text": "a"}\n[1]\n', None, "line 2: expected a JSON object"),
    ("a.jsonl", '{"text": "a"}\n{oops\n', None, "line 2: not JSON"),
    ("a.jsonl", '{"text": 5}\n', None, "expected text, got 5"),
    ("a.txt", "", None, "holds no lines"),
    ("a.csv", "", None, "cannot read"),
    ("a.csv", "text,y,text\nx,0,z\n", None, "the header names column\\(s\\) 'text' more than once"),
    ("a.jsonl", '{"text": "a"}\n' + "[" * 50_000 + "]" * 50_000 + "\n", None, "line 2: JSON nested too deeply"),
])
def test_malformed_files_name_the_place_at_fault(tmp_path, name, content, label_column, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        read_texts(tmp_path / name, label_column=label_column)


def test_plain_text_has_no_labels(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(DataError, match="no label column"):
        read_texts(tmp_path / "a.txt", label_column="y")


def test_binary_and_missing_files_are_refused(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"\x7fELF\x00\x01\x02")
    with pytest.raises(DataError, match="binary"):
        read_texts(tmp_path / "b.bin")
    with pytest.raises(DataError, match="is not a file"):
        read_texts(tmp_path / "missing.txt")


def test_undecodable_bytes_fail_with_the_line_or_are_replaced(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes(b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(DataError, match=r"line 3: byte 0xff is not UTF-8"):
        read_texts(f)
    texts, _ = read_texts(f, errors="replace")
    assert texts == ["fine", "also fine", "bad \ufffd byte"]
