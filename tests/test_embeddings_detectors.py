"""The embedding detectors (normalcy.embeddings) on small random vectors: their scores against
hand computations, what each catches and misses, the inputs they take, the perturbation
families, recall@k and the serving codec. The re-embedding detector runs on a hashing
stand-in for the model (tests/contract_embeddings.py runs it on all-MiniLM-L6-v2)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as scipy_stats

from normalcy.core import metrics
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.registry import build
from normalcy.embeddings import Vectors, read_vectors
from normalcy.embeddings.benchmark import recall_at_k
from normalcy.embeddings.perturb import N_ROTATIONS, perturb
from normalcy.embeddings.stats import FLOOR, MAD_TO_SD
from normalcy.text.embedding import Embedder

DIM = 32


def unit_vectors(n: int, seed: int, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)) * np.linspace(0.2, 2.0, dim)  # dimensions of different spread
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    return unit_vectors(300, 1), unit_vectors(100, 2)


def auroc(detector, normal, changed) -> float:
    scores = detector.decision_function(np.concatenate([normal, changed]))
    return metrics.auroc(np.r_[np.zeros(len(normal)), np.ones(len(changed))].astype(int), scores)


def test_norm_score_is_the_robust_z_of_the_log_length(data):
    train, test = data
    detector = build("embeddings", "norm").fit(train)
    logs = np.log(np.linalg.norm(train.astype(np.float64), axis=1))
    center = np.median(logs)
    scale = max(MAD_TO_SD * np.median(np.abs(logs - center)), FLOOR)
    scaled = test[:5] * 1.01
    expected = np.abs(np.log(np.linalg.norm(scaled.astype(np.float64), axis=1)) - center) / scale
    np.testing.assert_allclose(detector.decision_function(scaled), expected, rtol=1e-9)
    assert scale == FLOOR, "unit vectors' lengths agree to float32 precision: the floor sets the scale"


def test_moments_statistics_match_scipy_and_blame_zeros_for_fragments(data):
    train, test = data
    detector = build("embeddings", "moments").fit(train)
    v = test[:3].astype(np.float64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    expected = np.column_stack([np.log(np.linalg.norm(v, axis=1)), unit.mean(axis=1), scipy_stats.skew(unit, axis=1),
                                scipy_stats.kurtosis(unit, axis=1, fisher=True) + 3, np.abs(unit).max(axis=1),
                                np.zeros(3)])
    np.testing.assert_allclose(detector._statistics(v), expected, rtol=1e-9, atol=1e-15)
    fragments = perturb(test, "fragmentation", 4, np.random.default_rng(0)).astype(np.float32)
    explanation = detector.explain(fragments)
    assert all("zero_share" in top for top in explanation.top(2)), "zeros are among the two statistics to blame"
    assert auroc(detector, test, fragments) == 1.0


def test_dims_score_is_the_mean_squared_robust_z_and_explain_adds_up(data):
    train, test = data
    detector = build("embeddings", "dims").fit(train)
    t = train.astype(np.float64)
    center = np.median(t, axis=0)
    scale = np.maximum(MAD_TO_SD * np.median(np.abs(t - center), axis=0), FLOOR)
    expected = (((test.astype(np.float64) - center) / scale) ** 2).mean(axis=1)
    np.testing.assert_allclose(detector.decision_function(test), expected, rtol=1e-12)
    explanation = detector.explain(test[:4])
    np.testing.assert_allclose(explanation.contributions.sum(axis=1), explanation.scores, rtol=1e-12)
    assert explanation.parts[0] == "dim 0" and len(explanation.parts) == DIM


def test_table_detector_is_the_table_detector_on_the_vectors(data):
    train, test = data
    ours = build("embeddings", "table", {"model": "knn", "options": {"n_neighbors": 3}}).fit(train)
    direct = build("tabular", "knn", {"n_neighbors": 3}).fit_matrix(train.astype(np.float64))
    np.testing.assert_array_equal(ours.decision_function(test), direct.score_matrix(test.astype(np.float64)))
    with pytest.raises(DataError, match="unknown tabular detector"):
        build("embeddings", "table", {"model": "nope"}).fit(train)


@pytest.mark.parametrize("family, strength, caught_by, missed_by", [
    ("noise", 0.01, ["norm", "moments"], []),
    ("scaling", 0.03, ["norm"], ["dims"]),
    ("offset", 0.01, ["norm", "moments"], []),
    ("noise-renorm", 0.01, ["dims"], ["norm"]),
    ("rotation", 0.3, [], ["norm", "moments"]),
])
def test_what_each_statistic_catches_and_misses(data, family, strength, caught_by, missed_by):
    train, test = data
    # Four dimensions that a model never uses (all-MiniLM-L6-v2 has such): values near 0.
    train, test = (_dead_dims(v) for v in (train, test))
    changed = perturb(test, family, strength, np.random.default_rng(5)).astype(np.float32)
    for name in caught_by:
        assert auroc(build("embeddings", name).fit(train), test, changed) > 0.95, name
    for name in missed_by:
        assert auroc(build("embeddings", name).fit(train), test, changed) < 0.75, name


def _dead_dims(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    v[:, :4] *= 1e-6
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


class HashEmbedder(Embedder):
    """A stand-in model: each text's vector from its SHA-256, unit length."""

    def __init__(self, salt: bytes = b""):
        self.salt = salt

    def embed(self, texts):
        raw = np.array([np.frombuffer(hashlib.sha256(self.salt + t.encode()).digest(), np.uint8) for t in texts],
                       dtype=np.float64) - 127.5
        return (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32)


