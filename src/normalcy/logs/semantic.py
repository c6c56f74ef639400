"""Semantic template representations: each event's template text as a sentence embedding, so
a template never seen in training lands near the known templates it resembles (LogRobust,
Zhang et al. 2019; NeuralLog, Le & Zhang 2021; the embedding detectors of Text-ADBench).

- `Events`: one group's event ids with the text of each event's template (a Drain template,
  or for parser-free use the masked line). It is an int64 array, so every log detector reads
  it as an event-id sequence; the semantic detectors also read `templates`. `LogModel` gives
  them Events, with lines that no template matched under ids of their own (negative, one per
  distinct masked text), so each unseen line keeps its text.
- `TemplateVectors`: texts in, unit vectors out, each distinct text embedded once per process
  (and, given a folder, once across runs: `cache_dir`), so a stream where few lines bring a
  new template costs a dictionary look-up per line. A fitted detector keeps the vectors of
  its known templates in its model folder (arrays), and needs the embedder again only for
  templates it has never seen.
- Embedders: the bundled all-MiniLM-L6-v2 (`normalcy.text`, offline), any local
  sentence-transformers folder, or `hashing`: word and character 3-gram counts hashed into 384
  dimensions, a lexical stand-in without a model (fast; for tests and as a baseline showing
  what the sentence model adds). A template is embedded as its `words`, as LogRobust and
  NeuralLog prepare messages for a language model.
- `SemanticDetector`: the base of the detectors on these vectors. A group's score combines
  the detector's own model score with the *unseen-template score*: for each event whose
  template was not seen in training, how far it is from every known template (cosine
  distance to the nearest), the group taking its farthest. Each part is divided by its own
  label-free scale, and the own threshold is 1, where either part alone reaches its scale or
  both together do:

      score = model / model_scale + novelty / novelty_scale

  Both scales come from held-out training groups: the last `holdout` share (10 %) of the
  distinct sequences in the order given (time order for the windows and sessions of one log),
  so that they bring what a later period brings and none repeats a training group verbatim.
  model_scale is the largest model score among them; novelty_scale the farthest that a
  template new in them is from the templates of the groups before (without new templates
  there: the farthest any known template is from its nearest other one). So a reworded
  template (distance near 0) adds almost nothing, and a template as foreign as the most
  foreign one normal operation brought adds as much as the model's largest held-out score.
  With `level_weights`, an unseen event's distance counts times the weight of its line's log
  level (`Events.levels`), so that a new INFO message can weigh less than a new FATAL one;
  `normalcy.logs.history` learns the weights, and a threshold, from labelled history.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from normalcy.core.detector import expect_arrays
from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.results import Explanation
from normalcy.logs.base import Blame, SequenceDetector, as_sequences, check_number
from normalcy.logs.sessions import encode
from normalcy.text.embedding import DEFAULT, BertEmbedder, Embedder, from_spec, get_embedder, weight_files

HASHING = "hashing"
HASHING_DIM = 384
DEFAULT_NOVELTY_SCALE = 0.5  # with a single known template, nothing to measure spacing by
MIN_NOVELTY_SCALE = 0.05
MAX_TEMPLATE_CHARS = 2000  # the embedder truncates at 256 tokens anyway
MAX_LEVEL_WEIGHT = 100.0


class Events(np.ndarray):
    """Event ids of one group (int64) with `templates`: event id -> template text, and
    optionally `levels`: the log level of each event's line (what `level_weights` reads; None
    where the log has no levels). Views and slices keep `templates`, and slices their levels;
    `np.asarray` gives the plain id array."""

    templates: Mapping[int, str]
    levels: np.ndarray | None

    def __new__(cls, ids, templates: Mapping[int, str], levels: Sequence | None = None):
        obj = np.asarray(ids, dtype=np.int64).reshape(-1).view(cls)
        obj.templates = templates
        if levels is not None:
            levels = np.asarray(levels, dtype=object).reshape(-1)
            if len(levels) != len(obj):
                raise DataError(f"Events: {len(levels)} levels for {len(obj)} events")
        obj.levels = levels
        return obj

    def __array_finalize__(self, obj):
        self.templates = getattr(obj, "templates", {})
        levels = getattr(obj, "levels", None)
        # An operation that changes the length cannot say which levels remain.
        self.levels = levels if levels is not None and len(levels) == self.size else None

    def __getitem__(self, key):
        out = super().__getitem__(key)
        if isinstance(out, Events) and self.levels is not None:
            out.levels = self.levels[key]
        return out

    def __reduce__(self):
        return Events, (np.asarray(self), dict(self.templates), self.levels)


def with_templates(sequences: Sequence, templates: Mapping[int, str],
                   levels: Sequence | None = None) -> list[Events]:
    """Each sequence of event ids as `Events` sharing one id -> template table, with its events'
    log levels where `levels` gives one sequence of them per sequence."""
    if levels is None:
        return [Events(s, templates) for s in sequences]
    return [Events(s, templates, lv) for s, lv in zip(sequences, levels, strict=True)]


class HashingEmbedder(Embedder):
    """Word and character 3-gram counts hashed into `dim` dimensions, L2-normalised: texts that
    share words and spellings are close. No model, no torch."""

    def __init__(self, dim: int = HASHING_DIM):
        self.dim = dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import HashingVectorizer

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        words_ = HashingVectorizer(n_features=self.dim, alternate_sign=False, norm=None,
                                   token_pattern=r"[A-Za-z]{2,}|<\w+>|\*")
        chars = HashingVectorizer(n_features=self.dim, alternate_sign=False, norm=None, analyzer="char_wb",
                                  ngram_range=(3, 3))
        v = (words_.transform(texts) + chars.transform(texts)).toarray()
        norms = np.linalg.norm(v, axis=1, keepdims=True)
        return (v / np.where(norms > 0, norms, 1.0)).astype(np.float32)

    def spec(self) -> dict:
        return {"name": HASHING, "dim": self.dim}


def embedder_named(name: str, threads: int | None = 1) -> Embedder:
    """The embedder of a detector's `embedder` parameter: "all-MiniLM-L6-v2", "hashing" or a
    local sentence-transformers folder."""
    if name == HASHING:
        return HashingEmbedder()
    return get_embedder(name, threads=threads)


def embedder_from_spec(spec: dict, threads: int | None = 1) -> Embedder:
    """The embedder a model file describes, checked to have the same weights."""
    if isinstance(spec, dict) and spec.get("name") == HASHING:
        if spec.get("dim") != HASHING_DIM:
            raise ModelFileError(f"model state: the hashing embedder has {HASHING_DIM} dimensions, the file says "
                                 f"{spec.get('dim')!r}")
        return HashingEmbedder()
    return from_spec(spec, threads=threads)


def embedder_key(embedder: Embedder) -> str:
    """Which vectors an embedder gives, without loading its model: the process cache's key."""
    if isinstance(embedder, HashingEmbedder):
        return f"{HASHING}:{embedder.dim}"
    if isinstance(embedder, BertEmbedder):
        folder = embedder.folder.resolve()
        stamps = [(f.stat().st_mtime_ns, f.stat().st_size) for f in weight_files(folder)]
        return f"bert:{folder}:{stamps}:{embedder.max_tokens}"
    return f"object:{id(embedder)}"


