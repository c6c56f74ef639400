"""`normalcy ts benchmark` over several corpora (issue 16 item 1) on tiny synthetic ones in the
real layouts, the default chosen by the worst corpus, cached scores and a peer's records."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest

from clirunner import run_in_process
from metric_frames import metric_frame
from normalcy.timeseries import DEFAULT, metrics
from normalcy.timeseries.benchmark import choose_default


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """root/nab (two files, one labelled window in one) and root/msl (two channels of a
    telemanom-style corpus, a level shift labelled in each test part)."""
    root = tmp_path_factory.mktemp("corpora")
    nab = root / "nab"
    (nab / "data" / "a").mkdir(parents=True)
    (nab / "labels").mkdir()
    for name, seed in (("a/one.csv", 0), ("a/two.csv", 1)):
        frame = metric_frame(500, spike_at=400, seed=seed)[["timestamp", "mem"]].rename(columns={"mem": "value"})
        frame.to_csv(nab / "data" / name, index=False)
    t = metric_frame(500).timestamp.astype(str)
    (nab / "labels" / "combined_windows.json").write_text(json.dumps({"a/one.csv": [[t[390], t[410]]], "a/two.csv": []}))
    msl = root / "msl"
    rows = []
    for k, chan in enumerate(("A-1", "B-2")):
        rng = np.random.default_rng(k)
        x = np.sin(np.arange(900) / 5.0) + 0.1 * rng.normal(size=900)
        x[750:780] += 2.0
        flags = np.zeros((900, 2))
        for part, values in (("train", x[:400]), ("test", x[400:])):
            (msl / part).mkdir(parents=True, exist_ok=True)
            np.save(msl / part / f"{chan}.npy", np.c_[values, flags[: len(values)]])
        rows.append({"chan_id": chan, "spacecraft": "MSL", "anomaly_sequences": "[[350, 379]]", "class": "[point]",
                     "num_values": 500})
    pd.DataFrame(rows).to_csv(msl / "labeled_anomalies.csv", index=False)
    return root


def _bench(root, tmp, *extra):
    result = run_in_process("ts", "benchmark", "--data", str(root), "--json", str(tmp / "b.json"),
                            "--cache", str(tmp / "cache"), *map(str, extra))
    assert result.returncode == 0, result.stderr
    return json.loads((tmp / "b.json").read_text())


def test_every_corpus_detector_and_baseline_with_independent_figures(corpora, tmp_path):
    doc = _bench(corpora, tmp_path, "--detectors", "default,zscore,constant,random,ab-join")
    records = {(r["corpus"], r["detector"]): r for r in doc["records"]}
    assert set(records) == {(c, d) for c in ("msl", "nab") for d in (DEFAULT, "zscore", "constant", "random", "ab-join")}
    assert [k for k, r in records.items() if r.get("default")] == [("msl", DEFAULT), ("nab", DEFAULT)]
    assert "nab_standard" in records["nab", DEFAULT] and "nab_standard" not in records["msl", DEFAULT]
    # the z-score's VUS-PR recomputed here from the raw channels: train before test, column 0 only
    vus = []
    for chan in ("A-1", "B-2"):
        train, test = (np.load(corpora / "msl" / part / f"{chan}.npy")[:, 0] for part in ("train", "test"))
        y = np.zeros(len(test), dtype=int)
        y[350:380] = 1
        vus.append(metrics.vus_pr(y, np.abs(test - train.mean()) / train.std()))
    assert records["msl", "zscore"]["vus_pr"] == pytest.approx(np.mean(vus), rel=1e-12)
    # a constant score ranks nothing: every reading ties at the top and at the bottom, flags none
    constant = records["msl", "constant"]
    assert constant["top1_hit"] == pytest.approx(30 / 500) and constant["at_lowest"] == 1.0
    assert constant["event_f1"] == 0.0
    # only the labelled NAB file counts for the threshold-free figures; the default finds its spike
    assert records["nab", DEFAULT]["n_series"] == 1 and records["nab", DEFAULT]["top1_hit"] == 1.0
    assert records["msl", DEFAULT]["vus_pr"] > records["msl", "random"]["vus_pr"]
    assert doc["default_choice"]["chosen"] == DEFAULT  # the only detector that is a candidate
    assert "## The default by the worst corpus" in (tmp_path / "b.md").read_text()


def test_scores_are_cached_per_series(corpora, tmp_path):
    first = _bench(corpora, tmp_path, "--detectors", "zscore")
    cached = sorted((tmp_path / "cache" / "scores" / "msl" / "zscore").glob("A-1-*.npz"))
    assert len(cached) == 1
    with np.load(cached[0]) as f:
        saved = dict(f)
    np.savez(cached[0], **{**saved, "scores": -saved["scores"]})  # what a rerun reads, if it reads the cache
    again = _bench(corpora, tmp_path, "--detectors", "zscore")
    before, after = (next(r for r in d["records"] if r["corpus"] == "msl") for d in (first, again))
    assert after["series"]["A-1"]["vus_pr"] != before["series"]["A-1"]["vus_pr"]
    assert after["series"]["B-2"] == before["series"]["B-2"]


def test_a_peer_runs_in_its_own_python_and_is_labelled(corpora, tmp_path, monkeypatch):
    from normalcy.timeseries import benchmark

    runner = tmp_path / "runner.py"
    runner.write_text(
        "import sys, pathlib, numpy as np\n"
        "data, out = map(pathlib.Path, sys.argv[1:])\n"
        "for s in data.iterdir():\n"
        "    test = np.load(s / 'test.npy')\n"
        "    (out / 'Echo').mkdir(parents=True, exist_ok=True)\n"
        "    np.savez(out / 'Echo' / f'{s.name}.npz', scores=np.abs(test[:, 0]), seconds=0.5)\n")
    monkeypatch.setitem(benchmark.PEER_RUNNERS, "fake", runner)
    doc = _bench(corpora, tmp_path, "--detectors", "constant", "--peer", f"fake={sys.executable}")
    peers = [r for r in doc["records"] if r.get("library") == "fake"]
    assert sorted(r["corpus"] for r in peers) == ["msl", "nab"] and {r["detector"] for r in peers} == {"Echo"}
    assert all(r["event_f1"] is None for r in peers)  # a peer brings no threshold of its own


def test_the_default_is_the_candidate_whose_worst_corpus_is_best():
    def rec(d, c, v):
        return {"detector": d, "corpus": c, "vus_pr": v}

    records = [rec("sharp", "c1", 1.0), rec("sharp", "c2", 0.2), rec("steady", "c1", 0.8), rec("steady", "c2", 0.4),
               rec("zscore", "c1", 2.0), {**rec("peer", "c2", 9.0), "library": "x"}]
    choice = choose_default(records, ["sharp", "steady"])
    assert choice["chosen"] == "steady" and choice["worst_share"] == pytest.approx(0.8)
    # chosen on c1 alone, sharp would have been picked: on c2 it has half the best there
    assert choice["leave_one_corpus_out"]["c2"] == {"chosen_on_the_others": "sharp", "vus_pr": 0.2,
                                                    "share_of_best": 0.5, "best_there": "steady"}
    assert choice["leave_one_corpus_out"]["c1"]["chosen_on_the_others"] == "steady"


def test_a_detector_that_scores_whole_files_is_benchmarked_but_never_the_default(corpora, tmp_path):
    doc = _bench(corpora, tmp_path, "--detectors", "default,window-iforest")
    assert {(r["corpus"], r["detector"]) for r in doc["records"]} == \
        {(c, d) for c in ("msl", "nab") for d in (DEFAULT, "window-iforest")}
    # the default must stream (ts stream, Spark streaming, the HTTP service run it)
    assert set(doc["default_choice"]["by_corpus"]) == {DEFAULT}