def texts(n: int, start: int = 0) -> list[str]:
    return [f"log line {i}" for i in range(start, start + n)]


def test_reembed_scores_the_distance_to_the_texts_fresh_embedding():
    model = HashEmbedder()
    train_texts, test_texts = texts(40), texts(10, 100)
    detector = build("embeddings", "reembed", {"embedder": model}).fit(
        pd.DataFrame({"embedding": list(model.embed(train_texts)), "content": train_texts}))
    test = model.embed(test_texts)
    rotated = perturb(test, "rotation", 0.01, np.random.default_rng(0)).astype(np.float32)
    scores = detector.decision_function(Vectors(np.concatenate([test, rotated]).astype(np.float64),
                                                test_texts + test_texts))
    np.testing.assert_array_equal(scores[:10], 0.0)
    np.testing.assert_allclose(scores[10:], np.linalg.norm(rotated.astype(np.float64) - test, axis=1), rtol=1e-12)
    assert (scores[10:] > 1e-4).all()
    nudged = test.astype(np.float64)
    nudged[:, 0] += 1e-6  # below the tolerance: rounding on another machine, not a change
    np.testing.assert_array_equal(detector.decision_function(Vectors(nudged, test_texts)), 0.0)
    with pytest.raises(DataError, match="give a 'content' column"):
        detector.decision_function(test)
    with pytest.raises(ModelFileError, match="cannot save"):
        detector.save("unused")


def test_reembed_refuses_vectors_another_model_made():
    train_texts = texts(20)
    other = HashEmbedder(b"another model").embed(train_texts)
    with pytest.raises(DataError, match="not this embedder's embeddings of their content: the median distance"):
        build("embeddings", "reembed", {"embedder": HashEmbedder()}).fit(
            pd.DataFrame({"embedding": list(other), "content": train_texts}))


def test_every_input_form_gives_the_same_vectors(data, tmp_path):
    import pyarrow.parquet as pq

    _, test = data
    table = pa.table({"embedding": [list(map(float, row)) for row in test[:5]], "content": texts(5)})
    pq.write_table(table, tmp_path / "v.parquet")
    frame = pd.DataFrame({"embedding": list(test[:5]), "content": texts(5)})
    forms = [test[:5], frame, table, tmp_path / "v.parquet", str(tmp_path / "v.parquet")]
    for form in forms:
        np.testing.assert_array_equal(read_vectors(form).matrix, test[:5].astype(np.float64))
    assert read_vectors(table).content == texts(5) and read_vectors(test[:5]).content is None


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 0)), "non-empty n x dim"),
    (np.array([[1.0, np.nan]]), "embedding 0 holds NaN"),
    (pd.DataFrame({"vec": [[1.0]]}), "no 'embedding' column"),
    (pd.DataFrame({"embedding": [[1.0, 2.0], [1.0]]}), "row 1 has 1 values"),
    (pa.table({"embedding": [[1.0], None]}), "row 1 has no embedding"),
    ({"embedding": [[1.0]]}, "got dict"),
])
def test_bad_input_is_refused_in_one_line(bad, message):
    with pytest.raises(DataError, match=message):
        read_vectors(bad)


