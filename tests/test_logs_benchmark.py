"""The log benchmark's own pieces on tiny made-up data (the benchmark itself runs on the shared
reference data, never in tests): baselines, loghub readers, the parsing table and the plot."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from normalcy.core.errors import DataError
from normalcy.logs.benchmark import _stream_records, baselines, read_hdfs_templates, scores_png
from normalcy.logs.parsing import accuracy_records


def test_baselines_flag_one_percent_at_random_and_everything():
    y = np.r_[np.ones(30), np.zeros(970)].astype(int)
    random, everything = baselines("toy", y)
    assert random["threshold"] == pytest.approx(0.99)
    assert 0.0 <= random["recall"] <= 0.15 and abs(random["auroc"] - 0.5) < 0.1
    p = 30 / 1000
    assert everything["recall"] == 1.0 and everything["f1"] == pytest.approx(2 * p / (1 + p))


def test_hdfs_templates_are_read_by_event_number(tmp_path):
    path = tmp_path / "HDFS_templates.csv"
    path.write_text("EventId,EventTemplate\nE5,<*>Receiving block<*>src:<*>dest:<*>\nE22,<*>BLOCK* allocateBlock:<*>\n")
    assert read_hdfs_templates(path) == {5: "<*> Receiving block <*> src: <*> dest: <*>",
                                         22: "<*> BLOCK* allocateBlock: <*>"}
    (tmp_path / "bad.csv").write_text("EventId,EventTemplate\nfive,x\n")
    with pytest.raises(DataError, match="EventId"):
        read_hdfs_templates(tmp_path / "bad.csv")


def test_the_parsing_table_has_each_systems_grouping_accuracy(tmp_path):
    rows = {"Good": [("open file 1", "E1"), ("open file 2", "E1"), ("close now", "E2")],
            "Merged": [("session opened for alice", "E1"), ("session opened for bob", "E2"), ("disk full", "E3")]}
    for system, lines in rows.items():
        (tmp_path / system).mkdir()
        (tmp_path / system / f"{system}_2k.log_structured.csv").write_text(
            "LineId,Content,EventId\n" + "".join(f'{i},"{c}",{e}\n' for i, (c, e) in enumerate(lines, 1)))
    found = {r["dataset"]: r for r in accuracy_records(tmp_path)}
    assert found["loghub/Good"]["grouping_accuracy"] == 1.0
    # The ground truth splits the two users (as loghub's Linux set does); Drain joins them.
    assert found["loghub/Merged"]["grouping_accuracy"] == pytest.approx(1 / 3)
    assert found["loghub/Merged"]["n_true_templates"] == 3
    with pytest.raises(DataError, match="no loghub systems"):
        accuracy_records(tmp_path / "Good")


def test_the_scores_plot_is_a_png_of_the_asked_size():
    starts = 1.12e9 + 1800.0 * np.arange(50)
    png = scores_png(starts, np.random.default_rng(0).random(50), 0.8, (np.arange(50) % 7 == 0).astype(int), "t",
                     width=600, height=200)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (600, 200)


def test_the_embedding_stream_embeds_each_new_template_once_and_counts_it():
    from normalcy.logs.semantic import HashingEmbedder

    class Counting(HashingEmbedder):
        def __init__(self):
            super().__init__()
            self.texts = []

        def embed(self, texts):
            self.texts += list(texts)
            return super().embed(texts)

    lines = [f"open file /data/f{i % 7} for writing" if i % 3 else f"close file /data/f{i % 5}" for i in range(3000)]
    lines[1500] = "kernel panic: fatal machine check"
    embedder = Counting()
    by_kind = {r["detector"]: r for r in _stream_records(lines, embedder)}
    templates, masked = by_kind["embedding (templates, one thread)"], by_kind["embedding (masked lines, one thread)"]
    # Two Drain templates and the one new line; masked lines: the same three texts.
    assert templates["n_embedded"] == masked["n_embedded"] == 3
    assert templates["new_template_share"] == pytest.approx(3 / 3000) and templates["n_lines"] == 3000
    # Each kind starts from an empty cache of its own and asks for each text once.
    assert len(embedder.texts) == 6 and len(set(embedder.texts[:3])) == len(set(embedder.texts[3:])) == 3
    assert templates["lines_per_second"] > 0 and templates["cpu_seconds"] > 0
