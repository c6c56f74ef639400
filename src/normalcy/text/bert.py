"""The torch side of the sentence embedder (see `normalcy.text.embedding`): a model folder's
tokenizer, BERT network and pooling. Imported on first use of a model, so reading texts,
checking parameters and the detector registry do not wait for torch to import."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from normalcy.core.errors import ModelFileError
from normalcy.core.modelfile import sha256_file
from normalcy.text.embedding import read_json, weight_files


class Model:
    """Tokenizer, network and pooling of one model folder, loaded once per process."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        config = read_json(folder / "config.json")
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu" \
                or config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelFileError(f"{folder}: only BERT models (absolute positions, GELU) are supported, "
                                 f"config.json says model_type={config.get('model_type')!r}")
        self.dim = int(config["hidden_size"])
        self.max_positions = int(config["max_position_embeddings"])
        st_config = folder / "sentence_bert_config.json"
        limit = read_json(st_config).get("max_seq_length") if st_config.is_file() else None
        self.max_tokens = min(int(limit or self.max_positions), self.max_positions)
        pooling_file = folder / "1_Pooling" / "config.json"
        pooling = read_json(pooling_file) if pooling_file.is_file() else {"pooling_mode_mean_tokens": True}
        if pooling.get("pooling_mode_mean_tokens"):
            self.pooling = "mean"
        elif pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        else:
            raise ModelFileError(f"{pooling_file}: only mean or CLS pooling is supported")
        try:
            self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own Exception subclass
            raise ModelFileError(f"cannot read {folder / 'tokenizer.json'}: {exc}") from exc
        self.tokenizer.no_padding()
        weights, self.weights_sha256 = read_weights(folder)
        self.net = Bert(config)
        self.net.load_bert_weights(weights, folder)
        self.net.eval()

    def tokenize(self, texts: list[str], limit: int) -> list[list[int]]:
        self.tokenizer.enable_truncation(max_length=limit)
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def forward(self, encodings: list[list[int]]) -> np.ndarray:
        width = max(len(e) for e in encodings)
        ids = torch.zeros((len(encodings), width), dtype=torch.long)
        mask = torch.zeros((len(encodings), width), dtype=torch.bool)
        for row, e in enumerate(encodings):
            ids[row, :len(e)] = torch.tensor(e)
            mask[row, :len(e)] = True
        with torch.inference_mode(), warnings.catch_warnings():
            # torch's fast path warns that its nested-tensor layout is a prototype.
            warnings.filterwarnings("ignore", message="The PyTorch API of nested tensors")
            tokens = self.net(ids, mask)
            if self.pooling == "mean":
                m = mask.unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)
            else:
                pooled = tokens[:, 0]
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.numpy()


class Bert(nn.Module):
    """BERT's encoder: embeddings, then post-norm transformer layers with GELU."""

    def __init__(self, config: dict):
        super().__init__()
        hidden, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        self.word = nn.Embedding(int(config["vocab_size"]), hidden)
        self.position = nn.Embedding(int(config["max_position_embeddings"]), hidden)
        self.token_type = nn.Embedding(int(config.get("type_vocab_size", 2)), hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        layer = nn.TransformerEncoderLayer(hidden, int(config["num_attention_heads"]),
                                           int(config["intermediate_size"]), dropout=0.0, activation="gelu",
                                           layer_norm_eps=eps, batch_first=True, norm_first=False)
        # Nested tensors let inference skip the padding (torch's fast path).
        self.encoder = nn.TransformerEncoder(layer, int(config["num_hidden_layers"]), enable_nested_tensor=True)

    def forward(self, ids, mask):
        positions = torch.arange(ids.shape[1]).unsqueeze(0)
        x = self.word(ids) + self.position(positions) + self.token_type(torch.zeros_like(ids))
        return self.encoder(self.norm(x), src_key_padding_mask=~mask)

    def load_bert_weights(self, weights: dict, folder: Path) -> None:
        """Map a BERT checkpoint's names onto this module; every weight must be there."""
        w = {k.removeprefix("bert."): v for k, v in weights.items()}
        state = {"word.weight": "embeddings.word_embeddings.weight",
                 "position.weight": "embeddings.position_embeddings.weight",
                 "token_type.weight": "embeddings.token_type_embeddings.weight",
                 "norm.weight": "embeddings.LayerNorm.weight", "norm.bias": "embeddings.LayerNorm.bias"}
        for i in range(len(self.encoder.layers)):
            src, dst = f"encoder.layer.{i}.", f"encoder.layers.{i}."
            state.update({
                dst + "self_attn.out_proj.weight": src + "attention.output.dense.weight",
                dst + "self_attn.out_proj.bias": src + "attention.output.dense.bias",
                dst + "norm1.weight": src + "attention.output.LayerNorm.weight",
                dst + "norm1.bias": src + "attention.output.LayerNorm.bias",
                dst + "linear1.weight": src + "intermediate.dense.weight",
                dst + "linear1.bias": src + "intermediate.dense.bias",
                dst + "linear2.weight": src + "output.dense.weight",
                dst + "linear2.bias": src + "output.dense.bias",
                dst + "norm2.weight": src + "output.LayerNorm.weight",
                dst + "norm2.bias": src + "output.LayerNorm.bias",
            })
        missing = sorted({name for name in state.values() if name not in w})
        qkv = [f"encoder.layer.{i}.attention.self.{p}.{t}" for i in range(len(self.encoder.layers))
               for p in ("query", "key", "value") for t in ("weight", "bias")]
        missing += [name for name in qkv if name not in w]
        if missing:
            raise ModelFileError(f"{folder}: weights missing from the checkpoint: {', '.join(missing[:4])}"
                                 + (" ..." if len(missing) > 4 else ""))
        tensors = {dst: w[src] for dst, src in state.items()}
        for i in range(len(self.encoder.layers)):
            src = f"encoder.layer.{i}.attention.self."
            for t in ("weight", "bias"):
                tensors[f"encoder.layers.{i}.self_attn.in_proj_{t}"] = torch.cat(
                    [w[f"{src}{p}.{t}"] for p in ("query", "key", "value")])
        try:
            self.load_state_dict(tensors, strict=True)
        except RuntimeError as exc:
            raise ModelFileError(f"{folder}: weights do not fit config.json: {exc}") from exc


def read_weights(folder: Path) -> tuple[dict, str]:
    """The checkpoint's tensors (safetensors, else a torch state dict read with
    weights_only=True: tensors, never code) and the file's sha256."""
    files = weight_files(folder)
    if not files:
        raise ModelFileError(f"{folder} has no model.safetensors or pytorch_model.bin")
    file = files[0]
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            weights = load_file(str(file))
        else:
            weights = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors and torch raise several kinds for a damaged file
        raise ModelFileError(f"cannot read weights {file}: {exc}") from exc
    if not isinstance(weights, dict):
        raise ModelFileError(f"{file} does not hold a state dict of tensors")
    return weights, sha256_file(file)