# embedder key -> text -> unit vector: every text is embedded once per process.
_MEMORY: dict[str, dict[str, np.ndarray]] = {}
_MEMORY_LIMIT = 200_000  # texts per embedder


class TemplateVectors:
    """Unit vectors of template texts through `embedder`, each distinct text embedded once per
    process (`shared`; otherwise once per object); with `cache_dir`, vectors are also kept on
    disk (one .npz per embedder and weights) and read back in later runs. A template is
    embedded as its `words`."""

    def __init__(self, embedder: Embedder, cache_dir: str | Path | None = None, shared: bool = True):
        self.embedder = embedder
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._memory = _MEMORY.setdefault(embedder_key(embedder), {}) if shared else {}
        self._disk_loaded = False
        self.embedded = 0  # texts this object sent to the embedder
        self.embed_seconds = 0.0  # and the time that took

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        texts = [_clip(t, i) for i, t in enumerate(texts)]
        memory = self._memory
        missing = list(dict.fromkeys(t for t in texts if t not in memory))
        if missing and self.cache_dir is not None and not self._disk_loaded:
            self._read_disk()
            missing = [t for t in missing if t not in memory]
        if missing:
            if len(memory) + len(missing) > _MEMORY_LIMIT:
                memory.clear()
            start = time.perf_counter()
            vectors = np.asarray(self.embedder.embed(missing), dtype=np.float32)
            self.embed_seconds += time.perf_counter() - start
            self.embedded += len(missing)
            for text, v in zip(missing, vectors):
                memory[text] = v
            if self.cache_dir is not None:
                self._write_disk()
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([memory[t] for t in texts])

    def _disk_file(self) -> Path:
        spec = json.dumps(self.embedder.spec(), sort_keys=True)
        return self.cache_dir / f"templates-{hashlib.sha256(spec.encode()).hexdigest()[:16]}.npz"

    def _read_disk(self) -> None:
        self._disk_loaded = True
        file = self._disk_file()
        if file.is_file():
            with np.load(file, allow_pickle=False) as saved:
                for text, v in zip(saved["texts"].tolist(), saved["vectors"]):
                    self._memory.setdefault(text, v)

    def _write_disk(self) -> None:
        import io

        from normalcy.core.benchmark import write_atomic

        texts = list(self._memory)
        buffer = io.BytesIO()
        np.savez(buffer, texts=np.array(texts, dtype=str), vectors=np.stack([self._memory[t] for t in texts]))
        write_atomic(self._disk_file(), buffer.getvalue())


