"""Reading texts from files: a table (.csv, .tsv), JSON lines (.jsonl, .ndjson) or plain text
(anything else: one text per line).

Bytes must be UTF-8. By default a file that is not fails with the line at fault; with
`errors="replace"` each undecodable byte becomes U+FFFD and the line is kept. A file with NUL
bytes in its first 8 KiB is taken for binary and refused. Empty texts are kept, so outputs
line up with inputs; `fit` skips them (they say nothing about normal content).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from normalcy.core.errors import DataError

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
ENCODING_ERRORS = ("strict", "replace")


def read_texts(path: str | Path, column: str = "text", label_column: str | None = None,
               errors: str = "strict") -> tuple[list[str], np.ndarray | None]:
    """The texts of `path` (from `column` in a table or JSON lines), and with `label_column`
    their 0/1 labels (1 = anomaly)."""
    path = Path(path)
    text = _decode(path, errors)
    suffix = path.suffix.lower()
    if suffix in TABLE_SUFFIXES:
        records = _table(text, path, TABLE_SUFFIXES[suffix])
    elif suffix in JSONL_SUFFIXES:
        records = _jsonl(text, path)
    else:
        if label_column is not None:
            raise DataError(f"{path}: a plain-text file has no label column; give a .csv, .tsv or .jsonl file")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        texts = [line.removesuffix("\r") for line in lines]
        if not texts:
            raise DataError(f"{path} holds no lines")
        return texts, None
    if not records:
        raise DataError(f"{path} holds no records")
    texts = [_field(r, column, path, i, str) for i, r in enumerate(records)]
    if label_column is None:
        return texts, None
    return texts, np.array([_label(_field(r, label_column, path, i, None), label_column, path, i)
                            for i, r in enumerate(records)], dtype=np.int64)


def _decode(path: Path, errors: str) -> str:
    if errors not in ENCODING_ERRORS:
        raise DataError(f"encoding errors must be one of {', '.join(ENCODING_ERRORS)}, got {errors!r}")
    if not path.is_file():
        raise DataError(f"{path} is not a file")
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        raise DataError(f"{path} looks like a binary file (NUL bytes); expected UTF-8 text")
    try:
        return data.decode("utf-8-sig", errors=errors)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: byte 0x{data[exc.start]:02x} is not UTF-8; convert the file "
                        "or pass --encoding-errors replace") from None


def _table(text: str, path: Path, sep: str) -> list[dict]:
    import pandas as pd

    try:
        header = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    except csv.Error:
        header = []  # pandas says what is wrong with the file
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:  # pandas would rename the second one "name.1"
        raise DataError(f"{path}: the header names column(s) {', '.join(map(repr, repeated))} more than once; "
                        "rename them")
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path} as a table: {exc}") from exc
    return frame.to_dict("records")


def _jsonl(text: str, path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}, line {number}: not JSON ({exc.msg})") from None
        except RecursionError:
            raise DataError(f"{path}, line {number}: JSON nested too deeply to read") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _field(record: dict, name: str, path: Path, index: int, kind):
    if name not in record:
        raise DataError(f"{path}: record {index + 1} has no field {name!r} (fields: {', '.join(map(str, record))})")
    value = record[name]
    if kind is str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise DataError(f"{path}: record {index + 1}, field {name!r}: expected text, got {value!r}")
    return value


def _label(value, name: str, path: Path, index: int) -> int:
    if isinstance(value, str):
        value = value.strip().lower()
        value = {"0": 0, "1": 1, "false": 0, "true": 1}.get(value, value)
    if isinstance(value, bool) or value in (0, 1):
        return int(value)
    raise DataError(f"{path}: record {index + 1}, field {name!r}: label must be 0/1 or true/false, got {value!r}")
