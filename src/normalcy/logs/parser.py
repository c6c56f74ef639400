"""Template mining with Drain3: each log line's content becomes an event id.

Masking runs first, as drain3's masking instructions do (each mask's regex replaced by
``<NAME>`` in turn), but per distinct token and cached: log tokens repeat so much that almost
every token is masked once, which keeps the parser well above 20,000 lines/s. The masks (block
ids, UUIDs, dates and times, IPv4/IPv6/MAC addresses, host names, hex numbers, paths, numbers,
hex ids) therefore never span whitespace. Masks other than the default ones come from a user
or a model file and run within a time bound (`normalcy.logs.patterns`); their names must be
plain words.

Drain treats a masked token as a variable (`_Drain`), and its defaults (SIM_TH, DEPTH) and the
masks were chosen by grouping accuracy on the 16 loghub systems, by leave-one-system-out
(`normalcy.logs.parsing`, docs/logs.md).

State: the clusters (id, template tokens, size) go to the model file as JSON and arrays;
loading rebuilds Drain's prefix tree from them (drain3's own jsonpickle persistence is never
used). Right after `fit` the tree is rebuilt the same way, so a parser matches identically
before and after a save.

`fit` learns templates; `transform` only matches (``Drain.match``) and gives `UNSEEN` (0) to a
line that fits no known template.
"""

from __future__ import annotations

import functools
import re
from typing import Iterable

import numpy as np
from drain3.drain import Drain, LogCluster

from normalcy.core.errors import DataError, ModelFileError
from normalcy.core.progress import progress
from normalcy.logs.patterns import Pattern

UNSEEN = 0
PARAM = "<*>"
# Drain's similarity threshold and tree depth: the best mean grouping accuracy over the loghub
# systems, and the choice of every leave-one-system-out round (docs/logs.md).
SIM_TH = 0.7
DEPTH = 5

# Applied in order to each whitespace token, the more specific first; what one mask replaced
# is a <NAME> the later ones leave alone. A number is NUM even when it could be a hex ID.
MASKS: tuple[tuple[str, str], ...] = (
    ("BLK", r"blk_-?\d+"),
    ("UUID", r"(?<![\w-])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-])"),
    # Dates with an optional time (2005-06-03, 2016/9/28:16:00:46.635, 2005-06-03-15.43.03.623873,
    # 2023-12-10T06:55:46Z) and times of day (06:55:46, 16:00:46,635).
    ("TIME", r"(?<![\w.:/-])\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:[-T:.]\d{1,2}[.:]\d{2}[.:]\d{2}(?:[.,]\d+)?)?"
             r"(?:Z|[+-]\d{2}:?\d{2})?(?![\w:/-])"
             r"|(?<![\w.:])\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?(?![\w:])"),
    ("IP", r"(?<![\w.])\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?::\d+)?(?![\w.])"),
    # IPv6 addresses with at least three groups, and MAC addresses.
    ("IP", r"(?<![\w:])(?:[0-9a-fA-F]{1,4}:){2,31}:?[0-9a-fA-F]{1,4}(?![\w:])"
           r"|(?<![\w:])[0-9a-fA-F]{0,4}::[0-9a-fA-F:]*[0-9a-fA-F](?![\w:])"),
    # Host names under a top-level domain (or a two-letter country one), with an optional port.
    ("HOST", r"(?<![\w.-])(?:[A-Za-z0-9-]+\.)+(?:com|net|org|edu|gov|mil|int|info|io|local|[a-z]{2})(?::\d+)?"
             r"(?![\w.-])"),
    ("HEX", r"(?<![\w])0[xX][0-9a-fA-F]+(?![\w])"),
    ("PATH", r"(?<![\w.])(?:/[\w.\-]+)+/?"),
    ("NUM", r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])"),
    ("ID", r"(?<![\w])[0-9a-fA-F]{8,}(?![\w])"),
    # A number inside a token (core.4505, cpu=3): what is left between non-word characters.
    ("NUM", r"\b\d+\b"),
)
# A token holding a mask's replacement, which Drain then treats as a variable.
PLACEHOLDER = re.compile(r"<\w{1,40}>")
# Kinds one value can fall into by chance (a hex id may have only decimal digits): the same
# variable to the similarity.
_NUMERIC = re.compile(r"<(?:HEX|ID)>")

_CACHE_LIMIT = 200_000