def _clip(text, index: int) -> str:
    if not isinstance(text, str):
        raise DataError(f"template {index} is a {type(text).__name__}, not text")
    return words(text[:MAX_TEMPLATE_CHARS])


_PLACEHOLDERS = re.compile(r"<\*>|<\w{1,40}>")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_LETTERS = re.compile(r"[^A-Za-z]+")


def words(template: str) -> str:
    """What the embedder reads of a template: its words, as LogRobust and NeuralLog prepare log
    messages for a language model: placeholders and every character that is no letter become
    spaces and camelCase is split (`ciod: Error loading <PATH>` -> `ciod Error loading`). A
    template with no letters is read as it is."""
    text = _NON_LETTERS.sub(" ", _CAMEL.sub(" ", _PLACEHOLDERS.sub(" ", template))).strip()
    return " ".join(text.split()) or template


def group_templates(X) -> tuple[list[np.ndarray], dict[int, str]]:
    """The checked event-id sequences of X and the template text of every id that any of its
    `Events` names (plain id sequences name none)."""
    templates: dict[int, str] = {}
    tables: list[Mapping] = []
    if not isinstance(X, (str, bytes)) and hasattr(X, "__iter__"):
        X = list(X)
        for s in X:
            table = getattr(s, "templates", None)
            if isinstance(table, Mapping) and not any(table is t for t in tables):
                tables.append(table)
    for table in tables:
        for k, v in table.items():
            if not isinstance(v, str):
                raise DataError(f"the template of event {k!r} is a {type(v).__name__}, not text")
            templates[int(k)] = v
    return as_sequences(X), templates


def _level_at(levels: list | None, group: int, position: int) -> str | None:
    """The log level of one event of one group, None where there is none."""
    found = levels[group] if levels else None
    return None if found is None or found[position] in (None, "") else str(found[position])