def test_values_beyond_the_limit_are_refused_for_training_and_clipped_for_scoring(data):
    train, test = data
    huge = test[:2].astype(np.float64)
    huge[0, 0] = 1e300
    with pytest.raises(DataError, match="beyond"):
        build("embeddings", "norm").fit(np.concatenate([train, huge]))
    scores = build("embeddings", "dims").fit(train).decision_function(huge)
    assert np.isfinite(scores).all() and scores[0] > scores[1]


def test_perturbation_families_do_what_they_say():
    v = unit_vectors(50, 3, dim=48).astype(np.float64)
    rng = np.random.default_rng(0)
    rotated = perturb(v, "rotation", 0.3, rng)
    np.testing.assert_allclose(np.linalg.norm(rotated, axis=1), np.linalg.norm(v, axis=1), rtol=1e-12)
    assert (np.abs(rotated - v) > 1e-12).any(axis=0).sum() <= 2 * N_ROTATIONS
    renormed = perturb(v, "noise-renorm", 0.05, rng)
    np.testing.assert_allclose(np.linalg.norm(renormed, axis=1), np.linalg.norm(v, axis=1), rtol=1e-12)
    fragments = perturb(v, "fragmentation", 4, rng)
    kept = fragments != 0
    assert (kept.sum(axis=1) == 12).all() and (fragments[kept] == v[kept]).all()
    ratio = perturb(v, "scaling", 0.1, rng) / v
    np.testing.assert_allclose(ratio, ratio[:, :1] * np.ones_like(ratio), rtol=1e-12)
    offset = perturb(v, "offset", 0.01, rng) - v
    assert np.abs(offset).max() <= 0.01 and np.abs(offset).max() > 0.009
    with pytest.raises(DataError, match="unknown perturbation family"):
        perturb(v, "blur", 1, rng)


def test_recall_at_k_by_hand():
    queries = np.array([[1.0, 0.0]])
    store = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert recall_at_k(queries, store, store, k=2) == 1.0
    swapped = store[[2, 1, 0, 3]]  # rows 0 and 2 trade places: the top 2 were rows 0, 1; now 1, 2
    assert recall_at_k(queries, store, swapped, k=2) == 0.5
    assert recall_at_k(queries, store, store * [[1.0], [1.0], [1.0], [5.0]], k=2, cosine=True) == 1.0


def test_the_codec_takes_vectors_and_for_reembed_their_texts(data):
    from normalcy.serve.codec import Limits, RequestError, Tensor, codec_for

    train, test = data
    detector = build("embeddings", "norm").fit(train).set_threshold(5.0)
    codec = codec_for(detector, Limits())
    assert [s.name for s in codec.inputs] == ["embedding"] and codec.inputs[0].shape == (-1, DIM)
    batch = codec.decode({"embedding": Tensor("embedding", "FP32", (3, DIM), test[:3].reshape(-1))}, {})
    outputs = codec.predict(batch, {})
    np.testing.assert_array_equal(outputs[0].data, detector.decision_function(test[:3]))
    bad = test[:2].astype(np.float64).reshape(-1)
    bad[DIM + 1] = np.nan
    with pytest.raises(RequestError, match="vector 1 holds"):
        codec.decode({"embedding": Tensor("embedding", "FP64", (2, DIM), bad)}, {})
    model = HashEmbedder()
    reembed = build("embeddings", "reembed", {"embedder": model}).fit(
        pd.DataFrame({"embedding": list(model.embed(texts(8))), "content": texts(8)}))
    assert [s.name for s in codec_for(reembed, Limits()).inputs] == ["embedding", "content"]


def test_a_served_model_scores_as_in_process_behind_the_token(data, tmp_path):
    from fastapi.testclient import TestClient

    from normalcy.serve.app import create_app

    train, test = data
    detector = build("embeddings", "moments").fit(train).set_threshold(10.0)
    path = detector.save(tmp_path / "store.model")
    body = {"inputs": [{"name": "embedding", "datatype": "FP32", "shape": [4, DIM],
                        "data": test[:4].reshape(-1).tolist()}]}
    with TestClient(create_app([path], token="secret", workers=1, threads=1)) as client:
        assert client.post("/v2/models/store/infer", json=body).status_code == 401
        response = client.post("/v2/models/store/infer", json=body, headers={"Authorization": "Bearer secret"})
    assert response.status_code == 200, response.text
    served = {o["name"]: o["data"] for o in response.json()["outputs"]}
    np.testing.assert_allclose(served["score"], detector.decision_function(test[:4]), rtol=1e-12)
    assert served["label"] == (detector.decision_function(test[:4]) >= 10.0).tolist()