class _Drain(Drain):
    """drain3's Drain with masked tokens as variables: a token holding a mask's <NAME> takes the
    wildcard branch of the prefix tree, as drain3 does for a token with digits, and two tokens
    that differ only in the kind of number a mask found (`<NUM>`, `<HEX>`, `<ID>`) count as
    equal in the similarity. Without this, `iar 00106210` (a number) and `iar 003a90fc` (a hex
    id) become two templates."""

    @staticmethod
    def has_numbers(s: str) -> bool:
        return any(c.isdigit() for c in s) or ("<" in s and PLACEHOLDER.search(s) is not None)

    def get_seq_distance(self, seq1, seq2, include_params: bool):
        # seq1 is a template, seq2 a line, of the same length (as in drain3).
        if not seq1:
            return 1.0, 0
        similar = params = 0
        for token1, token2 in zip(seq1, seq2):
            if token1 == self.param_str:
                params += 1
            elif token1 == token2 or ("<" in token1 and "<" in token2 and _numeric(token1) == _numeric(token2)):
                similar += 1
        return (similar + (params if include_params else 0)) / len(seq1), params


@functools.lru_cache(maxsize=65536)
def _numeric(token: str) -> str:
    return _NUMERIC.sub("<NUM>", token)


def _mask(name: str, pattern: str):
    """(regex, "<NAME>") of one mask: the defaults on `re`, any other time-bounded."""
    if not (isinstance(name, str) and re.fullmatch(r"\w{1,40}", name)):
        raise DataError(f"mask name {name!r} must be a word of at most 40 letters, digits or _")
    if (name, pattern) in MASKS:
        return re.compile(pattern), f"<{name}>"
    return Pattern(pattern, f"mask {name}"), f"<{name}>"


class Masker:
    """Token masking, cached per distinct token (see the module doc)."""

    def __init__(self, masks=MASKS):
        self.masks = tuple(tuple(m) for m in masks)
        self._masks = [_mask(name, pattern) for name, pattern in self.masks]
        self._token_cache: dict[str, str] = {}

    def mask(self, content: str) -> str:
        cache = self._token_cache
        out = []
        for token in content.split():
            masked = cache.get(token)
            if masked is None:
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                masked = token
                for regex, replacement in self._masks:
                    masked = regex.sub(replacement, masked)
                cache[token] = masked
            out.append(masked)
        return " ".join(out)


class LogParser(Masker):
    """Drain3 template mining with cached token masking; see the module doc."""

    kind = "drain"

    def __init__(self, sim_th: float = SIM_TH, depth: int = DEPTH, max_children: int = 100, masks=MASKS):
        super().__init__(masks)
        self.sim_th = sim_th
        self.depth = depth
        self.max_children = max_children
        self._match_cache: dict[str, int] = {}
        self.drain = self._new_drain()

    def _new_drain(self) -> Drain:
        if not 0.0 < self.sim_th <= 1.0 or self.depth < 3 or self.max_children < 2:
            raise DataError(f"parser settings out of range: sim_th={self.sim_th} (0..1], depth={self.depth} (>= 3), "
                            f"max_children={self.max_children} (>= 2)")
        return _Drain(sim_th=self.sim_th, depth=self.depth, max_children=self.max_children, param_str=PARAM)

    # --- learning and matching -----------------------------------------------------------
    def fit(self, contents: Iterable[str]) -> np.ndarray:
        """Learn templates from the lines' contents; returns their event ids (as matched after
        learning, so lines learned early get their final template)."""
        contents = list(contents)
        drain = self.drain
        for content in progress(contents, desc="mining templates", unit="line"):
            drain.add_log_message(self.mask(content))
        self._rebuild()
        return self.transform(contents)

    def transform(self, contents: Iterable[str]) -> np.ndarray:
        """Event ids of lines by matching only; `UNSEEN` (0) for a line no template fits."""
        cache = self._match_cache
        ids = []
        for content in contents:
            masked = self.mask(content)
            found = cache.get(masked)
            if found is None:
                cluster = self.drain.match(masked, full_search_strategy="fallback")
                found = UNSEEN if cluster is None else cluster.cluster_id
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                cache[masked] = found
            ids.append(found)
        return np.asarray(ids, dtype=np.int64)

    @property
    def n_templates(self) -> int:
        return len(self.drain.id_to_cluster)

    def template(self, event_id: int) -> str:
        if event_id == UNSEEN:
            return "(unseen template)"
        cluster = self.drain.id_to_cluster.get(int(event_id))
        return cluster.get_template() if cluster is not None else f"(unknown event {event_id})"

    def templates(self) -> dict[int, str]:
        return {cid: c.get_template() for cid, c in sorted(self.drain.id_to_cluster.items())}

    # --- state ---------------------------------------------------------------------------
    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        clusters = sorted(self.drain.id_to_cluster.values(), key=lambda c: c.cluster_id)
        arrays = {"parser.ids": np.array([c.cluster_id for c in clusters], dtype=np.int64),
                  "parser.sizes": np.array([c.size for c in clusters], dtype=np.int64)}
        meta = {"kind": self.kind, "sim_th": self.sim_th, "depth": self.depth, "max_children": self.max_children,
                "masks": [list(m) for m in self.masks],
                "templates": [list(c.log_template_tokens) for c in clusters]}
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "LogParser":
        try:
            masks = meta["masks"]
            if not (isinstance(masks, list) and all(isinstance(m, list) and len(m) == 2 for m in masks)):
                raise ValueError("masks must be [name, regex] pairs")
            parser = cls(float(meta["sim_th"]), int(meta["depth"]), int(meta["max_children"]),
                         [(str(n), str(p)) for n, p in masks])
            templates = meta["templates"]
            ids, sizes = arrays["parser.ids"], arrays["parser.sizes"]
        except (KeyError, TypeError, ValueError, OverflowError, DataError) as exc:
            raise ModelFileError(f"model state: the log parser's settings are missing or malformed ({exc})") from None
        if (ids.ndim != 1 or sizes.shape != ids.shape or not isinstance(templates, list) or len(templates) != len(ids)
                or not all(isinstance(t, list) and all(isinstance(s, str) for s in t) for t in templates)
                or len(set(ids.tolist())) != len(ids) or (len(ids) and ids.min() <= UNSEEN)):
            raise ModelFileError("model state: the log parser's templates do not match its cluster ids")
        for cid, size, tokens in zip(ids.tolist(), sizes.tolist(), templates):
            cluster = LogCluster(tokens, int(cid))
            cluster.size = int(size)
            parser.drain.id_to_cluster[int(cid)] = cluster
        parser._rebuild()
        return parser

    def _rebuild(self) -> None:
        """A fresh prefix tree from the current templates, added in id order: what a loaded
        parser builds, so matching does not depend on the order lines were learned in."""
        clusters = self.drain.id_to_cluster
        drain = self._new_drain()
        for cid in sorted(clusters):
            drain.id_to_cluster[cid] = clusters[cid]
            drain.add_seq_to_prefix_tree(drain.root_node, clusters[cid])
        drain.clusters_counter = max(clusters, default=0)
        self.drain = drain
        self._match_cache.clear()