class SemanticDetector(SequenceDetector):
    """Base of the detectors on template vectors; see the module doc. A subclass implements
    `_fit_model(train, lookup, held)` and `_model_scores(seqs, lookup)` (one score per group,
    higher = more anomalous) on event sequences and a `_Lookup` from event id to vector, and
    `_model_state` / `_set_model_state`; `_model_blame` may name the events behind the model
    score."""

    needs_templates: ClassVar[bool] = True

    # --- public contract: Events in --------------------------------------------------------
    def fit(self, X, y=None) -> "SemanticDetector":
        self._check_params()
        seqs, templates = group_templates(X)
        if len(seqs) < self.min_groups:
            raise DataError(f"{self.name} needs at least {self.min_groups} sessions or windows to learn from, "
                            f"got {len(seqs)}")
        vocab = np.unique(np.concatenate(seqs))
        missing = [int(e) for e in vocab if int(e) not in templates]
        if missing:
            raise DataError(f"{self.name} needs the template text of every event: event {missing[0]} has none. Give "
                            "each group as normalcy.logs.semantic.Events (ids with their templates), or fit through "
                            "LogModel (normalcy logs fit)")
        self.vocab_ = vocab
        embedder = embedder_named(self.embedder, self.threads)
        self._vectors = TemplateVectors(embedder, self.cache_dir)
        self.embedder_spec_ = embedder.spec()
        self.template_texts_ = [templates[int(e)] for e in vocab]
        self.vectors_ = self._vectors(self.template_texts_)
        self._fit_encoded(seqs)
        return self

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted("vocab_")
        return self._combined(*self._read(X))[0]

    def level_parts(self, X) -> tuple[np.ndarray, list[dict]]:
        """The two parts of each group's score before any level weight: the model part (model
        score / model_scale) and, per log level of its unseen events, the farthest of them over
        novelty_scale (level None: events without one). `normalcy.logs.history` learns
        `level_weights` from these."""
        self._check_fitted("vocab_")
        seqs, templates, levels = self._read(X)
        _, model, novelty, _ = self._combined(seqs, templates)  # no levels given: no weights
        parts = []
        for g, distance in enumerate(novelty):
            top = {}
            for p in np.flatnonzero(distance > 0):
                level = _level_at(levels, g, p)
                top[level] = max(top.get(level, 0.0), float(distance[p]) / self.novelty_scale_)
            parts.append(top)
        return model / self.model_scale_, parts

    def _read(self, X):
        """Sequences, template texts and, per group, its events' levels (None: none given)."""
        if not isinstance(X, (str, bytes)) and hasattr(X, "__iter__"):
            X = list(X)
        seqs, templates = group_templates(X)  # checks X
        return seqs, templates, [getattr(s, "levels", None) for s in X]

    def explain_blame(self, X, max_events: int = 3):
        """`SequenceDetector.explain_blame`, with the template texts that `Events` carry."""
        self._check_fitted("vocab_")
        seqs, templates, levels = self._read(X)
        contributions, blame, scores = self._explain(seqs, templates, levels, max_events)
        return Explanation(scores, self.parts_, contributions, [b.reasons for b in blame]), blame

    def _explain(self, seqs, templates, levels, max_events):
        """Contributions (all on "unseen": the unseen-template part; the model part is no sum
        over events and is given in the reasons), one Blame per group, and the scores."""
        scores, model, novelty, lookup = self._combined(seqs, templates, levels)
        extras = self._model_blame(seqs, lookup, max_events)
        blame = []
        for g, seq in enumerate(seqs):
            far = sorted(((d, p) for p, d in enumerate(novelty[g]) if d > 0), key=lambda x: -x[0])
            distance = lookup.novelty(seq)  # before any level weight
            reasons = []
            if model[g] > 0:
                reasons.append(f"{self._model_reason()} {model[g]:.3g} (scale {self.model_scale_:.3g})")
            # One reason per unseen template, however often it occurs (at its first position).
            first = {int(seq[p]): (d, p) for d, p in reversed(far)}
            for d, p in sorted(first.values(), key=lambda x: (-x[0], x[1]))[:max_events]:
                e = int(seq[p])
                level = _level_at(levels, g, p)
                weight = self._level_weight(level)
                reasons.append(f"template never seen in training: {lookup.text(e)!r}, at cosine distance "
                               f"{distance[p]:.2f} from the nearest known one (E{int(self.vocab_[lookup.nearest(e)])}; "
                               f"scale {self.novelty_scale_:.2f})"
                               + (f", counted x{weight:g} at level {level}" if weight != 1.0 else ""))
            extra = extras[g]
            positions = sorted({p for _, p in far} | set(extra.positions))
            events = list(dict.fromkeys([int(seq[p]) for _, p in far] + extra.events))
            blame.append(Blame(events, positions, reasons + extra.reasons))
        contributions = np.zeros((len(seqs), len(self.vocab_) + 1))
        contributions[:, -1] = np.array([n.max(initial=0.0) for n in novelty]) / self.novelty_scale_
        return contributions, blame, scores

    def _combined(self, seqs, templates, levels=None):
        """Scores, model scores, per-event novelty distances (times their level's weight) and
        the id -> vector lookup."""
        lookup = _Lookup(self, seqs, templates)
        model = np.asarray(self._model_scores(seqs, lookup), dtype=np.float64)
        novelty = [lookup.novelty(seq) for seq in seqs]
        if self.level_weights and levels:
            for g, distance in enumerate(novelty):
                for p in np.flatnonzero(distance > 0):
                    distance[p] *= self._level_weight(_level_at(levels, g, p))
        top = np.array([n.max(initial=0.0) for n in novelty])
        return model / self.model_scale_ + top / self.novelty_scale_, model, novelty, lookup

    # --- SequenceDetector hooks -----------------------------------------------------------
    def _fit_encoded(self, seqs):
        keys = [s.tobytes() for s in seqs]
        distinct = list(dict.fromkeys(keys))
        n_held = int(round(self.holdout * len(distinct))) if len(distinct) >= 10 else 0
        held_keys = set(distinct[len(distinct) - n_held:])
        held = [s for s, k in zip(seqs, keys) if k in held_keys]
        train = [s for s, k in zip(seqs, keys) if k not in held_keys]
        known = _Lookup(self, [], {})
        self._fit_model(train, known, held)
        reference = held if held else train
        self.model_scale_ = max(float(np.max(self._model_scores(reference, known))), 1e-6)
        novelty = self._held_novelty(train, held)
        self.novelty_scale_ = max(float(novelty.max()), MIN_NOVELTY_SCALE) if novelty.any() else self._spacing()
        self.n_scale_groups_ = len(reference)
        what = "held-out" if held else "training"
        self.set_threshold(1.0, f"model score {self.model_scale_:.4g} (the largest of {len(reference)} {what} groups) "
                                f"and unseen templates {self.novelty_scale_:.3g} away (the farthest new one among "
                                "them), combined")

    def _held_novelty(self, train, held) -> np.ndarray:
        """Per held-out group: the farthest any of its templates that the training groups lack
        is from the templates of the training groups (cosine distance; 0 if it has none)."""
        earlier = np.unique(np.concatenate(train)) if train else np.zeros(0, dtype=np.int64)
        if not len(earlier) or not held:
            return np.zeros(len(held))
        known = self.vectors_[np.searchsorted(self.vocab_, earlier)]
        out = np.zeros(len(held))
        for g, seq in enumerate(held):
            new = np.setdiff1d(seq, earlier)
            if len(new):
                sims = self.vectors_[np.searchsorted(self.vocab_, new)] @ known.T
                out[g] = float(np.clip(1.0 - sims.max(axis=1), 0.0, 1.0).max())
        return out

    def _spacing(self) -> float:
        """Without held-out templates to measure: the farthest any known template is from its
        nearest other one, as if each in turn were new (at least MIN_NOVELTY_SCALE)."""
        if len(self.vectors_) < 2:
            return DEFAULT_NOVELTY_SCALE
        sims = self.vectors_ @ self.vectors_.T
        np.fill_diagonal(sims, -np.inf)
        return max(float(np.clip(1.0 - sims.max(axis=1), 0.0, 1.0).max()), MIN_NOVELTY_SCALE)

    def _score_encoded(self, seqs):
        return self._combined(seqs, {})[0]

    def _explain_encoded(self, seqs, max_events):
        return self._explain(seqs, {}, None, max_events)[:2]

    def _level_weight(self, level: str | None) -> float:
        return float((self.level_weights or {}).get(level, 1.0)) if level is not None else 1.0

    def _own_state(self):
        arrays, meta = self._model_state()
        texts = "\n".join(t.replace("\n", " ") for t in self.template_texts_).encode("utf-8")
        arrays = {**arrays, "semantic.vectors": self.vectors_,
                  "semantic.templates_utf8": np.frombuffer(texts, dtype=np.uint8).copy(),
                  "semantic.scales": np.array([self.model_scale_, self.novelty_scale_])}
        return arrays, {**meta, "embedder": self.embedder_spec_, "scale_groups": self.n_scale_groups_}

    def _set_own_state(self, arrays, meta):
        n = len(self.vocab_)
        expect_arrays(arrays, {"semantic.vectors": (n, None), "semantic.templates_utf8": (None,),
                               "semantic.scales": (2,)})
        try:
            texts = arrays["semantic.templates_utf8"].astype(np.uint8).tobytes().decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise ModelFileError("model state: the template texts are not UTF-8") from None
        if len(texts) != n:
            raise ModelFileError(f"model state: {len(texts)} template texts for {n} events")
        scales = arrays["semantic.scales"]
        if not (scales > 0).all():
            raise ModelFileError("model state: the score scales must be positive")
        spec = meta.get("embedder")
        if not isinstance(spec, dict):
            raise ModelFileError("model state: the embedder description is missing")
        scale_groups = meta.get("scale_groups")
        if not isinstance(scale_groups, int) or scale_groups < 1:
            raise ModelFileError("model state: the number of groups behind the model scale is missing")
        self.vectors_ = np.ascontiguousarray(arrays["semantic.vectors"], dtype=np.float32)
        self.template_texts_ = texts
        self.model_scale_, self.novelty_scale_ = float(scales[0]), float(scales[1])
        self.embedder_spec_ = spec
        self.n_scale_groups_ = scale_groups
        self._vectors = None  # the embedder is loaded (and its weights checked) when first needed
        self._set_model_state(arrays, meta)

    def _template_vectors(self) -> TemplateVectors:
        if getattr(self, "_vectors", None) is None:
            self._vectors = TemplateVectors(embedder_from_spec(self.embedder_spec_, self.threads), self.cache_dir)
        return self._vectors

    def _check_semantic_params(self):
        if not isinstance(self.embedder, str):
            raise DataError(f"{self.name} embedder must be {DEFAULT!r}, {HASHING!r} or a model folder, got "
                            f"{self.embedder!r}")
        check_number(self.name, "holdout", self.holdout, 0.0, 0.5)
        check_number(self.name, "seed", self.seed, 0, 2 ** 63 - 1, integer=True)
        if self.threads is not None:
            check_number(self.name, "threads", self.threads, 1, 4096, integer=True)
        if self.cache_dir is not None and not isinstance(self.cache_dir, str):
            raise DataError(f"{self.name} cache_dir must be a folder name or None, got {self.cache_dir!r}")
        if self.level_weights is not None:
            if not isinstance(self.level_weights, Mapping):
                raise DataError(f"{self.name} level_weights must map log levels to weights, e.g. "
                                f'{{"INFO": 0.5}}, got {self.level_weights!r}')
            for level, weight in self.level_weights.items():
                if not isinstance(level, str):
                    raise DataError(f"{self.name} level_weights: the levels must be text, got {level!r}")
                check_number(self.name, f"level_weights[{level!r}]", weight, 0.0, MAX_LEVEL_WEIGHT)

    # --- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _fit_model(self, train: list[np.ndarray], lookup: "_Lookup", held: list[np.ndarray]) -> None:
        """Learn from the training groups (`held` may serve for early stopping)."""

    @abstractmethod
    def _model_scores(self, seqs: list[np.ndarray], lookup: "_Lookup") -> np.ndarray:
        """One model score per group."""

    def _model_reason(self) -> str:
        return "model score"

    def _model_blame(self, seqs: list[np.ndarray], lookup: "_Lookup", max_events: int) -> list[Blame]:
        """Per group, the events the model part blames (none by default)."""
        return [Blame() for _ in seqs]

    @abstractmethod
    def _model_state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The model's arrays and metadata."""

    @abstractmethod
    def _set_model_state(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Restore `_model_state`."""


class _Lookup:
    """Event id -> vector and novelty for one scoring call: known events from the detector's
    table, events outside the vocabulary by their template text (embedded once, cached), and
    an event with neither as a vector of zeros at the largest novelty, 1."""

    def __init__(self, detector: SemanticDetector, seqs: list[np.ndarray], templates: Mapping[int, str]):
        self.detector = detector
        vocab = detector.vocab_
        unknown = np.unique(np.concatenate(seqs)) if seqs else np.zeros(0, dtype=np.int64)
        unknown = unknown[encode(unknown, vocab) == len(vocab)]
        self.texts = {int(e): templates[int(e)] for e in unknown if int(e) in templates}
        known = detector.vectors_
        extra_ids = list(self.texts)
        extra = (detector._template_vectors()([self.texts[e] for e in extra_ids]) if extra_ids
                 else np.zeros((0, known.shape[1]), dtype=np.float32))
        # Rows of `table`: the vocabulary, the unseen events with a text, then one row of zeros.
        self.table = np.vstack([known, extra, np.zeros((1, known.shape[1]), dtype=np.float32)])
        self.extra_ids = np.array(extra_ids, dtype=np.int64)
        order = np.argsort(self.extra_ids)
        self.extra_sorted, self.extra_rows = self.extra_ids[order], len(vocab) + order
        sims = extra @ known.T if len(extra_ids) else np.zeros((0, len(vocab)))
        self.extra_distance = np.clip(1.0 - sims.max(axis=1, initial=-1.0), 0.0, 1.0)
        self.extra_nearest = sims.argmax(axis=1) if len(extra_ids) else np.zeros(0, dtype=np.int64)

    def rows(self, seq: np.ndarray) -> np.ndarray:
        """Row of `table` for each event of a sequence."""
        vocab = self.detector.vocab_
        pos = encode(seq, vocab)
        out = pos.copy()
        outside = pos == len(vocab)
        if outside.any():
            ids = np.asarray(seq, dtype=np.int64)[outside]
            if len(self.extra_sorted):
                j = np.minimum(np.searchsorted(self.extra_sorted, ids), len(self.extra_sorted) - 1)
                out[outside] = np.where(self.extra_sorted[j] == ids, self.extra_rows[j], len(self.table) - 1)
            else:
                out[outside] = len(self.table) - 1
        return out

    def vectors(self, seq: np.ndarray) -> np.ndarray:
        return self.table[self.rows(seq)]

    def novelty(self, seq: np.ndarray) -> np.ndarray:
        """Per event: 0 if known, else the cosine distance to the nearest known template (1 for
        an event without a text)."""
        rows = self.rows(seq)
        n = len(self.detector.vocab_)
        out = np.zeros(len(rows))
        extra = (rows >= n) & (rows < len(self.table) - 1)
        out[extra] = self.extra_distance[rows[extra] - n]
        out[rows == len(self.table) - 1] = 1.0
        return out

    def nearest(self, event: int) -> int:
        """The vocabulary position of the known template nearest to an unseen event (0 for one
        without a text)."""
        hit = np.flatnonzero(self.extra_ids == event)
        return int(self.extra_nearest[hit[0]]) if len(hit) else 0

    def text(self, event: int) -> str:
        pos = encode(np.array([event]), self.detector.vocab_)[0]
        if pos < len(self.detector.vocab_):
            return self.detector.template_texts_[pos]
        return self.texts.get(int(event), f"(event {event}, no template text)")
