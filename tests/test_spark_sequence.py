"""The entity-sequence detector (normalcy.logs.entity_sequence) and the graph embedding's numpy parts
(normalcy.spark.graph), without Spark: the detector contract, surprise = -ln p of the network's
own prediction, the embedding = the lazy walk's proximities, Procrustes merging, bucket
splitting, and edge scores that see community structure. Spark runs of both are in
tests/test_spark.py."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import contract_logs
from normalcy.core import checks, metrics
from normalcy.core.errors import DataError
from normalcy.core.progress import set_progress
from normalcy.core.registry import build, detectors
from normalcy.logs import EntitySequence
from normalcy.spark import graph as g

SMALL = {"window": 3, "hidden": 8, "embedding": 4, "epochs": 2, "min_steps": 2, "batch_size": 64}


@pytest.fixture(autouse=True, scope="module")
def quiet():
    set_progress(False)
    yield
    set_progress(None)


@pytest.mark.parametrize("kind", ["gru", "cnn"])
def test_entity_sequence_keeps_the_detector_contract(kind, tmp_path):
    assert detectors("logs")["entity-sequence"] is EntitySequence
    checks.check_detector(build("logs", "entity-sequence", {**SMALL, "kind": kind}), contract_logs.case(), tmp_path)


@pytest.fixture(scope="module")
def trained():
    case = contract_logs.case()
    return case, EntitySequence(window=4, hidden=16, embedding=8, min_steps=300).fit(case.fit)


def test_surprise_is_minus_log_probability_of_the_actual_next_event(trained):
    """Recomputed with the network directly: pad with the start token, softmax over the tokens."""
    import torch

    case, model = trained
    v = len(model.vocab_)
    for seq in case.test[-6:]:
        tokens = [int(np.searchsorted(model.vocab_, e)) if e in model.vocab_ else v for e in seq] + [v + 2]
        padded = [v + 1] * model.window + tokens
        with torch.no_grad():
            windows = torch.tensor([padded[i:i + model.window] for i in range(len(tokens))])
            p = torch.softmax(model.net_(windows).double(), dim=1).numpy()
        expected = max(-math.log(p[i, t]) for i, t in enumerate(tokens))
        assert model.decision_function([seq])[0] == pytest.approx(expected, rel=1e-9)


def test_separates_the_contract_anomalies_and_refits_identically(trained):
    case, model = trained
    scores = model.decision_function(case.test)
    assert metrics.auroc(case.labels, scores) >= 0.95
    assert model.threshold_ == pytest.approx(-math.log(1e-3))
    again = EntitySequence(window=4, hidden=16, embedding=8, min_steps=300).fit(case.fit)
    np.testing.assert_array_equal(again.decision_function(case.test), scores)
    blame = model.explain(case.test[-3:])
    assert blame.evidence[1][0].startswith("event 7 at position 3")  # [1, 2, 5, 7, 7, 3]: 7 is new



def test_a_model_file_written_before_the_class_moved_to_logs_still_loads(trained, tmp_path):
    """Saved as normalcy.spark.sequence.EntitySequence; a fresh process loads it by the new path."""
    import json
    import subprocess
    import sys

    from normalcy.core import modelfile

    case, model = trained
    sessions = [[int(e) for e in seq] for seq in case.test[-4:]]
    path = model.save(tmp_path / "m")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["class"] = "normalcy.spark.sequence.EntitySequence"
    manifest["manifest_sha256"] = modelfile._manifest_digest(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    code = ("import json, sys; from normalcy.core import load; m = load(sys.argv[1]); "
            "print(json.dumps([type(m).__module__, m.decision_function(json.loads(sys.argv[2])).tolist()]))")
    out = subprocess.run([sys.executable, "-c", code, str(path), json.dumps(sessions)], check=True,
                         capture_output=True, text=True).stdout
    module, scores = json.loads(out)
    assert module == "normalcy.logs.entity_sequence"
    np.testing.assert_array_equal(scores, model.decision_function(sessions))


def test_parameters_are_checked():
    for params, message in [({"kind": "lstm"}, "kind must be one of gru, cnn"), ({"min_probability": 1.0}, "min_probability"),
                            ({"window": 0}, "window")]:
        with pytest.raises(DataError, match=message):
            EntitySequence(**params).fit([[1, 2, 3]])


# --- graph embedding ---------------------------------------------------------------------------


def test_full_rank_embedding_is_the_lazy_walk_proximity():
    rng = np.random.default_rng(0)
    src, dst = rng.integers(0, 12, 40), rng.integers(12, 20, 40)
    weight = rng.integers(1, 4, 40).astype(float)
    for steps in (1, 3):
        ids, x, degree = g.embed_part(src, dst, weight, dim=20, steps=steps)
        a = np.zeros((20, 20))
        np.add.at(a, (np.searchsorted(ids, src), np.searchsorted(ids, dst)), weight)
        a = a + a.T
        d = a.sum(axis=1)
        assert np.allclose(degree, d)
        m = 0.5 * (np.eye(20) + a / np.sqrt(np.outer(d, d)))
        expected = sum(np.linalg.matrix_power(m, r) for r in range(1, steps + 1))
        np.testing.assert_allclose(x @ x.T, expected, atol=1e-9)


def test_procrustes_undoes_the_parts_rotations():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(30, 4))
    rows, rotations = [], {}
    for part in range(3):
        q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
        rotations[part] = q
        for node in rng.choice(30, 20, replace=False):
            rows.append((part, int(node), truth[node] @ q.T))
    anchors = pd.DataFrame(rows, columns=["part", "node", "vector"])
    found = g.procrustes(anchors, [0, 1, 2], 4)
    # every part lands in one frame: the same node's vectors agree after rotation
    aligned = {}
    for part, node, vector in rows:
        aligned.setdefault(node, []).append(vector @ found[part])
    for vectors in aligned.values():
        for v in vectors[1:]:
            np.testing.assert_allclose(v / np.linalg.norm(v), vectors[0] / np.linalg.norm(vectors[0]), atol=1e-9)
    assert g.procrustes(anchors.iloc[:0], [0, 1], 4)[1].tolist() == np.eye(4).tolist()


def test_buckets_split_until_each_part_fits():
    rng = np.random.default_rng(2)
    counts = {int(b): int(n) for b, n in zip(rng.choice(g.BUCKETS, 3000, replace=False), rng.integers(1, 50, 3000))}
    counts[7] = 5000  # one bucket above the limit stays one part: it cannot be split
    part = g.split_buckets(counts, 2000)
    sizes = pd.Series(counts).groupby(part[list(counts)]).sum()
    assert sizes.drop(part[7]).max() <= 2000 and sizes[part[7]] >= 5000
    assert len(sizes) <= 2 * (sum(counts.values()) // 2000 + 1) + 1  # halving never makes parts needlessly small
    assert (g.split_buckets(counts, 10 ** 9) == 0).all()


def communities(rng, n: int = 3000) -> pd.DataFrame:
    """Users of 4 teams, each team on its own 6 hosts (a few roam)."""
    user = rng.integers(0, 200, n)
    team = user % 4
    host = np.where(rng.random(n) < 0.95, team * 6 + rng.integers(0, 6, n), rng.integers(0, 24, n))
    return pd.DataFrame({"user": [f"u{u}" for u in user], "host": [f"h{h}" for h in host]})


def test_edges_across_communities_score_higher():
    rng = np.random.default_rng(3)
    train = communities(rng)
    embedding = g.fit_local(train, ["user", "host"], dim=4)  # the dimension of the team structure
    user = rng.integers(0, 200, 400)
    inside = pd.DataFrame({"user": [f"u{u}" for u in user], "host": [f"h{(u % 4) * 6 + rng.integers(6)}" for u in user]})
    across = pd.DataFrame({"user": [f"u{u}" for u in user], "host": [f"h{((u % 4 + 1) % 4) * 6 + rng.integers(6)}" for u in user]})
    scores = g.score_local(embedding, pd.concat([inside, across]))
    assert metrics.auroc(np.r_[np.zeros(400), np.ones(400)], scores) > 0.95
    unseen = g.score_local(embedding, pd.DataFrame({"user": ["nobody"], "host": ["h1"]}))
    assert unseen[0] == g.UNSEEN_SCORE
    with pytest.raises(DataError, match="no column 'host'"):
        g.score_local(embedding, inside.drop(columns="host"))