class MaskedLines(Masker):
    """Parser-free events: every distinct masked line is an event of its own, and its masked
    text is its template. `fit` learns them in order of first occurrence (ids 1, 2, ...);
    `transform` gives UNSEEN to a masked line not seen in fitting. Exact, so it suits the
    semantic detectors, which judge a new line by its meaning rather than by a template."""

    kind = "masked"

    def __init__(self, masks=MASKS):
        super().__init__(masks)
        self._ids: dict[str, int] = {}
        self._texts: list[str] = []

    def fit(self, contents: Iterable[str]) -> np.ndarray:
        contents = list(contents)
        for content in progress(contents, desc="masking lines", unit="line"):
            masked = self.mask(content)
            if masked not in self._ids:
                self._ids[masked] = len(self._texts) + 1
                self._texts.append(masked)
        return self.transform(contents)

    def transform(self, contents: Iterable[str]) -> np.ndarray:
        ids = self._ids
        return np.array([ids.get(self.mask(c), UNSEEN) for c in contents], dtype=np.int64)

    @property
    def n_templates(self) -> int:
        return len(self._texts)

    def template(self, event_id: int) -> str:
        if event_id == UNSEEN:
            return "(unseen template)"
        return self._texts[event_id - 1] if 0 < event_id <= len(self._texts) else f"(unknown event {event_id})"

    def templates(self) -> dict[int, str]:
        return {i + 1: t for i, t in enumerate(self._texts)}

    def get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return ({"parser.ids": np.arange(1, len(self._texts) + 1, dtype=np.int64)},
                {"kind": self.kind, "masks": [list(m) for m in self.masks], "templates": list(self._texts)})

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], meta: dict) -> "MaskedLines":
        try:
            parser = cls([(str(n), str(p)) for n, p in meta["masks"]])
            texts, ids = meta["templates"], arrays["parser.ids"]
        except (KeyError, TypeError, ValueError, DataError) as exc:
            raise ModelFileError(f"model state: the masked-line events are missing or malformed ({exc})") from None
        if (not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or len(set(texts)) != len(texts)
                or ids.shape != (len(texts),) or not np.array_equal(ids, np.arange(1, len(texts) + 1))):
            raise ModelFileError("model state: the masked-line events do not match their ids")
        parser._texts = list(texts)
        parser._ids = {t: i + 1 for i, t in enumerate(texts)}
        return parser


PARSERS = {"drain": LogParser, "masked": MaskedLines}


def parser_from_state(arrays: dict[str, np.ndarray], meta: dict):
    """The parser a model file holds (Drain templates unless it says otherwise)."""
    kind = meta.get("kind", "drain")
    if kind not in PARSERS:
        raise ModelFileError(f"model state: unknown parser kind {kind!r}; expected one of {', '.join(PARSERS)}")
    return PARSERS[kind].from_state(arrays, meta)
